package offload

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/google/gopacket/layers"
)

var tsOpts = []byte{1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2} // NOP NOP timestamps 1, 2

// segCases are the golden segmentation vectors: small gso_size values so
// that every byte of every segment can be read in the test.
var segCases = []struct {
	name string
	in   spec
	want []string // each segment: virtio header, headers, payload
}{
	{
		name: "tcp4 PSH FIN CWR ECN, seq wraps, timestamps",
		in: spec{flags: tcpPSH | tcpFIN | tcpCWR | tcpECE, tos: 0x02, id: 0x1234, df: true, seq: 0xfffffffe, ack: 77,
			opts: tsOpts, payload: pattern(10), gso: 4, ecn: true},
		want: []string{
			"0100420000002200100002000000000202000000000108004502003812344000400614480a2000010a2000020fa01388fffffffe0000004d80d003e8146d00000101080a000000010000000200010203",
			"0100420000002200100002000000000202000000000108004502003812354000400614470a2000010a2000020fa01388000000020000004d805003e8146d00000101080a000000010000000204050607",
			"0100420000002200100002000000000202000000000108004502003612364000400614480a2000010a2000020fa01388000000060000004d805903e8146b00000101080a00000001000000020809",
		},
	},
	{
		name: "tcp6 PSH, traffic class and flow label",
		in:   spec{v6: true, flags: tcpPSH, tos: 0xb8, seq: 1000, ack: 5, payload: pattern(9), gso: 4},
		want: []string{
			"01004a0000003600100002000000000202000000000186dd6b80000700180640fd000000000000000000000000000001fd0000000000000000000000000000020fa01388000003e800000005501003e8fa22000000010203",
			"01004a0000003600100002000000000202000000000186dd6b80000700180640fd000000000000000000000000000001fd0000000000000000000000000000020fa01388000003ec00000005501003e8fa22000004050607",
			"01004a0000003600100002000000000202000000000186dd6b80000700150640fd000000000000000000000000000001fd0000000000000000000000000000020fa01388000003f000000005501803e8fa1f000008",
		},
	},
	{
		name: "tcp4 URG pointer inside the second segment",
		in:   spec{flags: tcpURG, urg: 6, id: 7, seq: 1, ack: 1, payload: pattern(10), gso: 4},
		want: []string{
			"0100360000002200100002000000000202000000000108004500002c00070000400666830a2000010a2000020fa013880000000100000001503003e81461000600010203",
			"0100360000002200100002000000000202000000000108004500002c00080000400666820a2000010a2000020fa013880000000500000001503003e81461000204050607",
			"0100360000002200100002000000000202000000000108004500002a00090000400666830a2000010a2000020fa013880000000900000001501003e8145f00000809",
		},
	},
	{
		name: "tcp4 one segment",
		in:   spec{flags: tcpPSH, id: 9, seq: 5, ack: 6, payload: pattern(3), gso: 1400},
		want: []string{
			"0100360000002200100002000000000202000000000108004500002b00090000400666820a2000010a2000020fa013880000000500000006501803e814600000000102",
		},
	},
	{
		name: "udp4 GSO",
		in:   spec{udp: true, id: 0xfffe, payload: pattern(10), gso: 4},
		want: []string{
			"01002a00000022000600020000000002020000000001080045000020fffe00004011668c0a2000010a2000020fa01388000c146000010203",
			"01002a00000022000600020000000002020000000001080045000020ffff00004011668b0a2000010a2000020fa01388000c146004050607",
			"01002a0000002200060002000000000202000000000108004500001e000000004011668d0a2000010a2000020fa01388000a145e0809",
		},
	},
	{
		name: "udp6 GSO",
		in:   spec{udp: true, v6: true, payload: pattern(5), gso: 4},
		want: []string{
			"01003e0000003600060002000000000202000000000186dd60000007000c1140fd000000000000000000000000000001fd0000000000000000000000000000020fa01388000cfa2100010203",
			"01003e0000003600060002000000000202000000000186dd6000000700091140fd000000000000000000000000000001fd0000000000000000000000000000020fa013880009fa1e04",
		},
	},
}

func TestSegmentGolden(t *testing.T) {
	for _, tc := range segCases {
		t.Run(tc.name, func(t *testing.T) {
			in := build(tc.in)
			orig := bytes.Clone(in)
			got := segments(t, in)
			if len(got) != len(tc.want) {
				t.Fatalf("%d segments, want %d", len(got), len(tc.want))
			}
			for i, g := range got {
				if w := unhex(t, tc.want[i]); !bytes.Equal(g, w) {
					t.Errorf("segment %d\n got %s\nwant %s", i, hexOf(g), hexOf(w))
				}
				// Independently: once the receiving side finishes the
				// partial checksum, gopacket agrees with every checksum.
				gopacketValid(t, complete(t, g))
			}
			if !bytes.Equal(in, orig) {
				t.Error("segmentation changed its input")
			}
		})
	}
}

