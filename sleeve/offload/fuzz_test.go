package offload

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// normal clears what a Segmenter recomputes and a received segment may
// carry differently without being a different segment: the virtio
// header's hdr_len and gso_size hints, the IPv4 header checksum and the
// partial L4 checksum.
func normal(f []byte) []byte {
	f = bytes.Clone(f)
	var s seg
	if len(f) >= VnetHdrLen {
		clear(f[2:6])
	}
	if s.tcpFlow(f) && len(f) >= s.l4+18 {
		if !s.v6 {
			f[tIP+10], f[tIP+11] = 0, 0
		}
		f[s.l4+16], f[s.l4+17] = 0, 0
	}
	return f
}

// resegment cuts every super-frame in frames back into segments, except
// frames that are among received (those were written as they came).
func resegment(t *testing.T, frames, received [][]byte) [][]byte {
	var out [][]byte
	var s Segmenter
	for _, f := range frames {
		if GSOType(f) == GSONone || containsFrame(received, f) {
			out = append(out, f)
			continue
		}
		if err := s.Reset(f); err != nil {
			t.Fatalf("a coalesced frame cannot be cut again: %v\n%x", err, f)
		}
		hdr := make([]byte, s.HeaderLen())
		for {
			p, ok := s.Next(hdr)
			if !ok {
				break
			}
			out = append(out, append(bytes.Clone(hdr), p...))
		}
	}
	return out
}

func addSegmentSeeds(f *testing.F) {
	for _, s := range []spec{
		{flags: tcpPSH | tcpFIN, opts: tsOpts, payload: pattern(3000), gso: 1000},
		{v6: true, flags: tcpPSH, payload: pattern(3000), gso: 1000},
		{flags: tcpURG | tcpCWR, urg: 1500, payload: pattern(3000), gso: 1000, ecn: true},
		{udp: true, payload: pattern(3000), gso: 1000},
		{payload: pattern(100), gso: 8},
	} {
		f.Add(build(s))
	}
}

// FuzzSegment: any bytes as a super-frame. Segmenting never panics or
// writes past HeaderLen; every segment but the last has the same size;
// and coalescing the segments then cutting the result again gives the
// same segments back (the round trip).
func FuzzSegment(f *testing.F) {
	addSegmentSeeds(f)
	f.Add([]byte{0, 1, 0, 0, 1, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		var s Segmenter
		if s.Reset(b) != nil {
			if _, ok := s.Next(make([]byte, 128)); ok {
				t.Fatal("segment after a failed Reset")
			}
			return
		}
		hl := s.HeaderLen()
		hdr := make([]byte, hl+16)
		for i := range hdr[hl:] {
			hdr[hl+i] = 0xa5
		}
		var segs [][]byte
		for {
			p, ok := s.Next(hdr)
			if !ok {
				break
			}
			if !bytes.Equal(hdr[hl:], bytes.Repeat([]byte{0xa5}, 16)) {
				t.Fatal("Next wrote past HeaderLen")
			}
			if len(segs) < s.Count()-1 && len(p) != s.PayloadLen() {
				t.Fatalf("segment %d of %d carries %d bytes, want %d", len(segs), s.Count(), len(p), s.PayloadLen())
			}
			segs = append(segs, append(bytes.Clone(hdr[:hl]), p...))
			if len(segs) > s.Count() {
				t.Fatal("more segments than Count")
			}
		}
		back := resegment(t, coalesce(segs), nil)
		if len(back) != len(segs) {
			t.Fatalf("round trip gave %d segments, want %d", len(back), len(segs))
		}
		for i := range segs {
			if !bytes.Equal(back[i], segs[i]) {
				t.Fatalf("round trip changed segment %d\n got %x\nwant %x", i, back[i], segs[i])
			}
		}
	})
}

// FuzzCoalesce: any bytes as a batch of frames (each led by a 2-byte
// length). Coalescing never panics, every received frame is accounted for,
// and cutting what it writes again gives back the frames it received.
func FuzzCoalesce(f *testing.F) {
	f.Add([]byte{0, 3, 1, 2, 3})
	for _, s := range []spec{
		{opts: tsOpts, payload: pattern(40), gso: 10},
		{v6: true, payload: pattern(40), gso: 10},
	} {
		var batch []byte
		for _, sg := range segments(f, build(s)) {
			batch = binary.BigEndian.AppendUint16(batch, uint16(len(sg)))
			batch = append(batch, sg...)
		}
		f.Add(batch)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var in [][]byte
		for len(b) >= 2 {
			n := min(int(binary.BigEndian.Uint16(b)), len(b)-2)
			in = append(in, bytes.Clone(b[2:2+n]))
			b = b[2+n:]
		}
		out := coalesce(in)
		if len(out) > len(in) {
			t.Fatalf("%d frames out of %d", len(out), len(in))
		}
		back := resegment(t, out, in)
		if len(back) != len(in) {
			t.Fatalf("%d frames back from %d", len(back), len(in))
		}
		var want, got [][]byte
		for i := range in {
			want = append(want, normal(in[i]))
			got = append(got, normal(back[i]))
		}
		for _, g := range got {
			if !containsFrame(want, g) {
				t.Fatalf("frame written that was not received:\n%x", g)
			}
		}
	})
}
