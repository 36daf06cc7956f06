// Package sleeve owns the user-space datapath: Ethernet frames read from a
// TAP device on the local weave bridge are encapsulated in UDP datagrams to
// other peers, and datagrams from peers are decapsulated back onto the
// bridge. It also measures each underlay link: heartbeats for liveness and
// round-trip time, padded probes for the path MTU.
//
// The send pipeline (inside.go), run by one goroutine:
//
//	TAP read (a batch of frames; with offloads, TCP super-frames up to 64 KiB)
//	  -> forwarding decision per frame (MAC table, routes: unicast, relay or flood)
//	  -> small frames packed into one datagram per next hop, up to its path MTU;
//	     large frames cut into chunks that each fill a datagram, sent with UDP GSO
//	  -> one sendmmsg for the whole batch
//
// The receive pipeline (outside.go), run by another goroutine:
//
//	recvmmsg (with UDP GRO: many datagrams per buffer)
//	  -> header check; heartbeats answered; datagrams for other peers relayed as-is
//	  -> chunks reassembled into frames; source MACs learned
//	  -> frames written to the TAP; flooded datagrams forwarded to tree children
//
// Frames are referenced in place in the read buffers (header and chunk
// bytes are separate iovecs), so no frame is copied on the way through,
// except when a chunked frame is reassembled.
package sleeve
