package sleeve

import (
	"cmp"
	"net/netip"
	"slices"
	"time"

	"weavemesh.dev/weave/peer"
)

// Link is the state of the direct underlay link to one peer.
type Link struct {
	Peer       peer.Name
	Addr       netip.AddrPort
	State      LinkState
	RTT        time.Duration
	PMTU       int // datagram bytes in use towards the peer
	OverlayMTU int // largest IP packet sent to the peer without ICMP "too big"
	// Frames and their bytes (Ethernet, as the containers sent them)
	// that this router sent on the link to the peer (for it, or for
	// peers it relays to), and that came from the peer, directly or
	// relayed. Frames passed on for two other peers are not in them, nor
	// the unicast frames of a kernel (fastdp) pair, which bypass the
	// sleeve.
	TxFrames, RxFrames uint64
	TxBytes, RxBytes   uint64
}

// Links returns every peer's link, sorted by peer name.
func (e *Engine) Links() []Link {
	peers := *e.peers.Load()
	out := make([]Link, 0, len(peers))
	for _, p := range peers {
		out = append(out, Link{
			Peer:       p.name,
			Addr:       p.addr,
			State:      LinkState(p.state.Load()),
			RTT:        time.Duration(p.rtt.Load()),
			PMTU:       int(p.pmtu.Load()),
			OverlayMTU: e.overlayMTUTo(p),
			TxFrames:   p.txFrames.Load(),
			RxFrames:   p.rxFrames.Load(),
			TxBytes:    p.txBytes.Load(),
			RxBytes:    p.rxBytes.Load(),
		})
	}
	slices.SortFunc(out, func(a, b Link) int { return cmp.Compare(a.Peer, b.Peer) })
	return out
}

// Down returns the peers whose direct link is down.
func (e *Engine) Down() []peer.Name {
	var out []peer.Name
	for _, p := range *e.peers.Load() {
		if LinkState(p.state.Load()) == LinkDown {
			out = append(out, p.name)
		}
	}
	return out
}

// Stats are the engine's traffic counters.
type Stats struct {
	TxFrames, RxFrames  uint64
	TxBytes, RxBytes    uint64
	TxDatagrams         uint64
	RxDatagrams         uint64
	Relayed, FloodedOut uint64
	ICMPSent, CutOut    uint64 // CutOut: frames sent as several datagrams (segments or fragments)
	Coalesced, Merged   uint64 // received segments merged (Merged) into super-frames (Coalesced)
	// AQMMarked counts received packets marked ECN CE by queue
	// management; the segments it dropped are Drops["aqm"].
	AQMMarked uint64
	// Syscalls counts the system calls of the TAP queues and sockets
	// that report theirs (sleeve/tap and sleeve/conn do).
	Syscalls uint64
	Drops    map[string]uint64
}

// Stats returns a snapshot of the counters.
func (e *Engine) Stats() Stats {
	s := &e.stats
	return Stats{
		TxFrames: s.txFrames.Load(), RxFrames: s.rxFrames.Load(),
		TxBytes: s.txBytes.Load(), RxBytes: s.rxBytes.Load(),
		TxDatagrams: s.txDgrams.Load(), RxDatagrams: s.rxDgrams.Load(),
		Relayed: s.relayed.Load(), FloodedOut: s.floodedOut.Load(),
		ICMPSent: s.icmpSent.Load(), CutOut: s.cutOut.Load(),
		Coalesced: s.coalesced.Load(), Merged: s.merged.Load(),
		AQMMarked: s.aqmMarked.Load(),
		Syscalls:  e.syscalls(),
		Drops:     e.Drops(),
	}
}

// syscallCounter is what a Device or PacketConn that counts its system
// calls implements.
type syscallCounter interface{ Syscalls() uint64 }

func (e *Engine) syscalls() uint64 {
	var n uint64
	for _, q := range e.qs {
		for _, x := range []any{q.Device, q.Conn} {
			if c, ok := x.(syscallCounter); ok {
				n += c.Syscalls()
			}
		}
	}
	return n
}
