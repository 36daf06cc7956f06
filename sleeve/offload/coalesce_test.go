package offload

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// coalesce runs frames through a Coalescer and returns copies of what it
// would write.
func coalesce(frames [][]byte) [][]byte {
	c := NewCoalescer()
	var out [][]byte
	flush := func() {
		for _, f := range c.Frames() {
			out = append(out, bytes.Clone(f))
		}
		c.Reset()
	}
	for _, f := range frames {
		if c.Full() {
			flush()
		}
		c.Add(f)
	}
	flush()
	return out
}

// TestCoalesceGolden: segments of a super-frame come back as exactly that
// super-frame, as the TAP would have handed it over: one golden vector
// written out, and the round trip for larger frames.
func TestCoalesceGolden(t *testing.T) {
	in := spec{flags: tcpPSH, tos: 0x02, id: 0x1234, df: true, seq: 0xfffffffe, ack: 77, opts: tsOpts, payload: pattern(10), gso: 4}
	out := coalesce(segments(t, build(in)))
	want := unhex(t, `
		01 01 42 00 04 00 22 00 10 00
		02 00 00 00 00 02 02 00 00 00 00 01 08 00
		45 02 00 3e 12 34 40 00 40 06 14 42 0a 20 00 01 0a 20 00 02
		0f a0 13 88 ff ff ff fe 00 00 00 4d 80 18 03 e8 14 73 00 00
		01 01 08 0a 00 00 00 01 00 00 00 02
		00 01 02 03 04 05 06 07 08 09`)
	if len(out) != 1 || !bytes.Equal(out[0], want) {
		t.Fatalf("coalesced to %d frames\n got %x\nwant %x", len(out), out, want)
	}
	gopacketValid(t, complete(t, out[0]))

	in6 := spec{v6: true, flags: tcpPSH, tos: 0xb8, seq: 1000, ack: 5, payload: pattern(9), gso: 4}
	out = coalesce(segments(t, build(in6)))
	want = unhex(t, `
		01 04 4a 00 04 00 36 00 10 00
		02 00 00 00 00 02 02 00 00 00 00 01 86 dd
		6b 80 00 07 00 1d 06 40
		fd 00 00 00 00 00 00 00 00 00 00 00 00 00 00 01
		fd 00 00 00 00 00 00 00 00 00 00 00 00 00 00 02
		0f a0 13 88 00 00 03 e8 00 00 00 05 50 18 03 e8 fa 27 00 00
		00 01 02 03 04 05 06 07 08`)
	if len(out) != 1 || !bytes.Equal(out[0], want) {
		t.Fatalf("IPv6: coalesced to %d frames\n got %x\nwant %x", len(out), out, want)
	}
	gopacketValid(t, complete(t, out[0]))

	for _, s := range []spec{
		in,
		{v6: true, flags: tcpPSH, tos: 0xb8, seq: 1000, ack: 5, payload: pattern(9), gso: 4},
		{id: 0xfff0, df: true, seq: 0xffff0000, opts: tsOpts, payload: pattern(65535 - 20 - 32), gso: 1324},
		{v6: true, ack: 1, payload: pattern(65535 - 20), gso: 1428},
		{flags: tcpECE | tcpPSH, payload: pattern(3000), gso: 1000},
	} {
		f := build(s)
		out := coalesce(segments(t, f))
		if len(out) != 1 || !bytes.Equal(out[0], f) {
			t.Errorf("%+v: round trip gave %d frames, or different bytes", s.payload[:0], len(out))
		}
	}
}

// seq3 returns the three segments of one small super-frame, for the rule
// tests to alter.
func seq3(t *testing.T, mutate func(i int, f []byte)) [][]byte {
	segs := segments(t, build(spec{id: 100, seq: 1, ack: 1, opts: tsOpts, payload: pattern(12), gso: 4}))
	if mutate != nil {
		for i, f := range segs {
			mutate(i, f)
		}
	}
	return segs
}

const (
	tIP  = VnetHdrLen + ethLen
	tTCP = tIP + ipv4MinLen
)

