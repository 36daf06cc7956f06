package sleeve

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"weavemesh.dev/weave/peer"
	"weavemesh.dev/weave/sleeve/conn"
	"weavemesh.dev/weave/sleeve/offload"
	"weavemesh.dev/weave/sleeve/secure"
	"weavemesh.dev/weave/sleeve/wire"
)

const (
	outsideBatch = 16       // messages per recvmmsg
	recvBuf      = 65 << 10 // one GRO train or one datagram
)

// outside owns the receive pipeline's scratch. One goroutine.
type outside struct {
	e    *Engine
	q    Queue // the socket it reads, the TAP queue it writes
	pkts []conn.Packet
	b    *batch // replies, relays, flood forwarding
	// gro holds the frames to write to the TAP, referencing pkts'
	// buffers, and merges TCP segments of one flow into super-frames.
	gro *offload.Coalescer
	// coalesced and merged are gro's totals already added to the
	// engine's counters.
	coalesced, merged uint64
	reply             []byte // heartbeat replies; fixed capacity
	now               int64  // unix nanos of the current batch
	// aqm bounds the socket's queue (aqm.go); signals are congestion
	// signals due and not yet applied to a frame.
	aqm     codel
	signals int
}

// maxSignals bounds the congestion signals waiting for a frame that can
// carry one.
const maxSignals = 4

// outsideLoop receives datagrams on q's socket and handles them, frames
// for here written to q's TAP queue, until a read fails, and returns its
// error; Close makes it fail with net.ErrClosed.
func (e *Engine) outsideLoop(q Queue) error {
	out := &outside{
		e:     e,
		q:     q,
		pkts:  make([]conn.Packet, outsideBatch),
		b:     newBatch(e, q.Conn),
		gro:   offload.NewCoalescer(),
		aqm:   newCodel(aqmTarget, aqmInterval),
		reply: make([]byte, 0, outsideBatch*64*(wire.HeaderLen+wire.HeartbeatLen)),
	}
	for i := range out.pkts {
		out.pkts[i].Buf = make([]byte, recvBuf)
	}
	for {
		n, err := q.Conn.ReadBatch(out.pkts)
		if err != nil {
			return fmt.Errorf("receive pipeline: reading from the underlay socket: %w", err)
		}
		out.now = e.o.Clock.Now().UnixNano()
		out.handle(n)
	}
}

// handle processes the first n of pkts, as one read returned them.
func (out *outside) handle(n int) {
	for i := 0; i < n; i++ {
		pk := &out.pkts[i]
		// A read that did not fill pkts emptied the queue.
		if pk.Stamp > 0 && out.aqm.dequeue(out.now, out.now-pk.Stamp, i == n-1 && n < len(out.pkts)) {
			out.signals = min(out.signals+1, maxSignals)
		}
		out.packet(pk)
	}
	out.flushTAP()
	out.b.flush()
	out.reply = out.reply[:0]
}

// packet splits a received message (several datagrams when GRO coalesced
// them) into datagrams.
func (out *outside) packet(pk *conn.Packet) {
	b := pk.Buf[:pk.N]
	seg := pk.SegSize
	if seg <= 0 {
		seg = len(b)
	}
	for len(b) > 0 {
		n := min(seg, len(b))
		out.outer(b[:n], pk.Addr)
		b = b[n:]
	}
}