// TestSegmentRules checks the per-segment rules on full-size frames: sizes,
// sequence numbers, IDs, and which flags each segment carries.
func TestSegmentRules(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   spec
	}{
		{"tcp4 64k", spec{flags: tcpPSH | tcpFIN, id: 0xfff0, df: true, seq: 0xffff0000, opts: tsOpts, payload: pattern(65535 - 20 - 32), gso: 1324}},
		{"tcp4 exact multiple", spec{flags: tcpPSH, payload: pattern(4 * 1000), gso: 1000}},
		{"tcp4 cwr ece", spec{flags: tcpCWR | tcpECE | tcpPSH, tos: 3, payload: pattern(5000), gso: 1448, ecn: true}},
		{"tcp6", spec{v6: true, flags: tcpPSH | tcpFIN, payload: pattern(10000), gso: 1304}},
		{"udp4", spec{udp: true, payload: pattern(5000), gso: 1400}},
		{"udp6", spec{udp: true, v6: true, payload: pattern(2801), gso: 1400}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			segs := segments(t, build(tc.in))
			want := (len(tc.in.payload) + int(tc.in.gso) - 1) / int(tc.in.gso)
			if len(segs) != want {
				t.Fatalf("%d segments, want %d", len(segs), want)
			}
			var joined []byte
			for i, sg := range segs {
				last := i == len(segs)-1
				pkt := gopacketValid(t, complete(t, sg))
				p := pkt.ApplicationLayer().Payload()
				if !last && len(p) != int(tc.in.gso) {
					t.Fatalf("segment %d: %d payload bytes, want %d", i, len(p), tc.in.gso)
				}
				joined = append(joined, p...)
				if ip, ok := pkt.NetworkLayer().(*layers.IPv4); ok {
					if ip.Id != tc.in.id+uint16(i) || ip.TOS != tc.in.tos || (ip.Flags&layers.IPv4DontFragment != 0) != tc.in.df {
						t.Fatalf("segment %d: IPv4 ID %#x TOS %#x flags %v", i, ip.Id, ip.TOS, ip.Flags)
					}
				}
				if tcp, ok := pkt.TransportLayer().(*layers.TCP); ok {
					has := func(f uint8) bool { return tc.in.flags&f != 0 }
					if tcp.Seq != tc.in.seq+uint32(i)*uint32(tc.in.gso) {
						t.Fatalf("segment %d: seq %#x", i, tcp.Seq)
					}
					if tcp.FIN != (has(tcpFIN) && last) || tcp.PSH != (has(tcpPSH) && last) || tcp.CWR != (has(tcpCWR) && i == 0) ||
						tcp.ECE != has(tcpECE) || !tcp.ACK {
						t.Fatalf("segment %d: FIN=%v PSH=%v CWR=%v ECE=%v ACK=%v", i, tcp.FIN, tcp.PSH, tcp.CWR, tcp.ECE, tcp.ACK)
					}
				}
			}
			if !bytes.Equal(joined, tc.in.payload) {
				t.Fatal("segments do not add up to the payload")
			}
		})
	}
}

func TestSegmentRejects(t *testing.T) {
	good := build(spec{payload: pattern(3000), gso: 1000})
	good6 := build(spec{v6: true, payload: pattern(3000), gso: 1000})
	mod := func(b []byte, f func([]byte)) []byte { b = bytes.Clone(b); f(b); return b }
	const ip = VnetHdrLen + ethLen
	for _, tc := range []struct {
		name  string
		frame []byte
	}{
		{"no virtio header", good[:5]},
		{"no GSO", mod(good, func(b []byte) { b[1] = GSONone })},
		{"ufo", mod(good, func(b []byte) { b[1] = GSOUDP })},
		{"unknown type", mod(good, func(b []byte) { b[1] = 9 })},
		{"ecn on udp", mod(good, func(b []byte) { b[1] = GSOUDPL4 | GSOECN })},
		{"zero gso size", mod(good, func(b []byte) { b[4], b[5] = 0, 0 })},
		{"short ethernet", good[:VnetHdrLen+10]},
		{"arp", mod(good, func(b []byte) { b[VnetHdrLen+12], b[VnetHdrLen+13] = 0x08, 0x06 })},
		{"tcp6 type on ipv4", mod(good, func(b []byte) { b[1] = GSOTCPv6 })},
		{"tcp4 type on ipv6", mod(good6, func(b []byte) { b[1] = GSOTCPv4 })},
		{"bad ihl", mod(good, func(b []byte) { b[ip] = 0x44 })},
		{"total length beyond frame", good[:1000]},
		{"fragment", mod(good, func(b []byte) { b[ip+6] |= 0x20 })},
		{"udp protocol for tcp", mod(good, func(b []byte) { b[ip+9] = protoUDP })},
		{"bad data offset", mod(good, func(b []byte) { b[ip+20+12] = 0x10 })},
		{"ipv6 jumbo", mod(good6, func(b []byte) { b[ip+4], b[ip+5] = 0, 0 })},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var s Segmenter
			err := s.Reset(tc.frame)
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Reset = %v, want ErrMalformed", err)
			}
			if _, ok := s.Next(make([]byte, 200)); ok {
				t.Fatal("Next yielded a segment after a failed Reset")
			}
		})
	}
}

