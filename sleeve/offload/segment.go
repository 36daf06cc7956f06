package offload

import "encoding/binary"

// Segmenter cuts one GSO super-frame (TCPv4, TCPv6 or UDP L4) into the
// packets the kernel would have put on the wire, without copying payload:
// Next writes a segment's virtio header and rewritten headers into a
// buffer of the caller's and returns the segment's payload as a slice of
// the super-frame. Every segment has the same header length, and all but
// the last carry exactly gso_size payload bytes, so the encapsulated
// segments form a train that one UDP GSO send can carry.
//
// Per TCP segment: IPv4 total length, ID (incremented from the super-frame's)
// and header checksum, or the IPv6 payload length; the sequence number
// advanced; FIN and PSH only on the last segment and CWR only on the first;
// URG kept, with the urgent pointer made relative to the segment, on the
// segments before the urgent point and cleared after it; the L4 checksum
// left partial (see the package comment). ECN bits in the IP header are
// copied to every segment, as TSO does. Per UDP segment: the lengths, the
// IPv4 ID and checksum, and a partial UDP checksum.
type Segmenter struct {
	frame   []byte // Ethernet frame, trimmed to the end of the IP packet
	l3, l4  int    // offsets of the IP and L4 headers in frame
	hdrLen  int    // offset of the payload in frame
	ipv6    bool
	tcp     bool
	gsoSize int
	addrSum uint64
	id0     uint16
	seq0    uint32
	urg     int // urgent pointer of the super-frame, -1 without URG
	off     int // payload offset of the next segment
	idx     int
	n       int // number of segments
}

// Reset prepares to cut frame, a virtio header and an Ethernet frame with
// a GSO type other than GSONone. On error the Segmenter yields nothing.
func (s *Segmenter) Reset(frame []byte) error {
	*s = Segmenter{}
	if len(frame) < VnetHdrLen {
		return malformed("%d-byte frame has no virtio header", len(frame))
	}
	var h vnet
	h.decode(frame)
	gsoType := h.gsoType &^ GSOECN
	switch gsoType {
	case GSOTCPv4, GSOTCPv6:
		s.tcp = true
	case GSOUDPL4:
		if h.gsoType&GSOECN != 0 {
			return malformed("ECN bit on UDP GSO")
		}
	case GSOUDP:
		return malformed("UDP fragmentation offload (UFO) is not supported")
	default:
		return malformed("GSO type %#x cannot be segmented", h.gsoType)
	}
	if h.gsoSize == 0 {
		return malformed("GSO type %#x with zero segment size", h.gsoType)
	}
	s.gsoSize = int(h.gsoSize)
	eth := frame[VnetHdrLen:]
	l3, etherType, ok := l3(eth)
	if !ok {
		return malformed("truncated Ethernet header")
	}
	s.l3 = l3
	var proto uint8
	var end int
	switch etherType {
	case etherIPv4:
		if gsoType == GSOTCPv6 {
			return malformed("TCPv6 GSO on an IPv4 packet")
		}
		if len(eth) < l3+ipv4MinLen || eth[l3]>>4 != 4 {
			return malformed("truncated or bad IPv4 header")
		}
		ihl := int(eth[l3]&0x0f) * 4
		total := int(binary.BigEndian.Uint16(eth[l3+2:]))
		end = l3 + total
		if ihl < ipv4MinLen || total < ihl || end > len(eth) {
			return malformed("IPv4 header length %d, total length %d in a %d-byte frame", ihl, total, len(eth))
		}
		if binary.BigEndian.Uint16(eth[l3+6:])&0x3fff != 0 {
			return malformed("IPv4 fragment cannot be segmented")
		}
		proto = eth[l3+9]
		s.l4 = l3 + ihl
		s.id0 = binary.BigEndian.Uint16(eth[l3+4:])
		s.addrSum = sum(0, eth[l3+12:l3+20])
	case etherIPv6:
		if gsoType == GSOTCPv4 {
			return malformed("TCPv4 GSO on an IPv6 packet")
		}
		if len(eth) < l3+ipv6Len || eth[l3]>>4 != 6 {
			return malformed("truncated or bad IPv6 header")
		}
		s.ipv6 = true
		plen := int(binary.BigEndian.Uint16(eth[l3+4:]))
		end = l3 + ipv6Len + plen
		if plen == 0 || end > len(eth) {
			return malformed("IPv6 payload length %d in a %d-byte frame", plen, len(eth))
		}
		proto = eth[l3+6]
		s.l4 = l3 + ipv6Len
		// Extension headers GSO may carry: hop-by-hop, routing,
		// destination options. A fragment header or anything else ends
		// the walk and fails the protocol check below.
		for i := 0; i < 8 && (proto == 0 || proto == 43 || proto == 60); i++ {
			if s.l4+8 > end {
				return malformed("truncated IPv6 extension header")
			}
			proto, s.l4 = eth[s.l4], s.l4+(int(eth[s.l4+1])+1)*8
		}
		s.addrSum = sum(0, eth[l3+8:l3+40])
	default:
		return malformed("EtherType %#04x cannot be segmented", etherType)
	}
	s.urg = -1
	if s.tcp {
		if proto != protoTCP {
			return malformed("TCP GSO but IP protocol %d", proto)
		}
		if s.l4+tcpMinLen > end {
			return malformed("truncated TCP header")
		}
		doff := int(eth[s.l4+12]>>4) * 4
		if doff < tcpMinLen || s.l4+doff > end {
			return malformed("bad TCP data offset %d", doff)
		}
		s.hdrLen = s.l4 + doff
		s.seq0 = binary.BigEndian.Uint32(eth[s.l4+4:])
		if eth[s.l4+13]&tcpURG != 0 {
			s.urg = int(binary.BigEndian.Uint16(eth[s.l4+18:]))
		}
	} else {
		if proto != protoUDP {
			return malformed("UDP GSO but IP protocol %d", proto)
		}
		if s.l4+udpLen > end {
			return malformed("truncated UDP header")
		}
		s.hdrLen = s.l4 + udpLen
	}
	s.frame = eth[:end]
	s.n = max(1, (end-s.hdrLen+s.gsoSize-1)/s.gsoSize)
	return nil
}

