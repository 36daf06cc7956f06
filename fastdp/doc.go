// Package fastdp owns the kernel datapath: one Linux VXLAN device on the
// overlay bridge, its forwarding table, and the checks of what the kernel
// can do. Frames between two hosts that reach each other over plain UDP
// then cross in the kernel, never through the router process. Which peers
// use it, the probing and the fallback to the sleeve are the router's; this
// package gives it the device and a reconciled table and knows nothing of
// peers beyond their underlay addresses. It imports nothing of the module.
//
// Everything goes through netlink (github.com/vishvananda/netlink) and, for
// the one offload switch, the ethtool ioctl; nothing shells out.
//
// # The device
//
// Ensure creates (or adopts) the device DefaultName ("weave-vxlan") in the
// calling thread's network namespace, whose netlink sockets the Device then
// keeps, as netdev.EnsureBridge does:
//
//   - VNI VNIFor(mesh name): 24 bits of SHA-256 over a fixed label and the
//     name, so all peers of a mesh agree without gossip.
//   - UDP port Options.Port, DefaultPort (6786) by default, no local
//     address unless Options.Local (the kernel picks the source by route),
//     no remote or group: every destination comes from the table.
//   - Learning off: the table says where MACs are; the kernel never guesses
//     from the source of what arrives.
//   - MTU = the overlay MTU. VXLAN adds Overhead (50) bytes on IPv4, so a
//     peer is fit for fastdp only while its path MTU is at least MTU+50.
//   - A port of the bridge, isolated (see below), with IPv6
//     autoconfiguration off, up.
//   - Alias "weave fastdp": the mark of ownership. Ensure, Remove and
//     RemoveLeftover touch no link without it.
//
// A leftover device (the router crashed) is adopted when its VNI, port,
// local address and learning match, and replaced otherwise; the first
// Reconcile then removes its stale entries. Remove deletes the device and so
// all its entries; Close leaves both.
//
// # The forwarding table
//
// The caller says what it wants (Desired): each container MAC behind a
// fastdp peer maps to that peer's underlay address, and each fastdp peer
// gets an all-zero-MAC entry, the kernel's head-end replication list for
// broadcast, multicast and unknown unicast. Reconcile lists the device's
// own entries (NTF_SELF, family AF_BRIDGE; the bridge's entries for the
// port and the kernel's permanent address entries are left alone), plans
// the difference (Plan, pure) and applies it: adds, in-place replaces for
// MACs that moved or peers that changed address, deletes of the rest. It is
// the whole table every time, so it heals whatever a crash or a missed
// event left.
//
// # Broadcast in mixed meshes
//
// The bridge holds the containers' veths, the sleeve TAP and this device.
// A frame that came out of the tunnel must reach the local containers but
// never go back into the sleeve (or the reverse): each copy of a broadcast
// is sent by its source, once per fastdp peer by the kernel and along the
// spanning tree by the sleeve, and a bridge that forwarded between the two
// would deliver it twice or loop it. The device's bridge port is therefore
// isolated (IFLA_BRPORT_ISOLATED) unless Options.NoPortIsolation; the router
// isolates the TAP too, and the bridge then never forwards between them
// while both still reach every veth. See docs/fastdp.md for the rest of the
// plan (which peers the sleeve must still send broadcasts to).
//
// # Offloads
//
// Options.TxChecksumOff turns tx-checksum-ip-generic off on the device, the
// workaround for kernels whose VXLAN transmit path sends wrong inner
// checksums; GRO and GSO stay as the kernel sets them.
//
// # Use by the router
//
// At start: Probe (for status), then Ensure with the bridge's name, the mesh
// name, --fastdp-port and the overlay MTU, and isolate the sleeve TAP's
// bridge port. Whenever membership, a pair's datapath, a peer's underlay
// address or the MAC table changes, and on a timer: Reconcile with the
// fastdp peers' addresses (Desired.Flood) and the MACs behind them
// (Desired.Unicast, including peers' Device.MAC for probe frames). When a
// pair leaves fastdp: ForgetLearned with the MACs behind that peer. For
// status and probes: Counters, Entries. On stop: Remove; without a running
// router (weave reset): RemoveLeftover.
//
// # Capabilities
//
// Probe tries, in a throwaway namespace, whether a VXLAN device can be made
// and whether an ESP state with AEAD rfc4106(gcm(aes)) can be (the
// precondition of an encrypted kernel datapath, which this package does not
// have), and says why not.
package fastdp
