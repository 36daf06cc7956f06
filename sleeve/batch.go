package sleeve

import (
	"errors"

	"weavemesh.dev/weave/peer"
	"weavemesh.dev/weave/sleeve/conn"
	"weavemesh.dev/weave/sleeve/secure"
	"weavemesh.dev/weave/sleeve/wire"
)

var errTooLarge = errors.New("sleeve: datagram larger than the seal arena")

// Batch limits. A batch is flushed when any is reached.
const (
	maxBatchPkts  = 256       // datagrams (or GSO trains) per sendmmsg
	headerArena   = 256 << 10 // datagram, frame and packet header bytes per batch
	sealArena     = 1 << 20   // sealed datagrams per send (encrypted peers)
	maxOpenDgrams = 16        // small-frame datagrams being filled at once
)

// batch builds one sendmmsg worth of datagrams. Frame bytes are referenced
// in place, not copied: the caller keeps them alive until flush returns.
// A batch belongs to one goroutine.
type batch struct {
	e     *Engine
	c     PacketConn // the socket it is sent on
	pkts  []conn.OutPacket
	to    []*peerState
	clear []bool                 // per packet: send as is, never sealed (handshakes)
	slots [maxBatchPkts][][]byte // iovec backing per packet, kept across flushes
	arena []byte                 // header bytes; fixed capacity, so slices of it stay valid
	open  []openDgram
	// sealed holds the encrypted copies of the batch's datagrams;
	// allocated on first use, so unencrypted meshes never pay for it.
	sealed []byte
}

// openDgram is a datagram still accepting small frames.
type openDgram struct {
	p     *peerState
	dst   peer.Name
	flags uint8
	pkt   int
	size  int
}

func newBatch(e *Engine, c PacketConn) *batch {
	return &batch{
		e:     e,
		c:     c,
		pkts:  make([]conn.OutPacket, 0, maxBatchPkts),
		to:    make([]*peerState, 0, maxBatchPkts),
		clear: make([]bool, 0, maxBatchPkts),
		arena: make([]byte, 0, headerArena),
		open:  make([]openDgram, 0, maxOpenDgrams),
	}
}

// room reports whether the batch can take pkts more packets and hdr more
// header bytes; if not, the caller flushes first.
func (b *batch) room(pkts, hdr int) bool {
	return len(b.pkts)+pkts <= maxBatchPkts && len(b.arena)+hdr <= headerArena
}

func (b *batch) hdr(n int) []byte {
	s := b.arena[len(b.arena) : len(b.arena)+n]
	b.arena = b.arena[:len(b.arena)+n]
	return s
}

// startPkt opens a new packet and returns its index.
func (b *batch) startPkt(p *peerState, segSize int) int {
	i := len(b.pkts)
	b.pkts = append(b.pkts, conn.OutPacket{Addr: p.addr, SegSize: segSize, Bufs: b.slots[i][:0]})
	b.to = append(b.to, p)
	b.clear = append(b.clear, false)
	return i
}

func (b *batch) addIov(pkt int, s []byte) {
	b.pkts[pkt].Bufs = append(b.pkts[pkt].Bufs, s)
}

func (b *batch) putHeader(dst, src peer.Name, typ, flags uint8) []byte {
	h := b.hdr(wire.HeaderLen)
	wire.PutHeader(h, &wire.Header{Version: wire.Version, Type: typ, Flags: flags, TTL: wire.DefaultTTL, Src: src, Dst: dst})
	return h
}

// frame queues a frame that fits in one datagram to p, packing it with
// other frames for p when there is room.
func (b *batch) frame(p *peerState, dst peer.Name, flags uint8, data []byte) {
	need := wire.FrameLen + len(data)
	pmtu := b.e.payloadMTU(p)
	for i := range b.open {
		o := &b.open[i]
		if o.p == p && o.dst == dst && o.flags == flags && o.size+need <= pmtu {
			if !b.room(0, wire.FrameLen) {
				break
			}
			b.record(o.pkt, data)
			o.size += need
			return
		}
	}
	if !b.room(1, wire.HeaderLen+wire.FrameLen) {
		b.flush()
	}
	pkt := b.startPkt(p, 0)
	b.addIov(pkt, b.putHeader(dst, b.e.self, wire.TypeFrames, flags))
	b.record(pkt, data)
	if len(b.open) == maxOpenDgrams {
		copy(b.open, b.open[1:])
		b.open = b.open[:maxOpenDgrams-1]
	}
	b.open = append(b.open, openDgram{p: p, dst: dst, flags: flags, pkt: pkt, size: wire.HeaderLen + need})
}

func (b *batch) record(pkt int, data []byte) {
	h := b.hdr(wire.FrameLen)
	wire.PutFrameLen(h, len(data))
	b.addIov(pkt, h)
	b.addIov(pkt, data)
}

// cutter yields the packets a frame is cut into: offload.Segmenter for
// super-frames, offload.Fragmenter for IPv4 packets without DF.
type cutter interface {
	HeaderLen() int
	Count() int
	Next(hdr []byte) (payload []byte, ok bool)
}

