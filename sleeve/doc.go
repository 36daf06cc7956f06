// Package sleeve owns the user-space datapath: Ethernet frames read from a
// TAP device on the local weave bridge are encapsulated in UDP datagrams to
// other peers, and datagrams from peers are decapsulated back onto the
// bridge. It also measures each underlay link: heartbeats for liveness and
// round-trip time, padded probes for the path MTU.
//
// Each TAP queue and socket pair (Options.Device and Conn, and
// Options.Queues) has a send and a receive pipeline, each one goroutine,
// so flows are processed in parallel: the kernel keeps a flow's frames on
// one TAP queue, and each socket's source port keeps its datagrams on one
// socket of the receiver (sleeve/conn ListenGroup), so none is reordered.
//
// A send pipeline (inside.go):
//
//	TAP read (a batch of frames; with offloads, TCP super-frames up to 64 KiB)
//	  -> forwarding decision per frame (MAC table, routes: unicast, relay or flood)
//	  -> small frames packed into one datagram per next hop, up to its path MTU;
//	     super-frames cut into TCP/UDP segments, one per datagram, sent with
//	     UDP GSO (sleeve/offload); IPv4 too big for the path into fragments
//	  -> one sendmmsg for the whole batch
//
// A receive pipeline (outside.go):
//
//	recvmmsg (with UDP GRO: many datagrams per buffer)
//	  -> header check; heartbeats answered; datagrams for other peers relayed as-is
//	  -> frames taken out of the datagrams; source MACs learned
//	  -> in-order TCP segments of a flow merged into super-frames (user-space GRO)
//	  -> the batch written to the TAP; flooded datagrams forwarded to tree children
//
// Frames are referenced in place in the read buffers (rewritten headers and
// payload are separate iovecs), so no frame is copied on the way through,
// except when received segments are merged into a super-frame.
//
// A pipeline never dies silently: when its read fails for any reason but
// Close, it stops, Done is closed and Err says which read failed and why;
// the owner (the router) restarts it with Restart (run.go).
package sleeve
