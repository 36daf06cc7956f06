package tap

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Header sizes and protocol numbers the segmenter understands.
const (
	ethHdrLen   = 14
	vlanTagLen  = 4
	ipv4MinLen  = 20
	ipv6HdrLen  = 40
	tcpMinLen   = 20
	udpHdrLen   = 8
	etherIPv4   = 0x0800
	etherIPv6   = 0x86dd
	etherVLAN   = 0x8100
	etherQinQ   = 0x88a8
	protoTCP    = 6
	protoUDP    = 17
	tcpFlagFIN  = 0x01
	tcpFlagPSH  = 0x08
	tcpFlagCWR  = 0x80
	maxIPv6Exts = 8 // extension headers walked before giving up
)

// ErrMalformed reports a frame whose virtio_net_hdr or headers do not
// describe something the software offload path can finish. The frame is
// dropped; nothing else is affected.
var ErrMalformed = errors.New("tap: malformed offload frame")

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
}

// completeChecksum finishes a FlagNeedsCsum frame in place, as a NIC would:
// sum from CsumStart to the end of the frame (the checksum field already
// holds the pseudo-header sum) and store the complement at
// CsumStart+CsumOffset. frame is the Ethernet frame without virtio_net_hdr.
func completeChecksum(frame []byte, h *VnetHdr) error {
	start := int(h.CsumStart)
	field := start + int(h.CsumOffset)
	if start < ethHdrLen || field+2 > len(frame) {
		return malformed("checksum at %d+%d outside %d-byte frame", h.CsumStart, h.CsumOffset, len(frame))
	}
	c := checksum(frame[start:], 0)
	if c == 0 {
		// A zero UDP checksum means "none"; like the kernel, send its
		// ones'-complement twin instead (harmless for TCP).
		c = 0xffff
	}
	binary.BigEndian.PutUint16(frame[field:], c)
	return nil
}

// segmenter cuts a GSO super-frame into wire-sized frames in software, the
// way the kernel's GSO layer would: every segment gets a copy of the
// headers with IP length (and IPv4 ID) adjusted, TCP sequence numbers
// advanced, FIN/PSH only on the last and CWR only on the first segment,
// and full IP and L4 checksums computed. It is reused across frames and
// never allocates.
type segmenter struct {
	frame   []byte // Ethernet frame trimmed to the end of the IP packet
	l3, l4  int    // offsets of the IP and L4 headers
	hdrLen  int    // offset of the payload
	ipv6    bool
	tcp     bool
	gsoSize int
	addrSum uint64 // pseudo-header sum of the addresses
	id0     uint16 // IPv4 ID of the first segment
	seq0    uint32 // TCP sequence number of the first segment
	off     int    // payload offset of the next segment
	idx     int    // index of the next segment
	done    bool
}