func TestCoalesceRules(t *testing.T) {
	arp := append(make([]byte, VnetHdrLen), bytes.Repeat([]byte{0xff}, 6)...)
	arp = append(append(arp, srcMAC...), 0x08, 0x06, 0, 1)
	udp := segments(t, build(spec{udp: true, payload: pattern(12), gso: 4}))
	full := build(spec{seq: 1, payload: pattern(4)}) // full checksum, no NEEDS_CSUM
	pureACK := build(spec{seq: 5, partial: true})
	other := segments(t, build(spec{id: 100, seq: 1, ack: 1, opts: tsOpts, payload: pattern(12), gso: 4}))
	for _, f := range other {
		binary.BigEndian.PutUint16(f[tTCP:], 4001) // another source port
	}
	s := seq3(t, nil)
	for _, tc := range []struct {
		name   string
		frames [][]byte
		want   []int // segments in each frame written
	}{
		{"in order", s, []int{3}},
		{"out of order", [][]byte{s[0], s[2], s[1]}, []int{1, 1, 1}},
		{"repeated", [][]byte{s[0], s[1], s[1], s[2]}, []int{2, 2}},
		{"two flows interleaved", [][]byte{s[0], other[0], s[1], other[1], s[2], other[2]}, []int{3, 3}},
		{"PSH in the middle", seq3(t, func(i int, f []byte) {
			if i == 1 {
				f[tTCP+13] |= tcpPSH
			}
		}), []int{2, 1}},
		{"FIN ends the flow", seq3(t, func(i int, f []byte) {
			if i == 1 {
				f[tTCP+13] |= tcpFIN
			}
		}), []int{1, 1, 1}},
		{"pure ACK of the flow in between", [][]byte{s[0], pureACK, s[1], s[2]}, []int{1, 1, 2}},
		{"URG", seq3(t, func(i int, f []byte) { f[tTCP+13] |= tcpURG }), []int{1, 1, 1}},
		{"CWR", seq3(t, func(i int, f []byte) { f[tTCP+13] |= tcpCWR }), []int{1, 1, 1}},
		{"ECE differs", seq3(t, func(i int, f []byte) {
			if i == 2 {
				f[tTCP+13] |= tcpECE
			}
		}), []int{2, 1}},
		{"ack differs", seq3(t, func(i int, f []byte) { f[tTCP+11] += byte(i) }), []int{1, 1, 1}},
		{"window differs", seq3(t, func(i int, f []byte) { f[tTCP+15] += byte(i) }), []int{1, 1, 1}},
		{"options differ", seq3(t, func(i int, f []byte) { f[tTCP+31] += byte(i) }), []int{1, 1, 1}},
		{"TTL differs", seq3(t, func(i int, f []byte) { f[tIP+8] += byte(i) }), []int{1, 1, 1}},
		{"TOS (ECN CE) differs", seq3(t, func(i int, f []byte) {
			if i >= 1 {
				f[tIP+1] |= 3
			}
		}), []int{1, 2}},
		{"IPv4 ID does not follow", seq3(t, func(i int, f []byte) { binary.BigEndian.PutUint16(f[tIP+4:], 7) }), []int{1, 1, 1}},
		{"short segment then more", [][]byte{s[0], trim(t, s[1], 2), s[2]}, []int{2, 1}},
		{"longer segment after the first", [][]byte{trim(t, s[0], 2), s[1]}, []int{1, 1}},
		{"MAC differs", seq3(t, func(i int, f []byte) { f[VnetHdrLen] += byte(i) }), []int{1, 1, 1}},
		{"no partial checksum", [][]byte{full, full}, []int{1, 1}},
		{"UDP and ARP pass through", append(append([][]byte{}, udp...), arp), []int{1, 1, 1, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var in [][]byte
			for _, f := range tc.frames {
				in = append(in, bytes.Clone(f))
			}
			out := coalesce(in)
			var got []int
			for _, f := range out {
				got = append(got, segsIn(f))
			}
			if !equalInts(got, tc.want) {
				t.Fatalf("segments per frame written %v, want %v", got, tc.want)
			}
			// A frame written as it came is byte for byte the input; a
			// merged one is valid once its checksum is finished.
			for _, f := range out {
				if segsIn(f) > 1 {
					gopacketValid(t, complete(t, f))
				} else if !containsFrame(tc.frames, f) {
					t.Fatalf("frame changed on the way through: %x", f)
				}
			}
		})
	}
}

// trim cuts n payload bytes off the end of segment f, fixing its lengths.
func trim(t *testing.T, f []byte, n int) []byte {
	f = bytes.Clone(f[:len(f)-n])
	ip := f[tIP:]
	binary.BigEndian.PutUint16(ip[2:], uint16(len(ip)))
	ip[10], ip[11] = 0, 0
	binary.BigEndian.PutUint16(ip[10:], Checksum(ip[:20], 0))
	binary.BigEndian.PutUint16(f[tTCP+16:], pseudo(sum(0, ip[12:20]), protoTCP, len(ip)-20))
	return f
}

// segsIn is the number of segments a written frame stands for.
func segsIn(f []byte) int {
	var v vnet
	v.decode(f)
	if v.gsoType == GSONone {
		return 1
	}
	return (len(f) - VnetHdrLen - int(v.hdrLen) + int(v.gsoSize) - 1) / int(v.gsoSize)
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func containsFrame(fs [][]byte, f []byte) bool {
	for _, g := range fs {
		if bytes.Equal(f, g) {
			return true
		}
	}
	return false
}

// TestCoalesceFull: a Coalescer holds MaxQueued frames; merge buffers run
// out gracefully (frames are then written unmerged) and come back on Reset.
func TestCoalesceFull(t *testing.T) {
	c := NewCoalescer()
	var flows [][][]byte
	for i := 0; i < maxBufs+4; i++ {
		segs := segments(t, build(spec{id: 100, seq: 1, payload: pattern(8), gso: 4}))
		for _, f := range segs {
			binary.BigEndian.PutUint16(f[tTCP:], uint16(1000+i))
		}
		flows = append(flows, segs)
	}
	for _, segs := range flows {
		for _, f := range segs {
			c.Add(f)
		}
	}
	frames := c.Frames()
	if len(frames) != maxBufs+2*4 {
		t.Fatalf("%d frames written, want %d (%d merged, 4 flows without a buffer)", len(frames), maxBufs+8, maxBufs)
	}
	c.Reset()
	if len(c.free) != maxBufs {
		t.Fatalf("%d buffers free after Reset, want %d", len(c.free), maxBufs)
	}
	for !c.Full() {
		c.Add(flows[0][0])
	}
	c.Add(flows[0][1])
	if c.Len() != MaxQueued {
		t.Fatalf("Len %d after adding to a full Coalescer", c.Len())
	}
}
