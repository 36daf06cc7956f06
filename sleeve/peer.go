package sleeve

import (
	"net/netip"
	"sync/atomic"

	"weavemesh.dev/weave/peer"
)

// Path-MTU bounds, in bytes of UDP payload per datagram.
const (
	// minPMTU is what any IPv4 path carries (576) less IP and UDP headers.
	minPMTU = 576 - 28
	// pmtuSlack ends the search when the bounds are this close.
	pmtuSlack = 8
)

// peerState is the engine's view of one other peer. Fields written by more
// than one goroutine are atomics; probe belongs to the health goroutine.
type peerState struct {
	name  peer.Name
	addr  netip.AddrPort
	added int64 // unix nanos when the peer appeared

	lastHeard atomic.Int64 // unix nanos of the last heartbeat or reply from it
	heardUs   atomic.Int64 // unix nanos of the last sign it hears us
	rtt       atomic.Int64 // nanos, last measured
	state     atomic.Int32 // LinkState

	pmtu   atomic.Int32 // datagram size in use towards this peer
	acked  atomic.Int32 // largest probe the peer confirmed since the search began
	tooBig atomic.Int32 // set by senders on EMSGSIZE: a size the kernel refused

	probe probeState // health goroutine only

	txFrames, rxFrames atomic.Uint64
	txBytes, rxBytes   atomic.Uint64
}

func newPeerState(in PeerInfo, now int64, ifaceMax int) *peerState {
	p := &peerState{name: in.Name, addr: in.Addr, added: now}
	ifaceMax = clampPMTU(ifaceMax)
	p.pmtu.Store(int32(ifaceMax))
	p.probe = probeState{ifaceMax: ifaceMax}
	return p
}

func clampPMTU(n int) int {
	if n < minPMTU {
		return minPMTU
	}
	return min(n, 65507)
}

// tooBigOnSend records that the kernel refused a datagram of that size
// (its route to the peer knows a smaller path MTU).
func (p *peerState) tooBigOnSend(segSize, total int) {
	n := total
	if segSize > 0 {
		n = segSize
	}
	for {
		cur := p.tooBig.Load()
		if cur != 0 && int(cur) <= n {
			return
		}
		if p.tooBig.CompareAndSwap(cur, int32(n)) {
			return
		}
	}
}

// LinkState is the health of the direct underlay link to a peer.
type LinkState int32

const (
	LinkConnecting LinkState = iota // no exchange yet, within the grace period
	LinkUp                          // heartbeats flow both ways
	LinkDown                        // silent for longer than the link timeout
)

func (s LinkState) String() string {
	switch s {
	case LinkUp:
		return "up"
	case LinkDown:
		return "down"
	default:
		return "connecting"
	}
}
