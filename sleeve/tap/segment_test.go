package tap

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

var (
	macA = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x0a}
	macB = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x0b}
	ip4A = net.IP{10, 1, 0, 1}
	ip4B = net.IP{10, 1, 0, 2}
	ip6A = net.ParseIP("fd00::a")
	ip6B = net.ParseIP("fd00::b")
)

// naiveChecksum is RFC 1071 done the slow, obvious way, as an independent
// reference for csumAdd.
func naiveChecksum(parts ...[]byte) uint16 {
	var all []byte
	for _, p := range parts {
		all = append(all, p...)
	}
	var s uint32
	for i := 0; i+1 < len(all); i += 2 {
		s += uint32(all[i])<<8 | uint32(all[i+1])
	}
	if len(all)%2 == 1 {
		s += uint32(all[len(all)-1]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

func TestChecksum(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{0, 1, 2, 3, 7, 8, 9, 31, 32, 33, 63, 64, 65, 1500, 65535} {
		for range 20 {
			b := make([]byte, n)
			for i := range b {
				b[i] = byte(r.Uint32())
			}
			if r.IntN(4) == 0 {
				for i := range b {
					b[i] = 0xff
				}
			}
			if got, want := checksum(b, 0), naiveChecksum(b); got != want {
				t.Fatalf("len %d: checksum %#04x, want %#04x", n, got, want)
			}
		}
	}
}

func TestVnetHdr(t *testing.T) {
	h := VnetHdr{Flags: FlagNeedsCsum, GSOType: GSOTCPv4 | GSOECN, HdrLen: 0x0142, GSOSize: 1324, CsumStart: 34, CsumOffset: 16}
	b := make([]byte, VnetHdrLen)
	h.Encode(b)
	want := []byte{0x01, 0x81, 0x42, 0x01, 0x2c, 0x05, 34, 0, 16, 0}
	if !bytes.Equal(b, want) {
		t.Fatalf("Encode = % x, want % x (little-endian)", b, want)
	}
	var got VnetHdr
	if err := got.Decode(b); err != nil || got != h {
		t.Fatalf("Decode = %v, %v; want %v", got, err, h)
	}
	if err := got.Decode(b[:9]); err == nil {
		t.Fatal("Decode accepted 9 bytes")
	}
}

type frameSpec struct {
	ipv6    bool
	udp     bool
	vlan    bool
	ext     bool // IPv6 destination-options header before L4
	flags   string
	payload int
}

// buildFrame serialises a frame with correct lengths and checksums.
func buildFrame(t testing.TB, s frameSpec) (frame, payload []byte) {
	t.Helper()
	payload = make([]byte, s.payload)
	for i := range payload {
		payload[i] = byte(i*31 + i>>8)
	}
	var ls []gopacket.SerializableLayer
	eth := &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: layers.EthernetTypeIPv4}
	ls = append(ls, eth)
	var netType layers.EthernetType = layers.EthernetTypeIPv4
	if s.ipv6 {
		netType = layers.EthernetTypeIPv6
	}
	if s.vlan {
		eth.EthernetType = layers.EthernetTypeDot1Q
		ls = append(ls, &layers.Dot1Q{VLANIdentifier: 42, Type: netType})
	} else {
		eth.EthernetType = netType
	}
	proto := layers.IPProtocolTCP
	if s.udp {
		proto = layers.IPProtocolUDP
	}
	var nl gopacket.NetworkLayer
	if s.ipv6 {
		ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: proto, SrcIP: ip6A, DstIP: ip6B, FlowLabel: 7}
		nl = ip
		ls = append(ls, ip)
	} else {
		ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Id: 0xfff0, Flags: layers.IPv4DontFragment, Protocol: proto, SrcIP: ip4A, DstIP: ip4B}
		nl = ip
		ls = append(ls, ip)
	}
	if s.udp {
		u := &layers.UDP{SrcPort: 4000, DstPort: 5000}
		u.SetNetworkLayerForChecksum(nl)
		ls = append(ls, u)
	} else {
		tcp := &layers.TCP{SrcPort: 4000, DstPort: 5000, Seq: 0xffffff00, Ack: 77, ACK: true, Window: 1000,
			Options: []layers.TCPOption{
				{OptionType: layers.TCPOptionKindNop}, {OptionType: layers.TCPOptionKindNop},
				{OptionType: layers.TCPOptionKindTimestamps, OptionLength: 10, OptionData: []byte{1, 2, 3, 4, 5, 6, 7, 8}},
			}}
		for _, f := range s.flags {
			switch f {
			case 'F':
				tcp.FIN = true
			case 'P':
				tcp.PSH = true
			case 'C':
				tcp.CWR = true
			case 'E':
				tcp.ECE = true
			}
		}
		tcp.SetNetworkLayerForChecksum(nl)
		ls = append(ls, tcp)
	}
	ls = append(ls, gopacket.Payload(payload))
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	frame = buf.Bytes()
	if s.ext {
		// Splice an 8-byte destination-options header (PadN) after the
		// IPv6 header; L4 checksums do not cover it.
		l3 := ethHdrLen
		if s.vlan {
			l3 += vlanTagLen
		}
		ext := []byte{byte(proto), 0, 1, 4, 0, 0, 0, 0}
		frame = append(frame[:l3+ipv6HdrLen:l3+ipv6HdrLen], append(ext, frame[l3+ipv6HdrLen:]...)...)
		frame[l3+6] = 60
		binary.BigEndian.PutUint16(frame[l3+4:], binary.BigEndian.Uint16(frame[l3+4:])+8)
	}
	return frame, payload
}

