package tap

import (
	"encoding/binary"
	"fmt"
)

// VnetHdrLen is the size of the virtio_net_hdr that leads every frame passed
// through Read and Write (struct virtio_net_hdr in linux/virtio_net.h).
const VnetHdrLen = 10

// MaxFrameSize is the buffer size Read needs per frame in offload mode: the
// virtio_net_hdr, an Ethernet header with one VLAN tag, and an IP packet of
// the largest size GSO produces on a TAP device (64 KiB).
const MaxFrameSize = VnetHdrLen + ethHdrLen + vlanTagLen + 65535

// virtio_net_hdr flags.
const (
	// FlagNeedsCsum: the L4 checksum is not yet computed. The checksum field
	// at CsumStart+CsumOffset holds the pseudo-header sum; the receiver must
	// sum from CsumStart to the end of the frame and store the complement.
	FlagNeedsCsum = 0x01
	// FlagDataValid: the checksum was already verified.
	FlagDataValid = 0x02
)

// virtio_net_hdr GSO types.
const (
	GSONone  = 0x00 // a single frame
	GSOTCPv4 = 0x01 // TCP over IPv4 super-frame, cut at GSOSize payload bytes
	GSOUDP   = 0x03 // UDP fragmentation offload (UFO); obsolete, never segmented here
	GSOTCPv6 = 0x04 // TCP over IPv6 super-frame
	GSOUDPL4 = 0x05 // UDP segmentation offload (USO): datagrams of GSOSize payload bytes
	GSOECN   = 0x80 // bit OR-ed into a TCP type: the flow has ECN and CWR is set
)

// VnetHdr is a decoded virtio_net_hdr.
//
// The kernel reads and writes the 16-bit fields in the TAP's "vnet
// endianness". Open selects little-endian explicitly (TUNSETVNETLE), which is
// also the host order on x86 and arm64, so Decode and Encode always use
// little-endian regardless of the host.
type VnetHdr struct {
	Flags      uint8
	GSOType    uint8
	HdrLen     uint16 // length of the headers (Ethernet to L4); a hint only
	GSOSize    uint16 // payload bytes per segment when GSOType != GSONone
	CsumStart  uint16 // offset of the L4 header from the start of the Ethernet frame
	CsumOffset uint16 // offset of the checksum field from CsumStart
}

// Decode reads a virtio_net_hdr from the start of b.
func (h *VnetHdr) Decode(b []byte) error {
	if len(b) < VnetHdrLen {
		return fmt.Errorf("tap: virtio_net_hdr needs %d bytes, have %d", VnetHdrLen, len(b))
	}
	h.Flags = b[0]
	h.GSOType = b[1]
	h.HdrLen = binary.LittleEndian.Uint16(b[2:])
	h.GSOSize = binary.LittleEndian.Uint16(b[4:])
	h.CsumStart = binary.LittleEndian.Uint16(b[6:])
	h.CsumOffset = binary.LittleEndian.Uint16(b[8:])
	return nil
}

// Encode writes h into b[:VnetHdrLen]; it panics if b is shorter.
func (h *VnetHdr) Encode(b []byte) {
	_ = b[VnetHdrLen-1]
	b[0] = h.Flags
	b[1] = h.GSOType
	binary.LittleEndian.PutUint16(b[2:], h.HdrLen)
	binary.LittleEndian.PutUint16(b[4:], h.GSOSize)
	binary.LittleEndian.PutUint16(b[6:], h.CsumStart)
	binary.LittleEndian.PutUint16(b[8:], h.CsumOffset)
}

// String formats h for logs and test failures.
func (h VnetHdr) String() string {
	return fmt.Sprintf("vnet{flags=%#x gso=%#x hdrlen=%d gsosize=%d csum=%d+%d}",
		h.Flags, h.GSOType, h.HdrLen, h.GSOSize, h.CsumStart, h.CsumOffset)
}
