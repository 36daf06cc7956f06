// Package toobig owns the sleeve datapath's answer to a frame it must drop
// because the frame is larger than the path to its destination peer allows:
// the ICMP error a router would send. For IPv4 with DF that is "destination
// unreachable, fragmentation needed" (type 3 code 4) carrying the next-hop
// MTU; for IPv6 it is "packet too big" (ICMPv6 type 2). The answer goes back
// to the original sender as an Ethernet frame the caller writes into the
// local bridge, so the sender's kernel lowers its path MTU and resends
// smaller packets.
//
// As in Weave Net, the answer impersonates the original destination: its
// source MAC is the original destination MAC, its destination MAC the
// original source MAC, its IP source the original destination address, its
// IP destination the original source address. VLAN tags are kept.
//
// Parsing and serialising use gopacket layers and allocate. That is fine
// here: only over-size frames get this far, and the caller rate-limits the
// answers. Needed, which the caller asks about every over-size frame, reads
// the bytes directly and does not allocate.
package toobig

import (
	"encoding/binary"
	"net"
	"net/netip"
	"sync"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// Sizes.
const (
	// MinIPv4MTU is the smallest next-hop MTU an IPv4 answer reports;
	// smaller values are raised to it (RFC 791: every host takes 68 bytes).
	MinIPv4MTU = 68
	// MinIPv6MTU is the smallest MTU an IPv6 answer reports (RFC 8200);
	// smaller values are raised to it, since hosts ignore smaller ones.
	MinIPv6MTU = 1280
	// MaxReplyLen is the longest answer Reply writes: Ethernet header, two
	// VLAN tags and a 1280-byte ICMPv6 packet. A dst of this size always
	// suffices.
	MaxReplyLen = ethHeaderLen + 2*vlanTagLen + ipv6MaxReply

	ethHeaderLen = 14
	vlanTagLen   = 4
	ipv4MaxReply = 576  // RFC 1812 4.3.2.3: the whole ICMP datagram stays within 576 bytes
	ipv6MaxReply = 1280 // RFC 4443 2.4 (c): as much as fits in the minimum IPv6 MTU
	ipv4HdrLen   = 20
	ipv6HdrLen   = 40
	icmpHdrLen   = 8
	maxVLANTags  = 2 // 802.1ad outer tag plus 802.1Q inner tag
)

const (
	etherTypeIPv4  = 0x0800
	etherTypeIPv6  = 0x86dd
	etherTypeVLAN  = 0x8100
	etherTypeQinQ  = 0x88a8
	ipv4FlagDF     = 0x40 // in byte 6 of the IPv4 header
	protoICMPv4    = 1
	protoICMPv6    = 58
	icmpv4FragNeed = 3<<8 | 4
	icmpv6TooBig   = 2 << 8
)

// l3Offset returns the offset of the network header and its EtherType,
// skipping up to two VLAN tags; ok is false if the frame is too short.
func l3Offset(frame []byte) (off int, etherType uint16, ok bool) {
	if len(frame) < ethHeaderLen {
		return 0, 0, false
	}
	off = ethHeaderLen
	etherType = binary.BigEndian.Uint16(frame[12:14])
	for range maxVLANTags {
		if etherType != etherTypeVLAN && etherType != etherTypeQinQ {
			break
		}
		if len(frame) < off+vlanTagLen {
			return 0, 0, false
		}
		etherType = binary.BigEndian.Uint16(frame[off+2 : off+4])
		off += vlanTagLen
	}
	return off, etherType, true
}

// Needed reports whether an over-size frame must be answered with an ICMP
// error instead of being fragmented: IPv4 with DF set, or IPv6 (which
// routers never fragment). It is false for everything else (the caller
// fragments IPv4 without DF, and what is not IP is not its business). When
// Needed is true but Reply declines, the caller drops the frame.
func Needed(frame []byte) bool {
	off, et, ok := l3Offset(frame)
	if !ok {
		return false
	}
	switch et {
	case etherTypeIPv4:
		return len(frame) >= off+ipv4HdrLen && frame[off]>>4 == 4 && frame[off+6]&ipv4FlagDF != 0
	case etherTypeIPv6:
		return len(frame) >= off+ipv6HdrLen && frame[off]>>4 == 6
	}
	return false
}

// Reply builds the ICMP answer to frame, an Ethernet frame (optionally VLAN
// tagged) the datapath must drop because its IP packet exceeds mtu, the
// largest IP packet (network header included, link header excluded) the path
// carries. The answer is written to dst and its length returned.
//
// ok is false, and dst untouched, when the frame warrants no answer: not IP;
// IPv4 without DF (fragment it instead); a non-initial IPv4 fragment; an ICMP
// error (no errors about errors); multicast or broadcast addresses; a packet
// that fits mtu after all; truncated or malformed headers; or a dst shorter
// than the answer (MaxReplyLen always suffices).
func Reply(dst []byte, frame []byte, mtu int) (n int, ok bool) {
	var eth layers.Ethernet
	if eth.DecodeFromBytes(frame, gopacket.NilDecodeFeedback) != nil {
		return 0, false
	}
	if !unicastMAC(eth.SrcMAC) || !unicastMAC(eth.DstMAC) {
		return 0, false
	}
	var (
		tags  [maxVLANTags]layers.Dot1Q
		ntags int
		et    = eth.EthernetType
		l3    = eth.Payload
		ls    = make([]gopacket.SerializableLayer, 0, 1+maxVLANTags+3)
	)
	ls = append(ls, swapEthernet(&eth))
	for et == etherTypeVLAN || et == etherTypeQinQ {
		if ntags == maxVLANTags {
			return 0, false
		}
		t := &tags[ntags]
		if t.DecodeFromBytes(l3, gopacket.NilDecodeFeedback) != nil {
			return 0, false
		}
		ntags++
		ls = append(ls, t)
		et, l3 = t.Type, t.Payload
	}
	var more []gopacket.SerializableLayer
	switch et {
	case etherTypeIPv4:
		more, ok = reply4(l3, mtu)
	case etherTypeIPv6:
		more, ok = reply6(l3, mtu)
	}
	if !ok {
		return 0, false
	}
	return serialize(dst, append(ls, more...))
}

// swapEthernet returns the answer's Ethernet header: addresses swapped, the
// (outer) EtherType kept.
func swapEthernet(orig *layers.Ethernet) *layers.Ethernet {
	return &layers.Ethernet{
		SrcMAC:       orig.DstMAC,
		DstMAC:       orig.SrcMAC,
		EthernetType: orig.EthernetType,
	}
}

func unicastMAC(m net.HardwareAddr) bool {
	return len(m) == 6 && m[0]&1 == 0 && !allZero(m)
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// reply4 validates an IPv4 packet and returns the IP and ICMP layers of the
// "fragmentation needed" answer.
func reply4(pkt []byte, mtu int) ([]gopacket.SerializableLayer, bool) {
	var ip layers.IPv4
	if len(pkt) < ipv4HdrLen || pkt[0]>>4 != 4 {
		return nil, false
	}
	total := int(binary.BigEndian.Uint16(pkt[2:4]))
	hl := int(pkt[0]&0x0f) * 4
	// gopacket accepts a zero total length (for TSO captures); a frame on the
	// wire must carry its real length.
	if hl < ipv4HdrLen || total < hl || total > len(pkt) || checksum(pkt[:hl], 0) != 0 {
		return nil, false
	}
	if ip.DecodeFromBytes(pkt, gopacket.NilDecodeFeedback) != nil {
		return nil, false
	}
	if ip.Flags&layers.IPv4DontFragment == 0 || ip.FragOffset != 0 {
		return nil, false
	}
	src, _ := netip.AddrFromSlice(ip.SrcIP)
	dst, _ := netip.AddrFromSlice(ip.DstIP)
	if !unicast4(src) || !unicast4(dst) {
		return nil, false
	}
	if ip.Protocol == protoICMPv4 {
		if total < hl+1 || icmpv4Error(pkt[hl]) {
			return nil, false
		}
	}
	mtu = max(mtu, MinIPv4MTU)
	if total <= mtu || mtu > 0xffff {
		return nil, false
	}
	quote := pkt[:min(total, ipv4MaxReply-ipv4HdrLen-icmpHdrLen)]
	out := &layers.IPv4{
		Version:  4,
		IHL:      5,
		TOS:      0xc0, // precedence "internetwork control", as routers mark ICMP errors
		TTL:      64,
		Protocol: layers.IPProtocolICMPv4,
		SrcIP:    ip.DstIP,
		DstIP:    ip.SrcIP,
	}
	icmp := &layers.ICMPv4{
		TypeCode: layers.ICMPv4TypeCode(icmpv4FragNeed),
		// The layer names bytes 4..7 after echo messages; for type 3 code 4
		// they are 16 unused bits followed by the next-hop MTU (RFC 1191).
		Id:  0,
		Seq: uint16(mtu),
	}
	return []gopacket.SerializableLayer{out, icmp, gopacket.Payload(quote)}, true
}

func unicast4(a netip.Addr) bool {
	return a.Is4() && !a.IsUnspecified() && !a.IsMulticast() && !a.IsLoopback() &&
		a != netip.AddrFrom4([4]byte{255, 255, 255, 255})
}

// icmpv4Error reports whether an ICMP type is an error message (RFC 1812
// 4.3.2.7: never answer one with another).
func icmpv4Error(typ byte) bool {
	switch typ {
	case 3, 4, 5, 11, 12: // unreachable, source quench, redirect, time exceeded, parameter problem
		return true
	}
	return false
}

// reply6 validates an IPv6 packet and returns the IP and ICMPv6 layers of
// the "packet too big" answer.
func reply6(pkt []byte, mtu int) ([]gopacket.SerializableLayer, bool) {
	var ip layers.IPv6
	if len(pkt) < ipv6HdrLen || pkt[0]>>4 != 6 {
		return nil, false
	}
	plen := int(binary.BigEndian.Uint16(pkt[4:6]))
	total := ipv6HdrLen + plen
	// Jumbograms (payload length 0) never travel on Ethernet.
	if plen == 0 || total > len(pkt) {
		return nil, false
	}
	if ip.DecodeFromBytes(pkt[:total], gopacket.NilDecodeFeedback) != nil {
		return nil, false
	}
	src, _ := netip.AddrFromSlice(ip.SrcIP)
	dst, _ := netip.AddrFromSlice(ip.DstIP)
	if !unicast6(src) || !unicast6(dst) {
		return nil, false
	}
	if icmpv6Error(pkt[:total]) {
		return nil, false
	}
	mtu = max(mtu, MinIPv6MTU)
	if total <= mtu {
		return nil, false
	}
	quote := pkt[:min(total, ipv6MaxReply-ipv6HdrLen-icmpHdrLen)]
	body := make([]byte, 4+len(quote))
	binary.BigEndian.PutUint32(body[:4], uint32(mtu))
	copy(body[4:], quote)
	out := &layers.IPv6{
		Version:    6,
		NextHeader: layers.IPProtocolICMPv6,
		HopLimit:   64,
		SrcIP:      ip.DstIP,
		DstIP:      ip.SrcIP,
	}
	icmp := &layers.ICMPv6{TypeCode: layers.ICMPv6TypeCode(icmpv6TooBig)}
	if icmp.SetNetworkLayerForChecksum(out) != nil {
		return nil, false
	}
	// ICMPv6 in gopacket covers only type, code and checksum; the MTU word
	// and the quoted packet follow as payload, inside the checksum.
	return []gopacket.SerializableLayer{out, icmp, gopacket.Payload(body)}, true
}

func unicast6(a netip.Addr) bool {
	return a.Is6() && !a.Is4In6() && !a.IsUnspecified() && !a.IsMulticast() && !a.IsLoopback()
}

// icmpv6Error walks the extension headers of an IPv6 packet and reports
// whether it carries an ICMPv6 error message (types below 128, RFC 4443
// 2.4 (e.1)), or is too mangled to tell.
func icmpv6Error(pkt []byte) bool {
	next := pkt[6]
	off := ipv6HdrLen
	for range 8 { // more extension headers than this is an attack, not traffic
		switch next {
		case protoICMPv6:
			return len(pkt) < off+1 || pkt[off] < 128
		case 0, 43, 60: // hop-by-hop, routing, destination options
			if len(pkt) < off+2 {
				return true
			}
			next, off = pkt[off], off+(int(pkt[off+1])+1)*8
		case 44: // fragment
			if len(pkt) < off+8 {
				return true
			}
			if binary.BigEndian.Uint16(pkt[off+2:off+4])&^7 != 0 {
				return false // a later fragment: the upper layer is not in sight
			}
			next, off = pkt[off], off+8
		case 51: // authentication header
			if len(pkt) < off+2 {
				return true
			}
			next, off = pkt[off], off+(int(pkt[off+1])+2)*4
		default:
			return false
		}
	}
	return true
}

// serialize writes the layers into dst through a pooled gopacket buffer.
func serialize(dst []byte, ls []gopacket.SerializableLayer) (int, bool) {
	buf := bufPool.Get().(gopacket.SerializeBuffer)
	defer bufPool.Put(buf)
	if buf.Clear() != nil {
		return 0, false
	}
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if gopacket.SerializeLayers(buf, opts, ls...) != nil {
		return 0, false
	}
	b := buf.Bytes()
	if len(b) > len(dst) {
		return 0, false
	}
	return copy(dst, b), true
}

var bufPool = sync.Pool{New: func() any {
	return gopacket.NewSerializeBufferExpectedSize(ethHeaderLen+2*vlanTagLen+ipv6HdrLen+icmpHdrLen, ipv6MaxReply)
}}

// checksum is the Internet checksum (RFC 1071) of b folded with initial;
// a correct header sums to zero.
func checksum(b []byte, initial uint32) uint16 {
	sum := initial
	for len(b) >= 2 {
		sum += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}
