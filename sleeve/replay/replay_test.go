package replay

import "testing"

func TestFilter(t *testing.T) {
	steps := []struct {
		counter uint64
		want    bool
	}{
		{0, true},
		{0, false}, // replay
		{1, true},
		{5, true},
		{3, true}, // reordered within the window
		{3, false},
		{5, false},
		{WindowSize + 5, true},
		{5, false},              // now beyond the window
		{6, true},               // WindowSize-1 behind: inside
		{WindowSize + 4, true},  // just inside
		{8, true},               // last-c = WindowSize-3: inside
		{1 << 40, true},         // big jump clears the ring
		{WindowSize + 4, false}, // far behind now
		{1<<40 - 1, true},       // just behind
		{1<<40 - WindowSize + 1, true},
		{1<<40 - WindowSize, false},
		{^uint64(0), false}, // overflow is never valid
	}
	var f Filter
	for i, s := range steps {
		if got := f.Accept(s.counter); got != s.want {
			t.Fatalf("step %d: Accept(%d) = %v, want %v", i, s.counter, got, s.want)
		}
	}
}

func TestEveryCounterOnceInOrderAndShuffled(t *testing.T) {
	var f Filter
	for c := uint64(0); c < 100000; c++ {
		if !f.Accept(c) {
			t.Fatalf("fresh counter %d refused", c)
		}
	}
	for c := uint64(100000 - WindowSize + 1); c < 100000; c++ {
		if f.Accept(c) {
			t.Fatalf("replayed counter %d accepted", c)
		}
	}
	// Reverse order within the window: all accepted once.
	var g Filter
	g.Accept(3000)
	for c := uint64(2999); c > 0; c-- {
		if !g.Accept(c) {
			t.Fatalf("reordered counter %d refused", c)
		}
	}
	if WindowSize < 2048 {
		t.Fatalf("window %d smaller than 2048", WindowSize)
	}
}

func BenchmarkAccept(b *testing.B) {
	var f Filter
	for i := 0; i < b.N; i++ {
		f.Accept(uint64(i))
	}
}
