package ipam

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	"weavemesh.dev/weave/peer"
)

var testRange = netip.MustParsePrefix("10.32.0.0/24")

func names(ns ...uint64) []peer.Name {
	out := make([]peer.Name, len(ns))
	for i, n := range ns {
		out[i] = peer.Name(n)
	}
	return out
}

func TestNewRing(t *testing.T) {
	for _, tc := range []struct {
		name  string
		rng   string
		peers []peer.Name
		want  []Span
		err   bool
	}{
		{"one", "10.32.0.0/24", names(5), []Span{{0, 256, 5, 1, 0}}, false},
		{"three sorted and deduplicated", "10.32.0.0/24", names(3, 1, 2, 1), []Span{{0, 86, 1, 1, 0}, {86, 171, 2, 1, 0}, {171, 256, 3, 1, 0}}, false},
		{"none", "10.32.0.0/24", nil, nil, true},
		{"ipv6", "fd00::/64", names(1), nil, true},
		{"too small", "10.32.0.0/30", names(1, 2, 3, 4, 5), nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := NewRing(netip.MustParsePrefix(tc.rng), tc.peers)
			if tc.err {
				if err == nil {
					t.Fatal("no error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(r.Spans, tc.want) {
				t.Errorf("spans %v, want %v", r.Spans, tc.want)
			}
			if err := r.Check(); err != nil {
				t.Error(err)
			}
			if r.ID != RingID(r.Range, tc.peers) {
				t.Error("ring id differs from RingID")
			}
		})
	}
}

// randomRing builds a ring of random spans, owners and versions.
func randomRing(rnd *rand.Rand) *Ring {
	r, _ := NewRing(testRange, names(1))
	var spans []Span
	for pos := uint32(0); pos < 256; {
		n := 1 + uint32(rnd.IntN(40))
		if pos+n > 256 {
			n = 256 - pos
		}
		spans = append(spans, Span{pos, pos + n, peer.Name(1 + rnd.IntN(4)), 1 + uint64(rnd.IntN(5)), int64(rnd.IntN(3))})
		pos += n
	}
	r.Spans = nil
	for _, s := range spans {
		r.Spans = appendCoalesced(r.Spans, s)
	}
	for range rnd.IntN(3) {
		r.Removed[peer.Name(1+rnd.IntN(4))] = 1 + uint64(rnd.IntN(3))
		r.Revived[peer.Name(1+rnd.IntN(4))] = 1 + uint64(rnd.IntN(3))
	}
	return r
}

func merged(a, b *Ring) *Ring {
	c := a.Clone()
	if _, err := c.Merge(b); err != nil {
		panic(err)
	}
	return c
}

func ringsEqual(a, b *Ring) bool {
	return bytes.Equal(AppendRing(nil, a), AppendRing(nil, b))
}

// TestMergeLaws: merge is commutative, associative and idempotent, and
// keeps every address's winner.
func TestMergeLaws(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 2000; i++ {
		a, b, c := randomRing(rnd), randomRing(rnd), randomRing(rnd)
		if !ringsEqual(merged(a, b), merged(b, a)) {
			t.Fatalf("not commutative:\n%v\n%v", a.Spans, b.Spans)
		}
		if !ringsEqual(merged(merged(a, b), c), merged(a, merged(b, c))) {
			t.Fatal("not associative")
		}
		if !ringsEqual(merged(a, a), a) {
			t.Fatal("not idempotent")
		}
		m := merged(a, b)
		if err := m.Check(); err != nil {
			t.Fatal(err)
		}
		for off := uint32(0); off < 256; off++ {
			sa, _ := a.spanAt(off)
			sb, _ := b.spanAt(off)
			sm, _ := m.spanAt(off)
			want := sa
			if sb.beats(sa) {
				want = sb
			}
			if sm.Owner != want.Owner || sm.Version != want.Version {
				t.Fatalf("offset %d: merged %v, want %v", off, sm, want)
			}
		}
		if changed, _ := m.Clone().Merge(a); changed {
			t.Fatal("merging a merged-in ring reports a change")
		}
	}
}

func TestMergePartial(t *testing.T) {
	r, _ := NewRing(testRange, names(1, 2))
	// The second span ties on version and loses to the lower name.
	delta := &Ring{ID: r.ID, Range: r.Range, Spans: []Span{{10, 20, 2, 2, 0}, {200, 210, 3, 1, 0}}}
	changed, err := r.Merge(delta)
	if err != nil || !changed {
		t.Fatalf("merge: %v %v", changed, err)
	}
	want := []Span{{0, 10, 1, 1, 0}, {10, 20, 2, 2, 0}, {20, 128, 1, 1, 0}, {128, 256, 2, 1, 0}}
	if !slices.Equal(r.Spans, want) {
		t.Errorf("spans %v, want %v", r.Spans, want)
	}
	other, _ := NewRing(testRange, names(3))
	if _, err := r.Merge(other); !errors.Is(err, ErrForeignRing) {
		t.Errorf("merging a foreign ring: %v", err)
	}
}

func TestRingRoundTrip(t *testing.T) {
	rnd := rand.New(rand.NewPCG(3, 4))
	for range 200 {
		r := randomRing(rnd)
		b := AppendRing(nil, r)
		got, rest, err := DecodeRing(b, true)
		if err != nil || len(rest) != 0 {
			t.Fatalf("decode: %v, %d left", err, len(rest))
		}
		if !ringsEqual(got, r) {
			t.Fatal("round trip changed the ring")
		}
	}
}

func TestDecodeRingRejects(t *testing.T) {
	r, _ := NewRing(testRange, names(1, 2))
	good := AppendRing(nil, r)
	gap := &Ring{ID: r.ID, Range: r.Range, Spans: []Span{{0, 10, 1, 1, 0}, {20, 256, 2, 1, 0}}}
	overlap := &Ring{ID: r.ID, Range: r.Range, Spans: []Span{{0, 100, 1, 1, 0}, {50, 256, 2, 1, 0}}}
	for _, tc := range []struct {
		name string
		b    []byte
		full bool
	}{
		{"empty", nil, true},
		{"truncated", good[:len(good)-3], true},
		{"bad magic", append([]byte{0}, good[1:]...), true},
		{"newer format", append([]byte{ringMagic, 9}, good[2:]...), true},
		{"gap in full ring", AppendRing(nil, gap), true},
		{"overlap", AppendRing(nil, overlap), false},
		{"huge count", append(slices.Clone(good[:15]), 0xff, 0xff, 0xff, 0x7f), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := DecodeRing(tc.b, tc.full); err == nil {
				t.Error("accepted")
			}
		})
	}
	if _, _, err := DecodeRing(AppendRing(nil, gap), false); err != nil {
		t.Errorf("a delta with a gap is fine: %v", err)
	}
}

