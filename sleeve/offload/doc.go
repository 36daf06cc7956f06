// Package offload cuts TCP (and UDP) super-frames read from the TAP into
// real wire-sized packets before they are encapsulated, and coalesces
// received TCP segments of one flow back into a super-frame before they are
// written to the TAP: segmentation and receive coalescing (GRO) done in
// user space, one layer below the IP stack, on virtio_net_hdr frames.
//
// Every frame here is a 10-byte virtio_net_hdr (little-endian fields, as
// the TAP reads and writes them) followed by an Ethernet frame.
//
// A segment produced by Segmenter carries a partial checksum, exactly as
// the kernel hands a CHECKSUM_PARTIAL packet to a device: its virtio header
// has NEEDS_CSUM set with csum_start at the L4 header, and the L4 checksum
// field holds the folded (not complemented) pseudo-header sum. The receiving
// TAP (or the TAP package's software path) finishes it, so no payload byte
// is summed in user space. The Coalescer only merges segments of that form,
// and emits super-frames of the same form, so checksums never need to be
// verified or recomputed over the payload on either side.
//
// Neither type allocates once warmed up; both are meant for one goroutine.
package offload
