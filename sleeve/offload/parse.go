package offload

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// VnetHdrLen is the size of the virtio_net_hdr in front of every frame.
const VnetHdrLen = 10

// virtio_net_hdr flags and GSO types (linux/virtio_net.h).
const (
	FlagNeedsCsum = 0x01
	GSONone       = 0x00
	GSOTCPv4      = 0x01
	GSOUDP        = 0x03 // UDP fragmentation offload (UFO): never negotiated, refused
	GSOTCPv6      = 0x04
	GSOUDPL4      = 0x05
	GSOECN        = 0x80
)

// Protocol constants.
const (
	ethLen     = 14
	vlanLen    = 4
	ipv4MinLen = 20
	ipv6Len    = 40
	tcpMinLen  = 20
	udpLen     = 8
	etherIPv4  = 0x0800
	etherIPv6  = 0x86dd
	etherVLAN  = 0x8100
	etherQinQ  = 0x88a8
	protoTCP   = 6
	protoUDP   = 17

	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpPSH = 0x08
	tcpACK = 0x10
	tcpURG = 0x20
	tcpECE = 0x40
	tcpCWR = 0x80

	tcpCsumOff = 16
	udpCsumOff = 6

	// maxIPLen bounds an IP packet: IPv4 total length, and IPv6 payload
	// length (no jumbograms) plus the fixed header.
	maxIPLen = 65535
)

// MaxFrame is the largest frame either side handles: a virtio_net_hdr, an
// Ethernet header with one VLAN tag and a 64 KiB IP packet.
const MaxFrame = VnetHdrLen + ethLen + vlanLen + ipv6Len + maxIPLen

// ErrMalformed reports a frame whose virtio_net_hdr or headers do not
// describe something this package can cut.
var ErrMalformed = errors.New("offload: malformed super-frame")

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
}

// vnet is a decoded virtio_net_hdr.
type vnet struct {
	flags, gsoType                         uint8
	hdrLen, gsoSize, csumStart, csumOffset uint16
}

func (h *vnet) decode(b []byte) {
	h.flags, h.gsoType = b[0], b[1]
	h.hdrLen = binary.LittleEndian.Uint16(b[2:])
	h.gsoSize = binary.LittleEndian.Uint16(b[4:])
	h.csumStart = binary.LittleEndian.Uint16(b[6:])
	h.csumOffset = binary.LittleEndian.Uint16(b[8:])
}

func (h *vnet) encode(b []byte) {
	b[0], b[1] = h.flags, h.gsoType
	binary.LittleEndian.PutUint16(b[2:], h.hdrLen)
	binary.LittleEndian.PutUint16(b[4:], h.gsoSize)
	binary.LittleEndian.PutUint16(b[6:], h.csumStart)
	binary.LittleEndian.PutUint16(b[8:], h.csumOffset)
}

// GSOType returns the GSO type of a frame (virtio header first), without
// the ECN bit; GSONone for a frame too short to have a header.
func GSOType(frame []byte) uint8 {
	if len(frame) < VnetHdrLen {
		return GSONone
	}
	return frame[1] &^ GSOECN
}

// l3 locates the IP header of an Ethernet frame (eth, without virtio
// header), skipping one VLAN tag, and returns its offset and EtherType.
func l3(eth []byte) (off int, etherType uint16, ok bool) {
	if len(eth) < ethLen {
		return 0, 0, false
	}
	etherType = binary.BigEndian.Uint16(eth[12:])
	off = ethLen
	if etherType == etherVLAN || etherType == etherQinQ {
		if len(eth) < ethLen+vlanLen {
			return 0, 0, false
		}
		etherType = binary.BigEndian.Uint16(eth[16:])
		off += vlanLen
	}
	return off, etherType, true
}
