package sleeve

import (
	"fmt"

	"weavemesh.dev/weave/peer"
	"weavemesh.dev/weave/sleeve/offload"
	"weavemesh.dev/weave/sleeve/toobig"
	"weavemesh.dev/weave/sleeve/wire"
)

// Read side of the TAP: buffers, each big enough for a 64 KiB super-frame.
const (
	insideBatch = 32
	frameBuf    = offload.MaxFrame
)

// inside owns the send pipeline's scratch: read buffers, the batch, and the
// buffer for ICMP answers. One goroutine.
type inside struct {
	e     *Engine
	dev   Device // the TAP queue it reads
	bufs  [][]byte
	sizes []int
	b     *batch
	icmp  []byte
	seg   offload.Segmenter
	frag  offload.Fragmenter
}

// insideLoop reads frames from TAP queue q and sends them to peers on q's
// socket until a read fails, and returns its error; Close makes it fail
// with net.ErrClosed.
func (e *Engine) insideLoop(q Queue) error {
	in := &inside{
		e:     e,
		dev:   q.Device,
		bufs:  make([][]byte, insideBatch),
		sizes: make([]int, insideBatch),
		b:     newBatch(e, q.Conn),
		icmp:  make([]byte, wire.VnetHdrLen+1500),
	}
	for i := range in.bufs {
		in.bufs[i] = make([]byte, frameBuf)
	}
	for {
		n, err := in.dev.Read(in.bufs, in.sizes, 0)
		if err != nil {
			return fmt.Errorf("send pipeline: reading from the TAP: %w", err)
		}
		now := e.o.Clock.Now().Unix()
		r := e.o.Mesh.Routes()
		for i := 0; i < n; i++ {
			in.frame(in.bufs[i][:in.sizes[i]], now, r)
		}
		in.b.flush()
	}
}

// frame decides where one frame from the bridge goes.
func (in *inside) frame(data []byte, now int64, r Routes) {
	e := in.e
	if len(data) < wire.VnetHdrLen+ethHeaderLen {
		e.drop(DropRunt, nil)
		return
	}
	eth := data[wire.VnetHdrLen:]
	dst, src := MACFrom(eth[0:6]), MACFrom(eth[6:12])
	e.o.Mesh.Learn(src, e.self, now)
	e.stats.txFrames.Add(1)
	e.stats.txBytes.Add(uint64(len(eth)))
	if dst.Multicast() {
		in.flood(data, r, e.self)
		return
	}
	owner, ok := e.o.Mesh.Lookup(dst, now)
	if !ok {
		in.flood(data, r, e.self) // unknown unicast, as a switch does
		return
	}
	if owner == e.self {
		return // local: the bridge delivers it
	}
	if e.kernelPeer(owner) {
		return // the bridge handed it to the VXLAN device too (kernel.go)
	}
	hop, ok := r.NextHop(owner)
	p := e.peer(hop)
	if !ok || p == nil {
		e.drop(DropNoRoute, nil)
		return
	}
	in.send(p, owner, 0, data)
}

func (in *inside) flood(data []byte, r Routes, src peer.Name) {
	peers := *in.e.peers.Load()
	for _, c := range r.FloodChildren(src) {
		if p := peers[c]; p != nil {
			in.send(p, peer.Broadcast, wire.FlagFlood, data)
			in.e.stats.floodedOut.Add(1)
		}
	}
}

// send queues data for p. A super-frame is cut into the TCP (or UDP)
// segments the kernel would have sent, each in its own datagram, so that a
// lost datagram costs the inner flow one segment; an IPv4 packet too big
// for the path and without DF is cut into IP fragments; anything else too
// big is answered with ICMP, as a router would.
func (in *inside) send(p *peerState, dst peer.Name, flags uint8, data []byte) {
	e := in.e
	per := maxFrameData(e.payloadMTU(p))
	if offload.GSOType(data) == offload.GSONone {
		if len(data) <= per {
			in.b.frame(p, dst, flags, data)
			p.txFrames.Add(1)
			p.txBytes.Add(uint64(len(data) - wire.VnetHdrLen))
			return
		}
		eth := data[wire.VnetHdrLen:]
		if toobig.Needed(eth) {
			in.tooBig(eth, per-wire.VnetHdrLen-ethHeaderLen)
			return
		}
		if err := in.frag.Reset(data, per); err != nil {
			e.drop(DropTooBig, err)
			return
		}
		in.b.cut(p, dst, flags, &in.frag)
		p.txFrames.Add(1)
		p.txBytes.Add(uint64(len(data) - wire.VnetHdrLen))
		return
	}
	if err := in.seg.Reset(data); err != nil {
		e.drop(DropOffload, err)
		return
	}
	if in.seg.SegmentLen() > per {
		// The sender's segments do not fit the path (its MSS comes from
		// the overlay MTU, which the path no longer carries). With DF,
		// or IPv6, tell it; without, segment smaller, as a router would
		// fragment.
		eth := data[wire.VnetHdrLen:]
		switch {
		case toobig.Needed(eth):
			in.tooBig(eth, per-wire.VnetHdrLen-ethHeaderLen)
			return
		case !in.seg.Shrink(per):
			e.drop(DropTooBig, nil)
			return
		}
	}
	in.b.cut(p, dst, flags, &in.seg)
	p.txFrames.Add(1)
	p.txBytes.Add(uint64(len(data) - wire.VnetHdrLen))
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
	if _, err := in.dev.Write([][]byte{in.icmp[:wire.VnetHdrLen+n]}, 0); err != nil {
		e.drop(DropTapWrite, err)
		return
	}
	e.stats.icmpSent.Add(1)
}
