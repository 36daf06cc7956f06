package ipam

import (
	"net/netip"
	"strconv"
	"sync/atomic"
	"testing"

	"weavemesh.dev/weave/peer"
)

// benchAllocator is a single peer owning a /12 on a bbolt store in a temp
// dir: allocations are local, each durable (fsync) before it returns.
func benchAllocator(b *testing.B) *Allocator {
	st, err := OpenBolt(b.TempDir(), 1, netip.MustParsePrefix("10.32.0.0/12"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	a, err := New(Options{Self: 1, Range: netip.MustParsePrefix("10.32.0.0/12"), Init: Init{Mode: ModeConsensus, Quorum: 1},
		Store: st, Transport: fakeTransport{&fakeNet{}, 1}})
	if err != nil {
		b.Fatal(err)
	}
	a.Tick()
	return a
}

// BenchmarkAllocate measures one allocation from local space, including
// its durable write, one caller at a time.
func BenchmarkAllocate(b *testing.B) {
	a := benchAllocator(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := a.TryAllocate("c"+strconv.Itoa(i), netip.Prefix{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAllocateParallel measures allocations from many callers at
// once (containers started together): their writes share fsyncs.
func BenchmarkAllocateParallel(b *testing.B) {
	a := benchAllocator(b)
	var n atomic.Int64
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := a.TryAllocate("c"+strconv.FormatInt(n.Add(1), 10), netip.Prefix{}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkFullState measures the push-pull state of a ring split among
// 500 peers, which must stay compact.
func BenchmarkFullState(b *testing.B) {
	ps := make([]uint64, 500)
	for i := range ps {
		ps[i] = uint64(i + 1)
	}
	r, err := NewRing(netip.MustParsePrefix("10.32.0.0/12"), names(ps...))
	if err != nil {
		b.Fatal(err)
	}
	entries := map[peer.Name]entry{}
	for _, p := range ps {
		entries[peer.Name(p)] = entry{Seq: 1 << 60, RingID: r.ID, Allocated: 100}
	}
	var size int
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		size = len(appendState(nil, 1, r, entries))
	}
	b.ReportMetric(float64(size), "bytes")
}