func FuzzDecodeRing(f *testing.F) {
	r, _ := NewRing(testRange, names(1, 2, 3))
	r.Removed[2] = 1
	f.Add(AppendRing(nil, r), true)
	f.Add(AppendRing(nil, &Ring{ID: 1, Range: testRange, Spans: []Span{{5, 9, 4, 7, 0}}}), false)
	f.Fuzz(func(t *testing.T, b []byte, full bool) {
		got, _, err := DecodeRing(b, full)
		if err != nil {
			return
		}
		if full {
			if err := got.Check(); err != nil {
				t.Fatalf("decoded a full ring that fails Check: %v", err)
			}
			base, _ := NewRing(got.Range, names(1))
			base.ID = got.ID
			if _, err := base.Merge(got); err != nil {
				t.Fatal(err)
			}
			if err := base.Check(); err != nil {
				t.Fatal(err)
			}
		}
		again, _, err := DecodeRing(AppendRing(nil, got), full)
		if err != nil || !ringsEqual(again, got) {
			t.Fatalf("re-encoding fails: %v", err)
		}
	})
}

func FuzzDecodeState(f *testing.F) {
	r, _ := NewRing(testRange, names(1, 2))
	f.Add(appendState(nil, 1, r, map[peer.Name]entry{2: {Seq: 5, Flags: flagWaiting, Paxos: claims{Promise: proposalID{2, 7}, Accepted: proposalID{2, 7}, Value: encodeNames([]peer.Name{2, 7})}, Allocated: 3}}))
	f.Add(appendState(nil, 1, nil, nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := decodeState(b)
		if err != nil {
			return
		}
		if st.ring != nil {
			if err := st.ring.Check(); err != nil {
				t.Fatal(err)
			}
		}
	})
}

func FuzzDecodeMessage(f *testing.F) {
	r, _ := NewRing(testRange, names(1, 2))
	f.Add(appendDonateRequest(nil, 7, testRange))
	f.Add(appendDonateReply(nil, 7, r, 0))
	f.Add(appendDonateReply(nil, 7, nil, refusedFull))
	f.Add(appendMessageHeader(nil, msgStateRequest, 7))
	f.Add(appendClaim(nil, 7, []uint32{1, 2, 3}))
	f.Add(appendClaimReply(nil, 7, []claimAnswer{{1, claimGranted}, {2, claimConflict}}, r))
	f.Add(appendClaimReply(nil, 7, nil, nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = decodeMessage(b)
	})
}

// FuzzMergeDelta feeds arbitrary deltas to an Allocator: it never panics
// and its ring stays well formed.
func FuzzMergeDelta(f *testing.F) {
	r, _ := NewRing(testRange, names(1, 2))
	f.Add(append([]byte{deltaRing}, AppendRing(nil, r)...))
	f.Add(appendEntry([]byte{deltaEntry}, 3, entry{Seq: 1}))
	f.Fuzz(func(t *testing.T, b []byte) {
		a := newTestAllocator(t, 1, Init{Mode: ModeSeed, Seeds: names(1, 2)}, NewMemStore(), &fakeNet{})
		_, _ = a.MergeDelta(b)
		_ = a.MergeFull(b)
		if rr := a.RingSnapshot(); rr != nil {
			if err := rr.Check(); err != nil {
				t.Fatal(err)
			}
		}
	})
}