// reset parses frame (an Ethernet frame without virtio_net_hdr) described
// by h and prepares to emit segments no larger than maxSeg bytes.
func (s *segmenter) reset(frame []byte, h *VnetHdr, maxSeg int) error {
	*s = segmenter{done: true}
	gsoType := h.GSOType &^ GSOECN
	switch gsoType {
	case GSOTCPv4, GSOTCPv6:
		s.tcp = true
	case GSOUDPL4:
	case GSOUDP:
		return malformed("UDP fragmentation offload (UFO) is not supported")
	default:
		return malformed("unknown GSO type %#x", h.GSOType)
	}
	if h.GSOType&GSOECN != 0 && !s.tcp {
		return malformed("ECN flag on non-TCP GSO type %#x", h.GSOType)
	}
	if h.GSOSize == 0 {
		return malformed("GSO type %#x with zero segment size", h.GSOType)
	}
	s.gsoSize = int(h.GSOSize)

	if len(frame) < ethHdrLen {
		return malformed("%d-byte frame is shorter than an Ethernet header", len(frame))
	}
	etherType := binary.BigEndian.Uint16(frame[12:])
	s.l3 = ethHdrLen
	if etherType == etherVLAN || etherType == etherQinQ {
		if len(frame) < ethHdrLen+vlanTagLen {
			return malformed("truncated VLAN tag")
		}
		etherType = binary.BigEndian.Uint16(frame[16:])
		s.l3 += vlanTagLen
	}
	l3 := s.l3
	var proto uint8
	var end int
	switch etherType {
	case etherIPv4:
		if gsoType == GSOTCPv6 {
			return malformed("TCPv6 GSO on an IPv4 packet")
		}
		if len(frame) < l3+ipv4MinLen {
			return malformed("truncated IPv4 header")
		}
		ihl := int(frame[l3]&0x0f) * 4
		if frame[l3]>>4 != 4 || ihl < ipv4MinLen || len(frame) < l3+ihl {
			return malformed("bad IPv4 version/IHL %#x", frame[l3])
		}
		total := int(binary.BigEndian.Uint16(frame[l3+2:]))
		end = l3 + total
		if total < ihl || end > len(frame) {
			return malformed("IPv4 total length %d does not fit %d-byte frame", total, len(frame)-l3)
		}
		if binary.BigEndian.Uint16(frame[l3+6:])&0x3fff != 0 {
			return malformed("IPv4 fragment cannot be segmented")
		}
		proto = frame[l3+9]
		s.l4 = l3 + ihl
		s.id0 = binary.BigEndian.Uint16(frame[l3+4:])
		s.addrSum = csumAdd(0, frame[l3+12:l3+20])
	case etherIPv6:
		if gsoType == GSOTCPv4 {
			return malformed("TCPv4 GSO on an IPv6 packet")
		}
		s.ipv6 = true
		if len(frame) < l3+ipv6HdrLen || frame[l3]>>4 != 6 {
			return malformed("truncated or bad IPv6 header")
		}
		plen := int(binary.BigEndian.Uint16(frame[l3+4:]))
		end = l3 + ipv6HdrLen + plen
		if plen == 0 || end > len(frame) {
			return malformed("IPv6 payload length %d does not fit %d-byte frame", plen, len(frame)-l3)
		}
		proto = frame[l3+6]
		s.l4 = l3 + ipv6HdrLen
		// Skip the extension headers GSO can carry; a fragment header
		// (44) or anything unknown ends the walk and fails the check below.
		for i := 0; i < maxIPv6Exts && (proto == 0 || proto == 43 || proto == 60); i++ {
			if s.l4+8 > end {
				return malformed("truncated IPv6 extension header")
			}
			proto, s.l4 = frame[s.l4], s.l4+(int(frame[s.l4+1])+1)*8
		}
		s.addrSum = csumAdd(0, frame[l3+8:l3+40])
	default:
		return malformed("EtherType %#04x cannot be segmented", etherType)
	}

	if s.tcp {
		if proto != protoTCP {
			return malformed("TCP GSO type but IP protocol %d", proto)
		}
		if s.l4+tcpMinLen > end {
			return malformed("truncated TCP header")
		}
		doff := int(frame[s.l4+12]>>4) * 4
		if doff < tcpMinLen || s.l4+doff > end {
			return malformed("bad TCP data offset %d", doff)
		}
		s.hdrLen = s.l4 + doff
		s.seq0 = binary.BigEndian.Uint32(frame[s.l4+4:])
	} else {
		if proto != protoUDP {
			return malformed("UDP GSO type but IP protocol %d", proto)
		}
		if s.l4+udpHdrLen > end {
			return malformed("truncated UDP header")
		}
		s.hdrLen = s.l4 + udpHdrLen
	}
	if seg := s.hdrLen + min(s.gsoSize, end-s.hdrLen); seg > maxSeg {
		return malformed("segment of %d bytes exceeds %d", seg, maxSeg)
	}
	s.frame = frame[:end]
	s.done = false
	return nil
}

// next writes the next segment into dst and returns its length, or 0 when
// the frame is exhausted. dst must hold the maxSeg bytes given to reset.
func (s *segmenter) next(dst []byte) int {
	if s.done {
		return 0
	}
	payload := len(s.frame) - s.hdrLen
	plen := min(s.gsoSize, payload-s.off)
	n := s.hdrLen + plen
	last := s.off+plen >= payload
	copy(dst[:s.hdrLen], s.frame[:s.hdrLen])
	copy(dst[s.hdrLen:n], s.frame[s.hdrLen+s.off:])

	l3, l4 := s.l3, s.l4
	var proto uint64
	if s.ipv6 {
		binary.BigEndian.PutUint16(dst[l3+4:], uint16(n-l3-ipv6HdrLen))
	} else {
		binary.BigEndian.PutUint16(dst[l3+2:], uint16(n-l3))
		binary.BigEndian.PutUint16(dst[l3+4:], s.id0+uint16(s.idx))
		dst[l3+10], dst[l3+11] = 0, 0
		binary.BigEndian.PutUint16(dst[l3+10:], checksum(dst[l3:l4], 0))
	}
	l4len := n - l4
	if s.tcp {
		proto = protoTCP
		binary.BigEndian.PutUint32(dst[l4+4:], s.seq0+uint32(s.off))
		if !last {
			dst[l4+13] &^= tcpFlagFIN | tcpFlagPSH
		}
		if s.idx > 0 {
			dst[l4+13] &^= tcpFlagCWR
		}
		dst[l4+16], dst[l4+17] = 0, 0
	} else {
		proto = protoUDP
		binary.BigEndian.PutUint16(dst[l4+4:], uint16(l4len))
		dst[l4+6], dst[l4+7] = 0, 0
	}
	c := checksum(dst[l4:n], s.addrSum+proto+uint64(l4len))
	if !s.tcp && c == 0 {
		c = 0xffff
	}
	if s.tcp {
		binary.BigEndian.PutUint16(dst[l4+16:], c)
	} else {
		binary.BigEndian.PutUint16(dst[l4+6:], c)
	}

	s.off += plen
	s.idx++
	s.done = last
	return n
}