// l3l4 finds the IP and L4 header offsets of a frame built by buildFrame.
func l3l4(s frameSpec) (l3, l4 int) {
	l3 = ethHdrLen
	if s.vlan {
		l3 += vlanTagLen
	}
	l4 = l3 + ipv4MinLen
	if s.ipv6 {
		l4 = l3 + ipv6HdrLen
		if s.ext {
			l4 += 8
		}
	}
	return l3, l4
}

// checkWithGopacket decodes seg and re-serialises it with gopacket
// computing every checksum; the bytes must match.
func checkWithGopacket(t *testing.T, seg []byte) gopacket.Packet {
	t.Helper()
	pkt := gopacket.NewPacket(seg, layers.LayerTypeEthernet, gopacket.Default)
	if el := pkt.ErrorLayer(); el != nil {
		t.Fatalf("gopacket cannot decode segment: %v", el.Error())
	}
	var ls []gopacket.SerializableLayer
	for _, l := range pkt.Layers() {
		switch l := l.(type) {
		case *layers.TCP:
			l.SetNetworkLayerForChecksum(pkt.NetworkLayer())
		case *layers.UDP:
			l.SetNetworkLayerForChecksum(pkt.NetworkLayer())
		}
		if sl, ok := l.(gopacket.SerializableLayer); ok {
			ls = append(ls, sl)
		} else {
			ls = append(ls, gopacket.Payload(l.LayerContents()))
		}
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{ComputeChecksums: true}, ls...); err != nil {
		t.Fatalf("re-serialise: %v", err)
	}
	want := buf.Bytes()
	if len(want) > len(seg) && len(seg) < 60 && !bytes.ContainsFunc(want[len(seg):], func(r rune) bool { return r != 0 }) {
		want = want[:len(seg)] // gopacket pads Ethernet frames to 60 bytes
	}
	if !bytes.Equal(want, seg) {
		t.Fatalf("segment differs from gopacket's checksummed rendering\n got % x\nwant % x", seg[:min(80, len(seg))], want[:min(80, len(want))])
	}
	return pkt
}

