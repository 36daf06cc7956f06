package sleeve

import (
	"encoding/binary"
	"time"

	"weavemesh.dev/weave/mesh/macs"
	"weavemesh.dev/weave/peer"
	"weavemesh.dev/weave/sleeve/toobig"
	"weavemesh.dev/weave/sleeve/wire"
)

// Read side of the TAP: buffers, each big enough for a 64 KiB super-frame.
const (
	insideBatch = 32
	frameBuf    = wire.MaxFrame
)

// virtio_net_hdr fields, little-endian as the kernel writes them on the
// hosts we run on; the wire carries them verbatim.
const (
	vnetFlagNeedsCsum = 1
	gsoNone           = 0
)

// inside owns the send pipeline's scratch: read buffers, the batch, and the
// buffer for ICMP answers. One goroutine.
type inside struct {
	e     *Engine
	bufs  [][]byte
	sizes []int
	b     *batch
	icmp  []byte
}

// insideLoop reads frames from the TAP and sends them to peers until the
// device is closed.
func (e *Engine) insideLoop() {
	in := &inside{
		e:     e,
		bufs:  make([][]byte, insideBatch),
		sizes: make([]int, insideBatch),
		b:     newBatch(e),
		icmp:  make([]byte, wire.VnetHdrLen+1500),
	}
	for i := range in.bufs {
		in.bufs[i] = make([]byte, frameBuf)
	}
	for {
		n, err := e.o.Device.Read(in.bufs, in.sizes, 0)
		if err != nil {
			if isClosed(err) {
				return
			}
			e.log.Error("reading from TAP failed; stopping the send pipeline", "err", err)
			return
		}
		now := time.Now().Unix()
		r := e.o.Routes.Get()
		for i := 0; i < n; i++ {
			in.frame(in.bufs[i][:in.sizes[i]], now, r)
		}
		in.b.flush()
	}
}

type router interface {
	NextHop(peer.Name) (peer.Name, bool)
	FloodChildren(peer.Name) []peer.Name
}

// frame decides where one frame from the bridge goes.
func (in *inside) frame(data []byte, now int64, r router) {
	e := in.e
	if len(data) < wire.VnetHdrLen+ethHeaderLen {
		e.drop(DropRunt, nil)
		return
	}
	eth := data[wire.VnetHdrLen:]
	dst, src := macs.AddrFrom(eth[0:6]), macs.AddrFrom(eth[6:12])
	e.o.MACs.Learn(src, e.self, now)
	e.stats.txFrames.Add(1)
	e.stats.txBytes.Add(uint64(len(eth)))
	if dst.Multicast() {
		in.flood(data, r, e.self)
		return
	}
	owner, ok := e.o.MACs.Lookup(dst, now)
	if !ok {
		in.flood(data, r, e.self) // unknown unicast, as a switch does
		return
	}
	if owner == e.self {
		return // local: the bridge delivers it
	}
	hop, ok := r.NextHop(owner)
	p := e.peer(hop)
	if !ok || p == nil {
		e.drop(DropNoRoute, nil)
		return
	}
	in.send(p, owner, 0, data)
}

func (in *inside) flood(data []byte, r router, src peer.Name) {
	peers := *in.e.peers.Load()
	for _, c := range r.FloodChildren(src) {
		if p := peers[c]; p != nil {
			in.send(p, peer.Broadcast, wire.FlagFlood, data)
			in.e.stats.floodedOut.Add(1)
		}
	}
}

// send queues data for p, cutting it into chunks or answering with ICMP when
// it does not fit one datagram.
func (in *inside) send(p *peerState, dst peer.Name, flags uint8, data []byte) {
	per := maxChunkData(in.e.payloadMTU(p))
	gsoType := data[1]
	if gsoType == gsoNone && len(data) <= per {
		in.b.frame(p, dst, flags, data)
		p.txFrames.Add(1)
		return
	}
	// Too big for one datagram, or a super-frame: its packets would each
	// need (headers + segment size) bytes if the host had not offloaded
	// segmentation to us.
	pkt := len(data)
	if gsoType != gsoNone {
		hdrLen := int(binary.LittleEndian.Uint16(data[2:4]))
		gsoSize := int(binary.LittleEndian.Uint16(data[4:6]))
		pkt = wire.VnetHdrLen + hdrLen + gsoSize
	}
	eth := data[wire.VnetHdrLen:]
	if pkt > per && toobig.Needed(eth) {
		in.tooBig(eth, per-wire.VnetHdrLen-ethHeaderLen)
		return
	}
	in.b.chunked(p, dst, flags, data)
	p.txFrames.Add(1)
}

// tooBig answers a frame larger than the path, the way a router would.
func (in *inside) tooBig(eth []byte, mtu int) {
	e := in.e
	e.drop(DropTooBig, nil)
	if !e.icmp.allow() {
		return
	}
	n, ok := toobig.Reply(in.icmp[wire.VnetHdrLen:], eth, mtu)
	if !ok {
		return
	}
	clear(in.icmp[:wire.VnetHdrLen])
	if _, err := e.o.Device.Write([][]byte{in.icmp[:wire.VnetHdrLen+n]}, 0); err != nil {
		e.drop(DropTapWrite, err)
		return
	}
	e.stats.icmpSent.Add(1)
}
