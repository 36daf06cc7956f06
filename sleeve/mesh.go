package sleeve

import "weavemesh.dev/weave/peer"

// Mesh is what the engine needs to know of the mesh: behind which peer each
// Ethernet address lives, and the current routes. The router implements it
// over mesh/macs and mesh/routes; the engine owns the contract so that the
// datapath imports nothing above it.
//
// Every method is called for every frame, from both pipelines at once: each
// must be safe for concurrent use, must not block and must not allocate.
type Mesh interface {
	// Learn records that mac lives behind owner, seen at now (unix
	// seconds). Multicast addresses are never learned.
	Learn(mac MAC, owner peer.Name, now int64)
	// Lookup returns the peer mac lives behind, if it was seen recently.
	Lookup(mac MAC, now int64) (peer.Name, bool)
	// Routes returns the current routes. The engine takes them once per
	// batch and uses them for every frame of the batch.
	Routes() Routes
}

// Routes is one consistent computation of the mesh's routes.
type Routes interface {
	// NextHop returns the neighbour to send to for dst: dst itself while
	// the direct link works, otherwise the first relay on a path.
	NextHop(dst peer.Name) (peer.Name, bool)
	// FloodChildren returns the neighbours to which this peer forwards a
	// frame flooded by src. The engine does not modify the slice.
	FloodChildren(src peer.Name) []peer.Name
}

// MAC is an Ethernet address packed into the low 48 bits, first byte
// highest, as mesh/macs packs it.
type MAC uint64

// MACFrom reads an address from the first 6 bytes of b.
func MACFrom(b []byte) MAC {
	_ = b[5]
	return MAC(uint64(b[0])<<40 | uint64(b[1])<<32 | uint64(b[2])<<24 | uint64(b[3])<<16 | uint64(b[4])<<8 | uint64(b[5]))
}

// Multicast reports whether the group bit is set (broadcast included).
func (a MAC) Multicast() bool { return a&(1<<40) != 0 }