func TestSegment(t *testing.T) {
	for _, tc := range []struct {
		name    string
		spec    frameSpec
		gsoSize int
		ecn     bool
	}{
		{"tcp4", frameSpec{payload: 10000, flags: "FP"}, 1324, false},
		{"tcp4 exact multiple", frameSpec{payload: 4 * 1000, flags: "P"}, 1000, false},
		{"tcp4 one segment", frameSpec{payload: 500, flags: "FP"}, 1324, false},
		{"tcp4 ecn cwr", frameSpec{payload: 5000, flags: "CEP"}, 1448, true},
		{"tcp4 vlan", frameSpec{payload: 9000, vlan: true}, 1400, false},
		{"tcp4 64k", frameSpec{payload: 65535 - 20 - 32}, 1324, false},
		{"tcp6", frameSpec{ipv6: true, payload: 10000, flags: "FP"}, 1304, false},
		{"tcp6 ext header", frameSpec{ipv6: true, ext: true, payload: 3000}, 1200, false},
		{"udp4", frameSpec{udp: true, payload: 5000}, 1400, false},
		{"udp6", frameSpec{udp: true, ipv6: true, payload: 5000}, 1400, false},
		{"udp6 vlan", frameSpec{udp: true, ipv6: true, vlan: true, payload: 2801}, 1400, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			frame, payload := buildFrame(t, tc.spec)
			l3, l4 := l3l4(tc.spec)
			h := VnetHdr{Flags: FlagNeedsCsum, GSOSize: uint16(tc.gsoSize), CsumStart: uint16(l4)}
			switch {
			case tc.spec.udp:
				h.GSOType, h.CsumOffset = GSOUDPL4, 6
			case tc.spec.ipv6:
				h.GSOType, h.CsumOffset = GSOTCPv6, 16
			default:
				h.GSOType, h.CsumOffset = GSOTCPv4, 16
			}
			if tc.ecn {
				h.GSOType |= GSOECN
			}
			// The kernel leaves a partial checksum in a GSO frame;
			// scribble on it to show segmentation does not trust it.
			frame[l4+int(h.CsumOffset)] ^= 0x5a
			var s segmenter
			b := withVnet(h, frame)
			if err := s.reset(b, MaxFrameSize-VnetHdrLen); err != nil {
				t.Fatalf("reset: %v", err)
			}
			orig := bytes.Clone(b)
			dst := make([]byte, MaxFrameSize)
			var joined []byte
			want := (len(payload) + tc.gsoSize - 1) / tc.gsoSize
			i := 0
			for seg := s.next(dst); seg != nil; seg = s.next(dst) {
				n := len(seg)
				last := i == want-1
				pkt := checkWithGopacket(t, seg)
				app := pkt.ApplicationLayer()
				if app == nil {
					t.Fatalf("segment %d has no payload", i)
				}
				if !last && len(app.Payload()) != tc.gsoSize {
					t.Fatalf("segment %d carries %d bytes, want %d", i, len(app.Payload()), tc.gsoSize)
				}
				joined = append(joined, app.Payload()...)
				if ip, ok := pkt.NetworkLayer().(*layers.IPv4); ok && ip.Id != 0xfff0+uint16(i) {
					t.Fatalf("segment %d IPv4 ID %#x", i, ip.Id)
				}
				if tcp, ok := pkt.TransportLayer().(*layers.TCP); ok {
					if tcp.Seq != 0xffffff00+uint32(i*tc.gsoSize) {
						t.Fatalf("segment %d seq %#x", i, tcp.Seq)
					}
					origFIN, origPSH, origCWR := bytes.ContainsRune([]byte(tc.spec.flags), 'F'), bytes.ContainsRune([]byte(tc.spec.flags), 'P'), bytes.ContainsRune([]byte(tc.spec.flags), 'C')
					if tcp.FIN != (origFIN && last) || tcp.PSH != (origPSH && last) || tcp.CWR != (origCWR && i == 0) {
						t.Fatalf("segment %d flags FIN=%v PSH=%v CWR=%v", i, tcp.FIN, tcp.PSH, tcp.CWR)
					}
					if !tcp.ACK || tcp.ECE != bytes.ContainsRune([]byte(tc.spec.flags), 'E') {
						t.Fatalf("segment %d lost ACK/ECE", i)
					}
				}
				if u, ok := pkt.TransportLayer().(*layers.UDP); ok && int(u.Length) != n-l4 {
					t.Fatalf("segment %d UDP length %d, want %d", i, u.Length, n-l4)
				}
				if n > l3+65535 {
					t.Fatalf("segment %d is %d bytes", i, n)
				}
				i++
			}
			if i != want {
				t.Fatalf("%d segments, want %d", i, want)
			}
			if !bytes.Equal(joined, payload) {
				t.Fatal("segments do not reassemble to the payload")
			}
			if !bytes.Equal(b, orig) {
				t.Fatal("segmentation modified its input")
			}
		})
	}
}

