package sleeve

import "weavemesh.dev/weave/peer"

// The kernel datapath (fastdp) and the sleeve share the bridge. The bridge
// ports of the TAP and of the VXLAN device are isolated from each other, so
// a frame from a local container reaches both, and every copy of a frame
// is sent by its source host: the kernel sends one to each peer this host
// uses fastdp with, the sleeve must carry it to the others only. For a
// peer named in SetKernelPeers the engine therefore
//
//   - sends no unicast frame addressed to a MAC behind that peer (the
//     kernel carries it; a frame for it that still reaches the TAP is a copy),
//   - delivers no flooded frame whose source is that peer to the TAP (its
//     kernel already sent this host a copy), though it still learns the
//     source address from it and relays it along the spanning tree, so
//     peers further down that are on the sleeve with the source get theirs.
//
// Both ends of a pair decide from the same probes, so they agree on the
// pair's datapath except for the moment one has noticed a change and the
// other not yet. The rest of the sleeve (heartbeats, relaying, handshakes)
// is unchanged.

// SetKernelPeers replaces the set of peers whose pair with this one uses
// the kernel datapath. Safe for concurrent use; the datapath reads it
// without a lock.
func (e *Engine) SetKernelPeers(names []peer.Name) {
	m := make(map[peer.Name]struct{}, len(names))
	for _, n := range names {
		m[n] = struct{}{}
	}
	e.kernel.Store(&m)
}

// kernelPeer reports whether the pair with p uses the kernel datapath.
func (e *Engine) kernelPeer(p peer.Name) bool {
	m := e.kernel.Load()
	if m == nil {
		return false
	}
	_, ok := (*m)[p]
	return ok
}
