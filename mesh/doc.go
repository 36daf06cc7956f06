// Package mesh is the mesh layer: what every peer knows about the others,
// kept apart from the features (dns, ipam) and the datapaths (sleeve)
// that use it. Its packages own
//
//   - topology: the gossiped link state, each peer's list of the peers it
//     cannot reach;
//   - routes: next hops and flood trees computed from membership and
//     topology;
//   - macs: which peer each Ethernet address lives behind;
//   - mix: the finaliser the replicated states' anti-entropy digests are
//     summed from.
//
// They import nothing of this module but peer and each other, so that
// datapaths and features can depend on them and router can wire them
// together; internal/structure's tests hold them to it.
package mesh