func TestSegmentRejects(t *testing.T) {
	good, _ := buildFrame(t, frameSpec{payload: 3000})
	good6, _ := buildFrame(t, frameSpec{payload: 3000, ipv6: true})
	mod := func(b []byte, f func([]byte)) []byte { b = bytes.Clone(b); f(b); return b }
	tcp4 := VnetHdr{GSOType: GSOTCPv4, GSOSize: 1000}
	for _, tc := range []struct {
		name   string
		frame  []byte
		h      VnetHdr
		maxSeg int
	}{
		{"ufo", good, VnetHdr{GSOType: GSOUDP, GSOSize: 1000}, MaxFrameSize},
		{"unknown type", good, VnetHdr{GSOType: 9, GSOSize: 1000}, MaxFrameSize},
		{"ecn on udp", good, VnetHdr{GSOType: GSOUDPL4 | GSOECN, GSOSize: 1000}, MaxFrameSize},
		{"zero gso size", good, VnetHdr{GSOType: GSOTCPv4}, MaxFrameSize},
		{"short ethernet", good[:10], tcp4, MaxFrameSize},
		{"arp", mod(good, func(b []byte) { b[12], b[13] = 0x08, 0x06 }), tcp4, MaxFrameSize},
		{"tcp6 type on ipv4", good, VnetHdr{GSOType: GSOTCPv6, GSOSize: 1000}, MaxFrameSize},
		{"tcp4 type on ipv6", good6, tcp4, MaxFrameSize},
		{"bad ihl", mod(good, func(b []byte) { b[14] = 0x44 }), tcp4, MaxFrameSize},
		{"total length beyond frame", good[:1000], tcp4, MaxFrameSize},
		{"fragment", mod(good, func(b []byte) { b[20] |= 0x20 }), tcp4, MaxFrameSize},
		{"udp protocol for tcp", mod(good, func(b []byte) { b[23] = 17 }), tcp4, MaxFrameSize},
		{"bad data offset", mod(good, func(b []byte) { b[46] = 0x10 }), tcp4, MaxFrameSize},
		{"segment too big", good, tcp4, 500},
		{"ipv6 jumbo", mod(good6, func(b []byte) { b[18], b[19] = 0, 0 }), VnetHdr{GSOType: GSOTCPv6, GSOSize: 1000}, MaxFrameSize},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var s segmenter
			if err := s.reset(withVnet(tc.h, tc.frame), tc.maxSeg); err == nil {
				t.Fatal("reset accepted the frame")
			} else if !errors.Is(err, ErrMalformed) {
				t.Fatalf("reset: %v, want ErrMalformed", err)
			} else if s.next(make([]byte, MaxFrameSize)) != nil {
				t.Fatal("next produced a segment after a failed reset")
			}
		})
	}
}

func TestCompleteChecksum(t *testing.T) {
	for _, tc := range []struct {
		name string
		spec frameSpec
	}{
		{"tcp4", frameSpec{payload: 1000}},
		{"tcp4 odd", frameSpec{payload: 999}},
		{"udp4", frameSpec{udp: true, payload: 333}},
		{"tcp6", frameSpec{ipv6: true, payload: 1200}},
		{"udp6 vlan", frameSpec{ipv6: true, udp: true, vlan: true, payload: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want, _ := buildFrame(t, tc.spec)
			l3, l4 := l3l4(tc.spec)
			off := 16
			if tc.spec.udp {
				off = 6
			}
			// Make the frame look like the kernel hands it over with
			// CHECKSUM_PARTIAL: the field holds the folded pseudo-header sum.
			frame := bytes.Clone(want)
			l4len := len(frame) - l4
			var ps uint64
			proto := uint64(protoTCP)
			if tc.spec.udp {
				proto = protoUDP
			}
			if tc.spec.ipv6 {
				ps = csumAdd(0, frame[l3+8:l3+40])
			} else {
				ps = csumAdd(0, frame[l3+12:l3+20])
			}
			binary.BigEndian.PutUint16(frame[l4+off:], csumFold(ps+proto+uint64(l4len)))
			h := VnetHdr{Flags: FlagNeedsCsum, CsumStart: uint16(l4), CsumOffset: uint16(off)}
			if err := completeChecksum(frame, &h); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(frame, want) {
				t.Fatalf("checksum %#04x, want %#04x", binary.BigEndian.Uint16(frame[l4+off:]), binary.BigEndian.Uint16(want[l4+off:]))
			}
			checkWithGopacket(t, frame)
		})
	}
	frame, _ := buildFrame(t, frameSpec{payload: 10})
	for _, h := range []VnetHdr{
		{Flags: FlagNeedsCsum, CsumStart: uint16(len(frame)), CsumOffset: 0},
		{Flags: FlagNeedsCsum, CsumStart: 34, CsumOffset: uint16(len(frame))},
		{Flags: FlagNeedsCsum, CsumStart: 2, CsumOffset: 0},
	} {
		if err := completeChecksum(frame, &h); err == nil {
			t.Errorf("completeChecksum accepted %v on a %d-byte frame", h, len(frame))
		}
	}
}

