package macs

import (
	"sync"
	"testing"
	"time"

	"weavemesh.dev/weave/peer"
)

func TestLearnLookupMoveExpire(t *testing.T) {
	var moves []string
	tab := New(10*time.Second, func(a Addr, from, to peer.Name) {
		moves = append(moves, a.String()+" "+from.String()+">"+to.String())
	})
	a := AddrFrom([]byte{0x02, 0, 0, 0, 0, 1})
	const p1, p2 peer.Name = 1, 2
	steps := []struct {
		op        string
		owner     peer.Name
		now       int64
		wantOwner peer.Name
		wantOK    bool
	}{
		{"lookup", 0, 100, 0, false},
		{"learn", p1, 100, p1, true},
		{"lookup", 0, 105, p1, true},
		{"learn", p2, 106, p2, true}, // moved at once
		{"lookup", 0, 116, p2, true},
		{"lookup", 0, 117, 0, false}, // expired
	}
	for i, s := range steps {
		if s.op == "learn" {
			tab.Learn(a, s.owner, s.now)
		}
		got, ok := tab.Lookup(a, s.now)
		if got != s.wantOwner || ok != s.wantOK {
			t.Fatalf("step %d: got %v %v, want %v %v", i, got, ok, s.wantOwner, s.wantOK)
		}
	}
	if len(moves) != 1 || moves[0] != "02:00:00:00:00:01 00:00:00:00:00:01>00:00:00:00:00:02" {
		t.Fatalf("moves = %q", moves)
	}
	if n := tab.Expire(117); n != 1 || tab.Len() != 0 {
		t.Fatalf("Expire = %d, len %d", n, tab.Len())
	}
}

func TestMulticastNotLearned(t *testing.T) {
	tab := New(0, nil)
	tab.Learn(AddrFrom([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}), 1, 1)
	tab.Learn(AddrFrom([]byte{0x01, 0, 0x5e, 0, 0, 1}), 1, 1)
	if tab.Len() != 0 {
		t.Fatal("multicast source learned")
	}
}

func TestForgetPeer(t *testing.T) {
	tab := New(0, nil)
	for i := 0; i < 10; i++ {
		tab.Learn(Addr(0x020000000000+i), peer.Name(i%2+1), 1)
	}
	if n := tab.ForgetPeer(1); n != 5 || tab.Len() != 5 {
		t.Fatalf("ForgetPeer = %d, len %d", n, tab.Len())
	}
}

func TestConcurrent(t *testing.T) {
	tab := New(0, nil)
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 1000; i++ {
				a := Addr(0x020000000000 + i%50)
				tab.Learn(a, peer.Name(g+1), int64(i))
				tab.Lookup(a, int64(i))
			}
		}(g)
	}
	wg.Wait()
	if tab.Len() != 50 {
		t.Fatalf("len %d", tab.Len())
	}
}

func BenchmarkLearnLookup(b *testing.B) {
	tab := New(0, nil)
	a := AddrFrom([]byte{0x02, 0, 0, 0, 0, 1})
	tab.Learn(a, 1, 1)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		tab.Learn(a, 1, 1)
		tab.Lookup(a, 1)
	}
}