// outer admits one datagram from the underlay: a sealed one is opened
// (and its session's peer is the neighbour that sent it); in an encrypted
// mesh only handshakes, and datagrams from trusted subnets, come in clear.
func (out *outside) outer(b []byte, from netip.AddrPort) {
	e := out.e
	e.stats.rxDgrams.Add(1)
	sec := e.o.Secure
	if len(b) >= 2 && b[1] == wire.TypeSealed {
		if sec == nil {
			e.drop(DropType, errors.New("sealed datagram, but this mesh has no password"))
			return
		}
		s, inner, err := sec.Open(b)
		switch {
		case errors.Is(err, secure.ErrReplay):
			e.drop(DropReplay, err)
			return
		case errors.Is(err, secure.ErrNoSession), errors.Is(err, secure.ErrExpired):
			e.drop(DropNoSession, err)
			return
		case err != nil:
			e.drop(DropAuth, err)
			return
		}
		out.datagram(inner, len(b), s.Peer)
		return
	}
	if sec != nil && !sec.Trusted(from.Addr()) && (len(b) < 2 || (b[1] != wire.TypeHandshake1 && b[1] != wire.TypeHandshake2)) {
		e.drop(DropUnencrypted, nil)
		return
	}
	out.datagram(b, len(b), peer.None)
}

// datagram handles a clear (or just opened) datagram. size is its length
// as received, for path-MTU echoes; hop is the neighbour that sent it when
// a session proved it, else peer.None.
func (out *outside) datagram(b []byte, size int, hop peer.Name) {
	e := out.e
	var h wire.Header
	body, err := wire.ParseHeader(b, &h)
	if err != nil {
		e.dropDecode(err)
		return
	}
	if h.Src == e.self {
		e.drop(DropSelf, nil)
		return
	}
	src := e.peer(h.Src)
	if src == nil {
		e.drop(DropUnknownPeer, nil)
		return
	}
	switch h.Type {
	case wire.TypeHeartbeat, wire.TypeHeartbeatR:
		if hop != peer.None && hop != h.Src {
			e.drop(DropAuth, errors.New("heartbeat relayed; heartbeats travel one hop"))
			return
		}
		out.heartbeat(src, &h, body, size)
		return
	case wire.TypeHandshake1, wire.TypeHandshake2:
		out.handshake(src, &h, b)
		return
	}
	r := e.o.Mesh.Routes()
	switch {
	case h.Flags&wire.FlagFlood != 0:
		// The kernel datapath brought this peer's copy already (see
		// kernel.go): learn where the source lives, deliver nothing.
		out.frames(h.Src, body, !e.kernelPeer(h.Src))
		if wire.DecTTL(b) {
			peers := *e.peers.Load()
			for _, c := range r.FloodChildren(h.Src) {
				if p := peers[c]; p != nil {
					out.b.raw(p, b)
				}
			}
		}
	case h.Dst == e.self:
		out.frames(h.Src, body, true)
	default:
		if !wire.DecTTL(b) {
			e.drop(DropTTL, nil)
			return
		}
		hop, ok := r.NextHop(h.Dst)
		p := e.peer(hop)
		if !ok || p == nil {
			e.drop(DropNoRoute, nil)
			return
		}
		out.b.raw(p, b)
		e.stats.relayed.Add(1)
	}
}

// frames delivers the frames of a TypeFrames body from src; with tap
// false it only learns their source addresses.
func (out *outside) frames(src peer.Name, body []byte, tap bool) {
	for len(body) > 0 {
		data, rest, err := wire.NextFrame(body)
		if err != nil {
			out.e.dropDecode(err)
			return
		}
		body = rest
		out.deliver(src, data, tap)
	}
}

// deliver learns the frame's source address and, if tap, queues it for
// the TAP.
func (out *outside) deliver(src peer.Name, data []byte, tap bool) {
	e := out.e
	if len(data) < wire.VnetHdrLen+ethHeaderLen {
		e.drop(DropRunt, nil)
		return
	}
	eth := data[wire.VnetHdrLen:]
	e.o.Mesh.Learn(MACFrom(eth[6:12]), src, out.now/int64(time.Second))
	if !tap {
		return
	}
	e.stats.rxFrames.Add(1)
	e.stats.rxBytes.Add(uint64(len(eth)))
	if p := e.peer(src); p != nil {
		p.rxFrames.Add(1)
		p.rxBytes.Add(uint64(len(eth)))
	}
	if out.signals > 0 {
		switch signal(data) {
		case congestionMarked:
			out.signals--
			e.stats.aqmMarked.Add(1)
		case congestionDrop:
			out.signals--
			e.drops[DropAQM].Add(1) // not logged: a signal, not a fault
			return
		}
	}
	if out.gro.Full() {
		out.flushTAP()
	}
	out.gro.Add(data)
}