// FuzzSegment feeds arbitrary headers and frames to the software offload
// path: it must never panic, never emit a segment larger than its buffer,
// and every segment it emits must carry valid IP and L4 checksums.
func FuzzSegment(f *testing.F) {
	for _, s := range []frameSpec{
		{payload: 3000, flags: "FP"}, {ipv6: true, payload: 3000}, {udp: true, payload: 3000},
		{ipv6: true, ext: true, payload: 2000}, {vlan: true, payload: 2000},
	} {
		frame, _ := buildFrame(f, s)
		_, l4 := l3l4(s)
		h := VnetHdr{Flags: FlagNeedsCsum, GSOType: GSOTCPv4, GSOSize: 1000, CsumStart: uint16(l4), CsumOffset: 16}
		if s.ipv6 {
			h.GSOType = GSOTCPv6
		}
		if s.udp {
			h.GSOType, h.CsumOffset = GSOUDPL4, 6
		}
		hb := make([]byte, VnetHdrLen)
		h.Encode(hb)
		f.Add(append(hb, frame...), uint16(4000))
	}
	f.Add([]byte{0, 1, 0, 0, 1, 0}, uint16(100))
	dst := make([]byte, MaxFrameSize)
	f.Fuzz(func(t *testing.T, b []byte, maxSeg uint16) {
		var h VnetHdr
		if h.Decode(b) != nil {
			return
		}
		frame := b[VnetHdrLen:]
		if h.GSOType == GSONone {
			if h.Flags&FlagNeedsCsum != 0 {
				completeChecksum(bytes.Clone(frame), &h)
			}
			return
		}
		var s segmenter
		if s.reset(b, int(maxSeg)) != nil {
			return
		}
		tcp := h.GSOType&^GSOECN != GSOUDPL4
		for count := 0; ; count++ {
			seg := s.next(dst)
			if seg == nil {
				break
			}
			if len(seg) > int(maxSeg) {
				t.Fatalf("segment of %d bytes exceeds %d", len(seg), maxSeg)
			}
			if count > 65536 {
				t.Fatal("segmenter does not terminate")
			}
			var sh VnetHdr
			sh.Decode(dst)
			if err := checkSums(seg, int(sh.CsumStart), tcp); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// checkSums verifies the IPv4 header checksum (if IPv4) and the L4
// checksum, at l4, of one segment.
func checkSums(seg []byte, l4 int, tcp bool) error {
	l3 := ethHdrLen
	if et := binary.BigEndian.Uint16(seg[12:]); et == 0x8100 || et == 0x88a8 {
		l3 += vlanTagLen
	}
	var addrSum uint64
	if seg[l3]>>4 == 4 {
		if checksum(seg[l3:l3+int(seg[l3]&0x0f)*4], 0) != 0 {
			return errors.New("bad IPv4 header checksum")
		}
		addrSum = csumAdd(0, seg[l3+12:l3+20])
	} else {
		addrSum = csumAdd(0, seg[l3+8:l3+40])
	}
	proto := uint64(protoUDP)
	if tcp {
		proto = protoTCP
	}
	if c := checksum(seg[l4:], addrSum+proto+uint64(len(seg)-l4)); c != 0 && !(c == 0xffff && !tcp) {
		return fmt.Errorf("bad L4 checksum (residue %#04x)", c)
	}
	return nil
}

// withVnet is h encoded, followed by frame.
func withVnet(h VnetHdr, frame []byte) []byte {
	b := make([]byte, VnetHdrLen, VnetHdrLen+len(frame))
	h.Encode(b)
	return append(b, frame...)
}

func BenchmarkSegment(b *testing.B) {
	frame, _ := buildFrame(b, frameSpec{payload: 65535 - 20 - 32})
	h := VnetHdr{GSOType: GSOTCPv4, GSOSize: 1324}
	dst := make([]byte, MaxFrameSize)
	in := withVnet(h, frame)
	var s segmenter
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	for b.Loop() {
		if err := s.reset(in, MaxFrameSize-VnetHdrLen); err != nil {
			b.Fatal(err)
		}
		for s.next(dst) != nil {
		}
	}
}

func BenchmarkChecksum(b *testing.B) {
	buf := make([]byte, 1500)
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		checksum(buf, 0)
	}
}

// Header sizes the tests build frames with.
const (
	ipv4MinLen = 20
	ipv6HdrLen = 40
	udpHdrLen  = 8
)
