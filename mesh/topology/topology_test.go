package topology

import (
	"bytes"
	"errors"
	"math/rand"
	"slices"
	"testing"

	"weavemesh.dev/weave/mesh/mix"
	"weavemesh.dev/weave/peer"
)

func TestSetLocalAndMerge(t *testing.T) {
	a := New(1, nil)
	var changes int
	b := New(2, func() { changes++ })

	if d := a.SetLocal(nil); d != nil {
		t.Fatal("unchanged SetLocal produced a delta")
	}
	d := a.SetLocal([]peer.Name{3, 2, 3})
	if d == nil {
		t.Fatal("no delta")
	}
	if news, err := b.MergeDelta(d); err != nil || !news {
		t.Fatal(news, err)
	}
	if got := b.Down()[1]; !slices.Equal(got, []peer.Name{2, 3}) {
		t.Fatalf("b sees %v", got)
	}
	// Idempotent, and old news is ignored.
	if news, err := b.MergeDelta(d); err != nil || news || changes != 1 {
		t.Fatalf("changes = %d, err %v", changes, err)
	}
	a.SetLocal(nil)
	if err := b.MergeFull(a.FullState()); err != nil {
		t.Fatal(err)
	}
	if len(b.Down()[1]) != 0 {
		t.Fatalf("recovery not merged: %v", b.Down())
	}
	if _, err := b.MergeDelta(d); err != nil || len(b.Down()[1]) != 0 {
		t.Fatal("stale delta overwrote newer entry")
	}
}

func TestOwnEntryFromPreviousLife(t *testing.T) {
	old := New(1, nil)
	old.SetLocal([]peer.Name{9})
	fresh := &Topology{self: 1, entries: map[peer.Name]*Entry{1: {Peer: 1, Version: 5}}}
	if err := fresh.MergeFull(old.FullState()); err != nil {
		t.Fatal(err)
	}
	e, _ := fresh.Entry(1)
	oe, _ := old.Entry(1)
	if e.Version <= oe.Version || len(e.Down) != 0 {
		t.Fatalf("own entry %+v, old %+v", e, oe)
	}
}

// Merges commute, associate and are idempotent: any order of any subset of
// replicas' full states converges to the same encoding.
func TestConvergence(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	var reps []*Topology
	for i := 1; i <= 6; i++ {
		r := New(peer.Name(i), nil)
		var down []peer.Name
		for j := 1; j <= 6; j++ {
			if j != i && rng.Intn(3) == 0 {
				down = append(down, peer.Name(j))
			}
		}
		r.SetLocal(down)
		reps = append(reps, r)
	}
	for round := 0; round < 40; round++ {
		a, b := reps[rng.Intn(len(reps))], reps[rng.Intn(len(reps))]
		if err := a.MergeFull(b.FullState()); err != nil {
			t.Fatal(err)
		}
	}
	for _, a := range reps {
		for _, b := range reps {
			if err := a.MergeFull(b.FullState()); err != nil {
				t.Fatal(err)
			}
		}
	}
	want := canonical(reps[0])
	for i, r := range reps {
		if got := canonical(r); !bytes.Equal(got, want) {
			t.Fatalf("replica %d differs", i)
		}
	}
}

func canonical(t *Topology) []byte {
	var ps []peer.Name
	for p := range t.entries {
		ps = append(ps, p)
	}
	slices.Sort(ps)
	var b []byte
	for _, p := range ps {
		b = appendEntry(b, t.entries[p])
	}
	return b
}

func TestDecodeErrors(t *testing.T) {
	good := New(1, nil)
	good.SetLocal([]peer.Name{2, 3})
	full := good.FullState()
	delta := good.LocalDelta()
	unsorted := bytes.Clone(delta)
	copy(unsorted[1+entryFixedLen:], []byte{0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 2})
	tests := []struct {
		name  string
		full  bool
		input []byte
	}{
		{"empty delta", false, nil},
		{"bad format", false, append([]byte{9}, delta[1:]...)},
		{"truncated delta", false, delta[:len(delta)-1]},
		{"trailing delta", false, append(bytes.Clone(delta), 0)},
		{"unsorted", false, unsorted},
		{"empty full", true, nil},
		{"huge count", true, []byte{1, 0xff, 0xff, 0xff, 0xff}},
		{"truncated full", true, full[:len(full)-1]},
		{"trailing full", true, append(bytes.Clone(full), 1)},
	}
	for _, tt := range tests {
		r := New(7, nil)
		var err error
		if tt.full {
			err = r.MergeFull(tt.input)
		} else {
			_, err = r.MergeDelta(tt.input)
		}
		if !errors.Is(err, ErrFormat) {
			t.Errorf("%s: err = %v", tt.name, err)
		}
		if len(r.entries) != 1 {
			t.Errorf("%s: partial merge", tt.name)
		}
	}
}