// flushTAP writes the queued frames, segments of one flow merged, in one
// call.
func (out *outside) flushTAP() {
	if out.gro.Len() == 0 {
		return
	}
	frames := out.gro.Frames()
	out.e.stats.coalesced.Add(out.gro.Coalesced - out.coalesced)
	out.e.stats.merged.Add(out.gro.Merged - out.merged)
	out.coalesced, out.merged = out.gro.Coalesced, out.gro.Merged
	n, err := out.q.Device.Write(frames, 0)
	if err != nil && !isClosed(err) {
		for i := n; i < len(frames); i++ {
			out.e.drop(DropTapWrite, err)
		}
	}
	out.gro.Reset()
}

// handshake answers an initiation or completes ours.
func (out *outside) handshake(p *peerState, h *wire.Header, b []byte) {
	e := out.e
	sec := e.o.Secure
	if sec == nil || h.Dst != e.self {
		e.drop(DropHandshake, errors.New("handshake not for us, or this mesh has no password"))
		return
	}
	if h.Type == wire.TypeHandshake2 {
		if err := sec.HandleResp(b, p.name); err != nil {
			e.drop(DropHandshake, err)
		}
		return
	}
	if len(out.reply)+secure.RespLen > cap(out.reply) {
		return // the initiator retries
	}
	r := out.reply[len(out.reply) : len(out.reply)+secure.RespLen]
	resp, err := sec.HandleInit(r, b, p.name, sec.Trusted(p.addr.Addr()))
	if err != nil {
		e.drop(DropHandshake, err)
		return
	}
	out.reply = out.reply[:len(out.reply)+secure.RespLen]
	out.b.rawClear(p, resp)
}

// heartbeat handles a heartbeat or a reply from a neighbour.
func (out *outside) heartbeat(p *peerState, h *wire.Header, body []byte, size int) {
	var hb wire.Heartbeat
	if err := wire.ParseHeartbeat(body, &hb); err != nil {
		out.e.dropDecode(err)
		return
	}
	now := out.now
	p.lastHeard.Store(now)
	if h.Type == wire.TypeHeartbeatR {
		// A reply proves both directions work.
		p.heardUs.Store(now)
		if rtt := now - hb.SentNanos; rtt > 0 && rtt < int64(time.Minute) {
			p.rtt.Store(rtt)
		}
		if hb.Flags&wire.HBProbe != 0 && hb.Echo == hb.Size {
			for {
				cur := p.acked.Load()
				if int32(hb.Echo) <= cur || p.acked.CompareAndSwap(cur, int32(hb.Echo)) {
					break
				}
			}
		}
		return
	}
	if hb.Flags&wire.HBHearYou != 0 {
		p.heardUs.Store(now)
	}
	n := wire.HeaderLen + wire.HeartbeatLen
	if len(out.reply)+n > cap(out.reply) {
		return // more heartbeats in one batch than any mesh sends; the next round answers
	}
	r := out.reply[len(out.reply) : len(out.reply)+n]
	out.reply = out.reply[:len(out.reply)+n]
	wire.PutHeader(r, &wire.Header{Version: wire.Version, Type: wire.TypeHeartbeatR, TTL: 1, Src: out.e.self, Dst: p.name})
	wire.PutHeartbeat(r[wire.HeaderLen:], &wire.Heartbeat{
		SentNanos: hb.SentNanos, Seq: hb.Seq, Flags: wire.HBHearYou | hb.Flags&wire.HBProbe,
		Size: hb.Size, Echo: uint16(min(size, 65535)),
	})
	out.b.raw(p, r)
}
