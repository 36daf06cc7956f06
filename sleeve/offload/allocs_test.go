//go:build !race

// The race detector allocates, so these build only without it; CI runs
// them in a separate step (scripts/test.sh).

package offload

import "testing"

// TestAllocs: cutting a 64 KiB super-frame and coalescing its segments
// again, one batch each, allocate nothing once warmed up.
func TestAllocs(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		frame := build(spec{v6: v6, opts: tsOpts, payload: pattern(65000), gso: 1324})
		var s Segmenter
		if err := s.Reset(frame); err != nil {
			t.Fatal(err)
		}
		hdrs := make([]byte, s.Count()*s.HeaderLen())
		segs := make([][]byte, s.Count())
		for i := range segs {
			segs[i] = make([]byte, 0, 1500)
		}
		c := NewCoalescer()
		batch := func() {
			if err := s.Reset(frame); err != nil {
				t.Fatal(err)
			}
			for i := 0; i < s.Count(); i++ {
				h := hdrs[i*s.HeaderLen() : (i+1)*s.HeaderLen()]
				p, _ := s.Next(h)
				segs[i] = append(append(segs[i][:0], h...), p...)
			}
			for _, sg := range segs {
				c.Add(sg)
			}
			if n := len(c.Frames()); n != 1 {
				t.Fatalf("%d frames coalesced, want 1", n)
			}
			c.Reset()
		}
		batch()
		if a := testing.AllocsPerRun(50, batch); a != 0 {
			t.Fatalf("v6=%v: segment and coalesce allocate %.1f times per batch", v6, a)
		}
	}
}
