// Package tap owns the sleeve datapath's TAP device: creating it (named,
// non-persistent, MTU set, up), reading and writing Ethernet frames in
// batches, and the virtio_net_hdr offload contract.
//
// Every frame crossing the API is a 10-byte virtio_net_hdr followed by an
// Ethernet frame. In offload mode the kernel hands over TCP (and, where
// supported, UDP) super-frames of up to 64 KiB with checksums left to
// finish, and accepts the same in return; this removes most per-packet
// system calls, which are the bottleneck of a user-space datapath. In
// plain mode the header on Read is all zeroes, and Write finishes any
// offload work in software (segmentation by sleeve/offload, then the
// checksums), so frames from a peer with offload can always be delivered
// to a device without it. With Options.Queues the device has several
// queues (IFF_MULTI_QUEUE), each a Device of its own for one pipeline.
package tap