func TestFragment(t *testing.T) {
	// A UDP packet without DF, 3000 bytes of payload, checksum still
	// partial.
	in := build(spec{udp: true, id: 0x4242, payload: pattern(3000), partial: true})
	want := complete(t, in) // the checksum the fragments must carry, whole
	var f Fragmenter
	if err := f.Reset(in, VnetHdrLen+ethLen+1300); err != nil {
		t.Fatal(err)
	}
	if in[0]&FlagNeedsCsum != 0 {
		t.Fatal("NEEDS_CSUM still set after the checksum was completed")
	}
	hdr := make([]byte, f.HeaderLen())
	var joined []byte
	n := 0
	for {
		p, ok := f.Next(hdr)
		if !ok {
			break
		}
		if !bytes.Equal(hdr[:VnetHdrLen], make([]byte, VnetHdrLen)) {
			t.Fatalf("fragment %d virtio header % x", n, hdr[:VnetHdrLen])
		}
		ip := hdr[VnetHdrLen+ethLen:]
		if Checksum(ip[:20], 0) != 0 {
			t.Fatalf("fragment %d: bad IPv4 header checksum", n)
		}
		ff := binary.BigEndian.Uint16(ip[6:])
		if int(ff&0x1fff)*8 != len(joined) || (ff&0x2000 != 0) != (n < f.Count()-1) {
			t.Fatalf("fragment %d: flags/offset %#04x at %d", n, ff, len(joined))
		}
		if int(binary.BigEndian.Uint16(ip[2:])) != 20+len(p) || 20+len(p) > 1300 || (n < f.Count()-1 && len(p)%8 != 0) {
			t.Fatalf("fragment %d: total length %d, %d payload bytes", n, binary.BigEndian.Uint16(ip[2:]), len(p))
		}
		joined = append(joined, p...)
		n++
	}
	if n != 3 || !bytes.Equal(joined, want[ethLen+20:]) {
		t.Fatalf("%d fragments; reassembled payload equal: %v", n, bytes.Equal(joined, want[ethLen+20:]))
	}
	df := build(spec{udp: true, df: true, payload: pattern(3000)})
	if err := f.Reset(df, VnetHdrLen+ethLen+1300); !errors.Is(err, ErrMalformed) {
		t.Fatalf("Reset of a DF packet = %v", err)
	}
}

func TestUncopiedOptionsBecomeNOP(t *testing.T) {
	opts := []byte{7, 7, 4, 0, 0, 0, 0, 1, 0x82, 3, 9, 0, 0, 0}
	uncopiedToNOP(opts)
	want := []byte{1, 1, 1, 1, 1, 1, 1, 1, 0x82, 3, 9, 0, 0, 0}
	if !bytes.Equal(opts, want) {
		t.Fatalf("% x, want % x", opts, want)
	}
}

func TestSegmentShrink(t *testing.T) {
	f := build(spec{id: 1, seq: 100, flags: tcpPSH, payload: pattern(3000), gso: 1400})
	var s Segmenter
	if err := s.Reset(f); err != nil {
		t.Fatal(err)
	}
	maxLen := VnetHdrLen + 54 + 1000
	if !s.Shrink(maxLen) || s.SegmentLen() != maxLen || s.Count() != 3 {
		t.Fatalf("Shrink: segment length %d, %d segments", s.SegmentLen(), s.Count())
	}
	hdr := make([]byte, s.HeaderLen())
	var joined []byte
	for i := 0; ; i++ {
		p, ok := s.Next(hdr)
		if !ok {
			break
		}
		pkt := gopacketValid(t, complete(t, append(bytes.Clone(hdr), p...)))
		if tcp := pkt.TransportLayer().(*layers.TCP); tcp.Seq != 100+uint32(i*1000) || tcp.PSH != (i == 2) {
			t.Fatalf("segment %d: seq %d PSH %v", i, tcp.Seq, tcp.PSH)
		}
		joined = append(joined, p...)
	}
	if !bytes.Equal(joined, pattern(3000)) {
		t.Fatal("payload differs")
	}
	if err := s.Reset(build(spec{udp: true, payload: pattern(3000), gso: 1400})); err != nil {
		t.Fatal(err)
	}
	if s.Shrink(maxLen) {
		t.Fatal("Shrink changed the datagram size of UDP GSO")
	}
}