// cut queues the packets c yields, each in its own datagram to p: the
// datagram header, frame length and the packet's rewritten headers in the
// arena, its payload in place. All but the last packet have the same size,
// so with GSO they go to the kernel as one train (or a few, when the batch
// fills up part way).
func (b *batch) cut(p *peerState, dst peer.Name, flags uint8, c cutter) {
	hl := wire.HeaderLen + wire.FrameLen + c.HeaderLen()
	gso := b.c.GSO() && c.Count() > 1
	pkt := -1
	for {
		// Headers are at most one frame long, far below headerArena,
		// so a flush always makes room.
		if !b.room(1, hl) {
			b.flush()
			pkt = -1
		}
		h := b.hdr(hl)
		payload, ok := c.Next(h[wire.HeaderLen+wire.FrameLen:])
		if !ok {
			b.arena = b.arena[:len(b.arena)-hl]
			break
		}
		wire.PutHeader(h, &wire.Header{Version: wire.Version, Type: wire.TypeFrames, Flags: flags, TTL: wire.DefaultTTL, Src: b.e.self, Dst: dst})
		wire.PutFrameLen(h[wire.HeaderLen:], c.HeaderLen()+len(payload))
		if pkt < 0 || !gso {
			seg := 0
			if gso {
				seg = hl + len(payload)
			}
			pkt = b.startPkt(p, seg)
		}
		b.addIov(pkt, h)
		b.addIov(pkt, payload)
	}
	b.e.stats.cutOut.Add(1)
}

// raw queues an already encoded datagram (a relayed one, a heartbeat).
func (b *batch) raw(p *peerState, dgram []byte) {
	if !b.room(1, 0) {
		b.flush()
	}
	b.addIov(b.startPkt(p, 0), dgram)
}

// rawClear queues a datagram that is never sealed: a handshake message.
func (b *batch) rawClear(p *peerState, dgram []byte) {
	b.raw(p, dgram)
	b.clear[len(b.clear)-1] = true
}

// flush sends the batch and resets it. With a mesh password, datagrams are
// sealed here, each into the seal arena, in as many sends as the arena
// needs.
func (b *batch) flush() {
	sec := b.e.o.Secure
	start := 0
	for i := range b.pkts {
		if sec == nil || b.clear[i] {
			continue
		}
		s := sec.Current(b.to[i].name)
		switch {
		case s == nil:
			b.pkts[i].Bufs = b.pkts[i].Bufs[:0] // conn skips empty packets
			b.e.drop(DropNoSession, nil)
			continue
		case s.Plain():
			continue
		}
		if !b.seal(i, s) {
			b.e.send(b.c, b.pkts[start:i], b.to[start:i])
			start = i
			b.sealed = b.sealed[:0]
			if !b.seal(i, s) {
				b.pkts[i].Bufs = b.pkts[i].Bufs[:0]
				b.e.drop(DropSend, errTooLarge)
			}
		}
	}
	if start < len(b.pkts) {
		b.e.send(b.c, b.pkts[start:], b.to[start:])
	}
	for i := range b.pkts {
		clear(b.pkts[i].Bufs) // drop references to frame buffers
		b.slots[i] = b.pkts[i].Bufs[:0]
	}
	clear(b.pkts)
	b.pkts = b.pkts[:0]
	clear(b.to)
	b.to = b.to[:0]
	b.clear = b.clear[:0]
	b.arena = b.arena[:0]
	b.sealed = b.sealed[:0]
	b.open = b.open[:0]
}

// seal gathers packet i's iovecs into the seal arena, datagram by datagram
// (SegSize apart), seals each in place, and points the packet at the
// result. It reports false when the arena is too full.
func (b *batch) seal(i int, s *secure.Session) bool {
	pkt := &b.pkts[i]
	total := 0
	for _, v := range pkt.Bufs {
		total += len(v)
	}
	if total == 0 {
		return true
	}
	seg := pkt.SegSize
	if seg <= 0 {
		seg = total
	}
	n := (total + seg - 1) / seg
	need := total + n*secure.Overhead
	if b.sealed == nil {
		b.sealed = make([]byte, 0, sealArena)
	}
	if len(b.sealed)+need > cap(b.sealed) {
		return false
	}
	out := b.sealed[len(b.sealed) : len(b.sealed)+need]
	pos, iov, off := 0, 0, 0
	for left := total; left > 0; {
		m := min(seg, left)
		dst := out[pos+secure.EnvelopeLen : pos+secure.EnvelopeLen+m]
		for k := 0; k < m; {
			c := copy(dst[k:], pkt.Bufs[iov][off:])
			k += c
			off += c
			if off == len(pkt.Bufs[iov]) {
				iov, off = iov+1, 0
			}
		}
		if _, ok := s.Seal(out[pos:pos+secure.Overhead+m], m); !ok {
			// Counter exhausted: the rekey is overdue. Never send
			// the plaintext instead.
			pkt.Bufs = pkt.Bufs[:0]
			b.e.drop(DropNoSession, nil)
			return true
		}
		pos += m + secure.Overhead
		left -= m
	}
	b.sealed = b.sealed[:len(b.sealed)+need]
	pkt.Bufs = append(pkt.Bufs[:0], out)
	if pkt.SegSize > 0 {
		pkt.SegSize = seg + secure.Overhead
	}
	return true
}