func FuzzMerge(f *testing.F) {
	g := New(1, nil)
	g.SetLocal([]peer.Name{2, 3})
	f.Add(g.FullState())
	f.Add(g.LocalDelta())
	f.Fuzz(func(t *testing.T, b []byte) {
		r := New(7, nil)
		in := bytes.Clone(b)
		_ = r.MergeFull(b)
		_, _ = r.MergeDelta(b)
		if !bytes.Equal(in, b) {
			t.Fatal("input modified")
		}
		// Whatever was accepted must re-encode and re-decode.
		r2 := New(8, nil)
		if err := r2.MergeFull(r.FullState()); err != nil {
			t.Fatalf("re-decode: %v", err)
		}
	})
}

func TestDigestIgnoresOrderAndSeesVersions(t *testing.T) {
	a, b := New(1, nil), New(2, nil)
	a.SetLocal([]peer.Name{3})
	b.SetLocal(nil)
	x := New(4, nil)
	y := New(4, nil)
	y.setLocked(&Entry{Peer: 4, Version: x.entries[4].Version})
	if err := x.MergeFull(a.FullState()); err != nil {
		t.Fatal(err)
	}
	if err := x.MergeFull(b.FullState()); err != nil {
		t.Fatal(err)
	}
	if err := y.MergeFull(b.FullState()); err != nil {
		t.Fatal(err)
	}
	if x.Digest() == y.Digest() {
		t.Fatal("digests equal while y lacks a's entry")
	}
	if err := y.MergeFull(a.FullState()); err != nil {
		t.Fatal(err)
	}
	if x.Digest() != y.Digest() {
		t.Fatal("equal states, merged in another order, have different digests")
	}
	a.SetLocal(nil)
	if _, err := y.MergeDelta(a.LocalDelta()); err != nil {
		t.Fatal(err)
	}
	if x.Digest() == y.Digest() {
		t.Fatal("a newer version of an entry left the digest unchanged")
	}
}

// The digest and the down map are kept as entries change; they must equal
// what a walk over the entries gives after any sequence of changes.
func TestKeptDigestAndDownMatchTheEntries(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	x := New(1, nil)
	others := make([]*Topology, 6)
	for i := range others {
		others[i] = New(peer.Name(i+2), nil)
	}
	walk := func() (uint64, int) {
		var d uint64
		down := 0
		for _, e := range x.entries {
			d += mix.Mix64(uint64(e.Peer) ^ mix.Mix64(e.Version))
			if len(e.Down) > 0 {
				down++
			}
		}
		return d, down
	}
	for step := 0; step < 500; step++ {
		o := others[rng.Intn(len(others))]
		gen := x.Gen()
		changed := false
		switch rng.Intn(4) {
		case 0:
			o.SetLocal([]peer.Name{peer.Name(rng.Intn(9) + 1)})
			c, err := x.MergeDelta(o.LocalDelta())
			if err != nil {
				t.Fatal(err)
			}
			changed = c
		case 1:
			before := x.Digest()
			if err := x.MergeFull(o.FullState()); err != nil {
				t.Fatal(err)
			}
			changed = x.Digest() != before
		case 2:
			changed = x.Prune(func(p peer.Name) bool { return rng.Intn(3) > 0 }) > 0
		case 3:
			changed = x.SetLocal([]peer.Name{peer.Name(rng.Intn(9) + 2)}) != nil
		}
		if changed && x.Gen() == gen {
			t.Fatalf("step %d: the state changed and Gen stayed %d", step, gen)
		}
		d, down := walk()
		if x.Digest() != d {
			t.Fatalf("step %d: kept digest %x, entries give %x", step, x.Digest(), d)
		}
		if got := x.Down(); len(got) != down {
			t.Fatalf("step %d: Down lists %d peers, %d entries have links down", step, len(got), down)
		}
	}
}
