package toobig

import (
	"bytes"
	"encoding/binary"
	"net"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

var (
	macA = net.HardwareAddr{0x02, 0, 0, 0, 0, 0xa}
	macB = net.HardwareAddr{0x02, 0, 0, 0, 0, 0xb}
	ip4A = net.IP{10, 32, 0, 1}
	ip4B = net.IP{10, 32, 0, 2}
	ip6A = net.ParseIP("fd00::a")
	ip6B = net.ParseIP("fd00::b")
)

// frameSpec describes an original frame from A to B.
type frameSpec struct {
	vlans    []uint16 // outermost first; the first uses 802.1ad if two are given
	dstMAC   net.HardwareAddr
	v6       bool
	src, dst net.IP
	noDF     bool
	fragOff  uint16
	ihl      uint8 // IPv4 header length in words, 5 when zero
	proto    layers.IPProtocol
	l4       []byte // upper-layer header bytes, then zero padding up to total
	ext6     []gopacket.SerializableLayer
	total    int // IP packet length
}

func build(t testing.TB, s frameSpec) []byte {
	t.Helper()
	dstMAC := s.dstMAC
	if dstMAC == nil {
		dstMAC = macB
	}
	eth := &layers.Ethernet{SrcMAC: macA, DstMAC: dstMAC}
	ls := []gopacket.SerializableLayer{eth}
	next := func(et layers.EthernetType) {
		switch l := ls[len(ls)-1].(type) {
		case *layers.Ethernet:
			l.EthernetType = et
		case *layers.Dot1Q:
			l.Type = et
		}
	}
	for i, id := range s.vlans {
		if i == 0 && len(s.vlans) == 2 {
			next(layers.EthernetTypeQinQ)
		} else {
			next(layers.EthernetTypeDot1Q)
		}
		ls = append(ls, &layers.Dot1Q{VLANIdentifier: id, Priority: 3})
	}
	proto := s.proto
	if proto == 0 {
		proto = layers.IPProtocolTCP
	}
	var hdr int
	if s.v6 {
		next(layers.EthernetTypeIPv6)
		src, dst := ip6A, ip6B
		if s.src != nil {
			src = s.src
		}
		if s.dst != nil {
			dst = s.dst
		}
		nh := proto
		if len(s.ext6) > 0 {
			nh = layers.IPProtocolIPv6Fragment
		}
		ls = append(ls, &layers.IPv6{Version: 6, NextHeader: nh, HopLimit: 64, SrcIP: src, DstIP: dst})
		ls = append(ls, s.ext6...)
		hdr = 40 + 8*len(s.ext6)
	} else {
		next(layers.EthernetTypeIPv4)
		src, dst := ip4A, ip4B
		if s.src != nil {
			src = s.src
		}
		if s.dst != nil {
			dst = s.dst
		}
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: proto, SrcIP: src, DstIP: dst, Id: 0x1234, FragOffset: s.fragOff}
		if !s.noDF {
			ip.Flags = layers.IPv4DontFragment
		}
		if s.ihl > 5 {
			ip.Options = []layers.IPv4Option{{OptionType: 1}, {OptionType: 1}, {OptionType: 1}, {OptionType: 1}}
		}
		ls = append(ls, ip)
		hdr = 20
		if s.ihl > 5 {
			hdr = 24
		}
	}
	body := make([]byte, s.total-hdr)
	copy(body, s.l4)
	for i := len(s.l4); i < len(body); i++ {
		body[i] = byte(i)
	}
	ls = append(ls, gopacket.Payload(body))
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

var tcpHdr = []byte{0x30, 0x39, 0x00, 0x50, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x10, 0xff, 0xff, 0, 0, 0, 0}

func l3(frame []byte) []byte {
	off, _, _ := l3Offset(frame)
	return frame[off:]
}

func TestReply(t *testing.T) {
	for _, tc := range []struct {
		name      string
		spec      frameSpec
		mtu       int
		dstLen    int // MaxReplyLen when zero
		ok        bool
		wantMTU   int
		wantQuote int // bytes of the original packet quoted
	}{
		{name: "IPv4 DF TCP", spec: frameSpec{l4: tcpHdr, total: 1400}, mtu: 1200, ok: true, wantMTU: 1200, wantQuote: 548},
		{name: "IPv4 DF small packet quoted whole", spec: frameSpec{l4: tcpHdr, total: 100}, mtu: 80, ok: true, wantMTU: 80, wantQuote: 100},
		{name: "IPv4 DF with options", spec: frameSpec{ihl: 6, l4: tcpHdr, total: 1400}, mtu: 1376, ok: true, wantMTU: 1376, wantQuote: 548},
		{name: "IPv4 DF VLAN", spec: frameSpec{vlans: []uint16{42}, l4: tcpHdr, total: 1500}, mtu: 1376, ok: true, wantMTU: 1376, wantQuote: 548},
		{name: "IPv4 DF QinQ", spec: frameSpec{vlans: []uint16{7, 42}, l4: tcpHdr, total: 1500}, mtu: 1376, ok: true, wantMTU: 1376, wantQuote: 548},
		{name: "IPv4 DF tiny mtu raised to 68", spec: frameSpec{l4: tcpHdr, total: 200}, mtu: 20, ok: true, wantMTU: 68, wantQuote: 200},
		{name: "IPv4 DF ICMP echo", spec: frameSpec{proto: layers.IPProtocolICMPv4, l4: []byte{8, 0}, total: 1400}, mtu: 1200, ok: true, wantMTU: 1200, wantQuote: 548},
		{name: "IPv4 DF ICMP error", spec: frameSpec{proto: layers.IPProtocolICMPv4, l4: []byte{3, 4}, total: 1400}, mtu: 1200},
		{name: "IPv4 DF ICMP time exceeded", spec: frameSpec{proto: layers.IPProtocolICMPv4, l4: []byte{11, 0}, total: 1400}, mtu: 1200},
		{name: "IPv4 no DF", spec: frameSpec{noDF: true, l4: tcpHdr, total: 1400}, mtu: 1200},
		{name: "IPv4 DF later fragment", spec: frameSpec{fragOff: 100, l4: tcpHdr, total: 1400}, mtu: 1200},
		{name: "IPv4 fits", spec: frameSpec{l4: tcpHdr, total: 1200}, mtu: 1200},
		{name: "IPv4 multicast destination", spec: frameSpec{dst: net.IP{239, 1, 2, 3}, l4: tcpHdr, total: 1400}, mtu: 1200},
		{name: "IPv4 broadcast destination", spec: frameSpec{dst: net.IP{255, 255, 255, 255}, l4: tcpHdr, total: 1400}, mtu: 1200},
		{name: "IPv4 unspecified source", spec: frameSpec{src: net.IP{0, 0, 0, 0}, l4: tcpHdr, total: 1400}, mtu: 1200},
		{name: "Ethernet broadcast destination", spec: frameSpec{dstMAC: net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, l4: tcpHdr, total: 1400}, mtu: 1200},
		{name: "Ethernet multicast destination", spec: frameSpec{dstMAC: net.HardwareAddr{0x01, 0, 0x5e, 1, 2, 3}, l4: tcpHdr, total: 1400}, mtu: 1200},
		{name: "dst too small", spec: frameSpec{l4: tcpHdr, total: 1400}, mtu: 1200, dstLen: 589},
		{name: "dst just large enough", spec: frameSpec{l4: tcpHdr, total: 1400}, mtu: 1200, dstLen: 590, ok: true, wantMTU: 1200, wantQuote: 548},

		{name: "IPv6 UDP", spec: frameSpec{v6: true, proto: layers.IPProtocolUDP, total: 1400}, mtu: 1300, ok: true, wantMTU: 1300, wantQuote: 1232},
		{name: "IPv6 VLAN", spec: frameSpec{v6: true, vlans: []uint16{5}, proto: layers.IPProtocolUDP, total: 1500}, mtu: 1376, ok: true, wantMTU: 1376, wantQuote: 1232},
		{name: "IPv6 mtu raised to 1280", spec: frameSpec{v6: true, proto: layers.IPProtocolUDP, total: 1400}, mtu: 1000, ok: true, wantMTU: 1280, wantQuote: 1232},
		{name: "IPv6 fits 1280", spec: frameSpec{v6: true, proto: layers.IPProtocolUDP, total: 1270}, mtu: 1000},
		{name: "IPv6 ICMPv6 echo", spec: frameSpec{v6: true, proto: layers.IPProtocolICMPv6, l4: []byte{128, 0}, total: 1400}, mtu: 1300, ok: true, wantMTU: 1300, wantQuote: 1232},
		{name: "IPv6 ICMPv6 error", spec: frameSpec{v6: true, proto: layers.IPProtocolICMPv6, l4: []byte{1, 4}, total: 1400}, mtu: 1300},
		{name: "IPv6 ICMPv6 error behind fragment header", spec: frameSpec{v6: true, ext6: []gopacket.SerializableLayer{fragHdr(layers.IPProtocolICMPv6, 0)}, proto: layers.IPProtocolICMPv6, l4: []byte{3, 0}, total: 1400}, mtu: 1300},
		{name: "IPv6 later fragment", spec: frameSpec{v6: true, ext6: []gopacket.SerializableLayer{fragHdr(layers.IPProtocolICMPv6, 100)}, l4: []byte{3, 0}, total: 1400}, mtu: 1300, ok: true, wantMTU: 1300, wantQuote: 1232},
		{name: "IPv6 multicast destination", spec: frameSpec{v6: true, dst: net.ParseIP("ff02::1"), proto: layers.IPProtocolUDP, total: 1400}, mtu: 1300},
		{name: "IPv6 unspecified source", spec: frameSpec{v6: true, src: net.IPv6unspecified, proto: layers.IPProtocolUDP, total: 1400}, mtu: 1300},
	} {
		t.Run(tc.name, func(t *testing.T) {
			frame := build(t, tc.spec)
			dstLen := tc.dstLen
			if dstLen == 0 {
				dstLen = MaxReplyLen
			}
			dst := bytes.Repeat([]byte{0xee}, dstLen+16)
			n, ok := Reply(dst[:dstLen], frame, tc.mtu)
			if !bytes.Equal(dst[dstLen:], bytes.Repeat([]byte{0xee}, 16)) {
				t.Fatal("Reply wrote beyond dst")
			}
			if ok != tc.ok {
				t.Fatalf("ok = %v, want %v", ok, tc.ok)
			}
			if !ok {
				if n != 0 || !bytes.Equal(dst[:dstLen], bytes.Repeat([]byte{0xee}, dstLen)) {
					t.Fatalf("declined but wrote %d bytes", n)
				}
				return
			}
			check(t, frame, dst[:n], tc.spec, tc.wantMTU, tc.wantQuote)
		})
	}
}

// fragHdr is an IPv6 fragment extension header (gopacket cannot serialise
// one); off is in 8-byte units, more fragments follow.
func fragHdr(next layers.IPProtocol, off uint16) gopacket.Payload {
	return gopacket.Payload{byte(next), 0, byte(off >> 5), byte(off<<3) | 1, 0, 0, 0, 77}
}

// check parses the answer with gopacket and verifies every field the
// original sender's kernel looks at.
func check(t *testing.T, frame, reply []byte, s frameSpec, wantMTU, wantQuote int) {
	t.Helper()
	p := gopacket.NewPacket(reply, layers.LayerTypeEthernet, gopacket.Default)
	if el := p.ErrorLayer(); el != nil {
		t.Fatalf("reply does not parse: %v", el.Error())
	}
	eth := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	if !bytes.Equal(eth.SrcMAC, frame[0:6]) || !bytes.Equal(eth.DstMAC, frame[6:12]) {
		t.Errorf("MACs %s -> %s, want swapped original", eth.SrcMAC, eth.DstMAC)
	}
	var gotTags []uint16
	for _, l := range p.Layers() {
		if q, ok := l.(*layers.Dot1Q); ok {
			gotTags = append(gotTags, q.VLANIdentifier)
		}
	}
	if len(gotTags) != len(s.vlans) || (len(gotTags) > 0 && gotTags[0] != s.vlans[0]) {
		t.Errorf("VLAN tags %v, want %v", gotTags, s.vlans)
	}
	if !bytes.Equal(reply[12:len(reply)-len(l3(reply))], frame[12:len(frame)-len(l3(frame))]) {
		t.Errorf("EtherType/VLAN bytes differ from the original")
	}
	orig := l3(frame)
	if s.v6 {
		ip := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
		if !ip.SrcIP.Equal(net.IP(orig[24:40])) || !ip.DstIP.Equal(net.IP(orig[8:24])) {
			t.Errorf("IPv6 %s -> %s, want swapped original", ip.SrcIP, ip.DstIP)
		}
		if ip.NextHeader != layers.IPProtocolICMPv6 || ip.HopLimit == 0 {
			t.Errorf("IPv6 next header %v hop limit %d", ip.NextHeader, ip.HopLimit)
		}
		msg := ip.Payload
		if len(msg) != int(ip.Length) || 40+len(msg) > 1280 {
			t.Errorf("IPv6 payload %d bytes, length field %d", len(msg), ip.Length)
		}
		if msg[0] != 2 || msg[1] != 0 {
			t.Errorf("ICMPv6 type/code %d/%d, want 2/0", msg[0], msg[1])
		}
		if got := binary.BigEndian.Uint32(msg[4:8]); int(got) != wantMTU {
			t.Errorf("MTU field %d, want %d", got, wantMTU)
		}
		if pseudo6(ip, msg) != 0 {
			t.Error("ICMPv6 checksum wrong")
		}
		if !bytes.Equal(msg[8:], orig[:wantQuote]) {
			t.Errorf("quoted %d bytes, want the original's first %d", len(msg)-8, wantQuote)
		}
		return
	}
	ip := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	if !ip.SrcIP.Equal(net.IP(orig[16:20])) || !ip.DstIP.Equal(net.IP(orig[12:16])) {
		t.Errorf("IPv4 %s -> %s, want swapped original", ip.SrcIP, ip.DstIP)
	}
	if ip.Protocol != layers.IPProtocolICMPv4 || ip.TTL == 0 || ip.IHL != 5 {
		t.Errorf("IPv4 protocol %v TTL %d IHL %d", ip.Protocol, ip.TTL, ip.IHL)
	}
	if checksum(ip.Contents, 0) != 0 {
		t.Error("IPv4 header checksum wrong")
	}
	if int(ip.Length) > 576 || int(ip.Length) != 20+8+wantQuote {
		t.Errorf("IPv4 total length %d, want %d (at most 576)", ip.Length, 20+8+wantQuote)
	}
	msg := ip.Payload
	if checksum(msg, 0) != 0 {
		t.Error("ICMP checksum wrong")
	}
	icmp := p.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
	if icmp.TypeCode.Type() != 3 || icmp.TypeCode.Code() != 4 {
		t.Errorf("ICMP %v, want 3/4", icmp.TypeCode)
	}
	if binary.BigEndian.Uint16(msg[4:6]) != 0 || int(binary.BigEndian.Uint16(msg[6:8])) != wantMTU {
		t.Errorf("ICMP unused/MTU words %x, want 0/%d", msg[4:8], wantMTU)
	}
	if !bytes.Equal(msg[8:], orig[:wantQuote]) {
		t.Errorf("quoted %d bytes, want the original's first %d", len(msg)-8, wantQuote)
	}
	hl := int(orig[0]&0xf) * 4
	if wantQuote < hl+8 {
		t.Errorf("quote shorter than header + 8")
	}
}

// pseudo6 checksums an ICMPv6 message with its IPv6 pseudo-header; a
// correct message sums to zero.
func pseudo6(ip *layers.IPv6, msg []byte) uint16 {
	var ph []byte
	ph = append(ph, ip.SrcIP.To16()...)
	ph = append(ph, ip.DstIP.To16()...)
	ph = binary.BigEndian.AppendUint32(ph, uint32(len(msg)))
	ph = append(ph, 0, 0, 0, 58)
	return checksum(append(ph, msg...), 0)
}

func TestReplyGarbage(t *testing.T) {
	good := build(t, frameSpec{l4: tcpHdr, total: 1400})
	corrupt := func(off int, b byte) []byte {
		f := bytes.Clone(good)
		f[off] = b
		return f
	}
	arp := bytes.Clone(good[:42])
	arp[12], arp[13] = 0x08, 0x06
	for _, tc := range []struct {
		name  string
		frame []byte
	}{
		{"empty", nil},
		{"short Ethernet", good[:10]},
		{"header only", good[:14]},
		{"ARP", arp},
		{"802.3 length field", corrupt(12, 0x05)},
		{"truncated IPv4 header", good[:30]},
		{"truncated IPv4 packet", good[:1000]},
		{"bad IPv4 checksum", corrupt(14+10, good[14+10]^0xff)},
		{"IPv4 version 5", corrupt(14, 0x55)},
		{"IPv4 IHL 4", corrupt(14, 0x44)},
		{"IPv6 in IPv4 EtherType", corrupt(14, 0x60)},
		{"three VLAN tags", append([]byte{2, 0, 0, 0, 0, 0xb, 2, 0, 0, 0, 0, 0xa, 0x81, 0, 0, 1, 0x81, 0, 0, 2, 0x81, 0, 0, 3, 0x08, 0}, good[14:]...)},
		{"IPv6 zero payload length", func() []byte {
			f := build(t, frameSpec{v6: true, proto: layers.IPProtocolUDP, total: 1400})
			f[14+4], f[14+5] = 0, 0
			return f
		}()},
		{"IPv6 payload length beyond frame", func() []byte {
			f := build(t, frameSpec{v6: true, proto: layers.IPProtocolUDP, total: 1400})
			f[14+4], f[14+5] = 0xff, 0xff
			return f
		}()},
	} {
		dst := make([]byte, MaxReplyLen)
		if n, ok := Reply(dst, tc.frame, 1200); ok || n != 0 {
			t.Errorf("%s: Reply = %d, %v, want 0, false", tc.name, n, ok)
		}
	}
}

func TestNeeded(t *testing.T) {
	for _, tc := range []struct {
		name  string
		frame []byte
		want  bool
	}{
		{"IPv4 DF", build(t, frameSpec{l4: tcpHdr, total: 1400}), true},
		{"IPv4 DF VLAN", build(t, frameSpec{vlans: []uint16{9}, l4: tcpHdr, total: 1400}), true},
		{"IPv4 DF QinQ", build(t, frameSpec{vlans: []uint16{8, 9}, l4: tcpHdr, total: 1400}), true},
		{"IPv4 no DF", build(t, frameSpec{noDF: true, l4: tcpHdr, total: 1400}), false},
		{"IPv6", build(t, frameSpec{v6: true, proto: layers.IPProtocolUDP, total: 1400}), true},
		{"IPv6 VLAN", build(t, frameSpec{v6: true, vlans: []uint16{9}, proto: layers.IPProtocolUDP, total: 1400}), true},
		{"short", []byte{1, 2, 3}, false},
		{"ARP", append(make([]byte, 12), 0x08, 0x06, 0, 1), false},
		{"truncated IPv4", append(make([]byte, 12), 0x08, 0x00, 0x45), false},
	} {
		if got := Needed(tc.frame); got != tc.want {
			t.Errorf("%s: Needed = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestNeededAllocs(t *testing.T) {
	frame := build(t, frameSpec{vlans: []uint16{9}, l4: tcpHdr, total: 1400})
	if n := testing.AllocsPerRun(100, func() { Needed(frame) }); n != 0 {
		t.Errorf("Needed allocates %v times", n)
	}
}

func FuzzReply(f *testing.F) {
	for _, s := range []frameSpec{
		{l4: tcpHdr, total: 1400},
		{vlans: []uint16{1, 2}, l4: tcpHdr, total: 200},
		{proto: layers.IPProtocolICMPv4, l4: []byte{8, 0}, total: 600},
		{v6: true, proto: layers.IPProtocolUDP, total: 1400},
		{v6: true, ext6: []gopacket.SerializableLayer{fragHdr(layers.IPProtocolICMPv6, 0)}, proto: layers.IPProtocolICMPv6, l4: []byte{128, 0}, total: 1400},
	} {
		f.Add(build(f, s), 1200, uint16(MaxReplyLen))
		f.Add(build(f, s), 60, uint16(100))
	}
	f.Add([]byte{}, 0, uint16(0))
	f.Fuzz(func(t *testing.T, frame []byte, mtu int, dstLen uint16) {
		const guard = 32
		buf := bytes.Repeat([]byte{0xee}, int(dstLen)+guard)
		dst := buf[:dstLen:dstLen]
		orig := bytes.Clone(frame)
		n, ok := Reply(dst, frame, mtu)
		if !bytes.Equal(buf[dstLen:], bytes.Repeat([]byte{0xee}, guard)) {
			t.Fatal("wrote beyond dst")
		}
		if !bytes.Equal(frame, orig) {
			t.Fatal("modified the frame")
		}
		needed := Needed(frame)
		if !ok {
			if n != 0 {
				t.Fatalf("declined with n = %d", n)
			}
			return
		}
		if n <= 0 || n > int(dstLen) || n > MaxReplyLen {
			t.Fatalf("n = %d with dst of %d", n, dstLen)
		}
		if !needed {
			t.Fatal("Reply answered a frame Needed says needs no answer")
		}
		p := gopacket.NewPacket(dst[:n], layers.LayerTypeEthernet, gopacket.Default)
		if p.Layer(layers.LayerTypeICMPv4) == nil && p.Layer(layers.LayerTypeICMPv6) == nil {
			t.Fatalf("answer is not ICMP: %v", p)
		}
	})
}