// HeaderLen is the length of what Next writes: virtio header and the
// Ethernet, IP and L4 headers of one segment.
func (s *Segmenter) HeaderLen() int { return VnetHdrLen + s.hdrLen }

// SegmentLen is the length of the largest segment (the first): virtio
// header, headers and payload.
func (s *Segmenter) SegmentLen() int {
	return VnetHdrLen + s.hdrLen + min(s.gsoSize, len(s.frame)-s.hdrLen)
}

// Shrink lowers the segment size of a TCP super-frame so that every segment
// is at most maxLen bytes (virtio header included), as a router that
// fragments would, but without fragments: TCP accepts segments of any size.
// It reports false, changing nothing, for UDP (the segment size is the
// application's datagram size) or when no payload would fit.
func (s *Segmenter) Shrink(maxLen int) bool {
	per := maxLen - VnetHdrLen - s.hdrLen
	if !s.tcp || s.frame == nil || per <= 0 || s.idx > 0 {
		return false
	}
	if per < s.gsoSize {
		s.gsoSize = per
		s.n = max(1, (len(s.frame)-s.hdrLen+per-1)/per)
	}
	return true
}

// Count is the number of segments.
func (s *Segmenter) Count() int { return s.n }

// PayloadLen is the payload of every segment but the last.
func (s *Segmenter) PayloadLen() int { return s.gsoSize }

// Next writes the next segment's virtio header and headers into
// hdr[:HeaderLen()] and returns its payload, a slice of the super-frame;
// ok is false when the frame is exhausted.
func (s *Segmenter) Next(hdr []byte) (payload []byte, ok bool) {
	if s.idx >= s.n {
		return nil, false
	}
	total := len(s.frame) - s.hdrLen
	plen := min(s.gsoSize, total-s.off)
	last := s.idx == s.n-1
	h := hdr[:VnetHdrLen+s.hdrLen]
	d := h[VnetHdrLen:]
	copy(d, s.frame[:s.hdrLen])
	n := s.hdrLen + plen // segment length from the Ethernet header
	l3, l4 := s.l3, s.l4
	if s.ipv6 {
		binary.BigEndian.PutUint16(d[l3+4:], uint16(n-l3-ipv6Len))
	} else {
		binary.BigEndian.PutUint16(d[l3+2:], uint16(n-l3))
		binary.BigEndian.PutUint16(d[l3+4:], s.id0+uint16(s.idx))
		d[l3+10], d[l3+11] = 0, 0
		binary.BigEndian.PutUint16(d[l3+10:], Checksum(d[l3:l4], 0))
	}
	v := vnet{flags: FlagNeedsCsum, gsoType: GSONone, hdrLen: uint16(s.hdrLen), csumStart: uint16(l4)}
	l4len := n - l4
	if s.tcp {
		binary.BigEndian.PutUint32(d[l4+4:], s.seq0+uint32(s.off))
		f := d[l4+13]
		if !last {
			f &^= tcpFIN | tcpPSH
		}
		if s.idx > 0 {
			f &^= tcpCWR
		}
		if s.urg >= 0 {
			if s.urg > s.off {
				binary.BigEndian.PutUint16(d[l4+18:], uint16(s.urg-s.off))
			} else {
				f &^= tcpURG
				d[l4+18], d[l4+19] = 0, 0
			}
		}
		d[l4+13] = f
		v.csumOffset = tcpCsumOff
		binary.BigEndian.PutUint16(d[l4+tcpCsumOff:], pseudo(s.addrSum, protoTCP, l4len))
	} else {
		binary.BigEndian.PutUint16(d[l4+4:], uint16(l4len))
		v.csumOffset = udpCsumOff
		binary.BigEndian.PutUint16(d[l4+udpCsumOff:], pseudo(s.addrSum, protoUDP, l4len))
	}
	v.encode(h)
	payload = s.frame[s.hdrLen+s.off : s.hdrLen+s.off+plen]
	s.off += plen
	s.idx++
	return payload, true
}
