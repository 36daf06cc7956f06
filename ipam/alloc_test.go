package ipam

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"weavemesh.dev/weave/peer"
)

// fakeNet connects Allocators in one process: messages are delivered at
// once (on the caller's goroutine, as Run would), every peer sees every
// other alive unless marked down.
type fakeNet struct {
	mu    sync.Mutex // guards peers and down
	peers map[peer.Name]*Allocator
	down  map[peer.Name]bool
}

type fakeTransport struct {
	n    *fakeNet
	self peer.Name
}

func (n *fakeNet) add(a *Allocator) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.peers == nil {
		n.peers = map[peer.Name]*Allocator{}
		n.down = map[peer.Name]bool{}
	}
	n.peers[a.self] = a
}

func (n *fakeNet) get(p peer.Name) *Allocator {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.down[p] {
		return nil
	}
	return n.peers[p]
}

func (t fakeTransport) Broadcast(key string, delta []byte) error {
	t.n.mu.Lock()
	var to []*Allocator
	for name, a := range t.n.peers {
		if name != t.self && !t.n.down[name] {
			to = append(to, a)
		}
	}
	t.n.mu.Unlock()
	for _, a := range to {
		_, _ = a.MergeDelta(delta)
	}
	return nil
}

func (t fakeTransport) SendAsync(to peer.Name, msg []byte) bool {
	if a := t.n.get(to); a != nil && t.n.get(t.self) != nil {
		a.HandleMessage(t.self, msg)
	}
	return true
}

func (t fakeTransport) Members() []Member {
	t.n.mu.Lock()
	defer t.n.mu.Unlock()
	var out []Member
	for name := range t.n.peers {
		if name != t.self {
			out = append(out, Member{Name: name, Alive: !t.n.down[name]})
		}
	}
	return out
}

func newTestAllocator(t testing.TB, self peer.Name, init Init, store Store, n *fakeNet) *Allocator {
	t.Helper()
	a, err := New(Options{Self: self, Range: testRange, Init: init, Store: store, Transport: fakeTransport{n, self}, Settle: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	n.add(a)
	return a
}

// syncAll exchanges full states between every pair and ticks everyone.
func (n *fakeNet) syncAll() {
	n.mu.Lock()
	var all []*Allocator
	for name, a := range n.peers {
		if !n.down[name] {
			all = append(all, a)
		}
	}
	n.mu.Unlock()
	for _, a := range all {
		for _, b := range all {
			if a != b {
				_ = b.MergeFull(a.FullState())
			}
		}
	}
	for _, a := range all {
		a.Tick()
	}
}

func TestAllocateReleaseSingle(t *testing.T) {
	n := &fakeNet{}
	a := newTestAllocator(t, 1, Init{Mode: ModeConsensus, Quorum: 1}, NewMemStore(), n)
	a.Tick()
	seen := map[netip.Addr]bool{}
	for range 254 {
		p, err := a.TryAllocate("c", netip.Prefix{})
		if err != nil {
			t.Fatal(err)
		}
		if seen[p.Addr()] || p.Bits() != 24 {
			t.Fatalf("got %s again or with the wrong prefix", p)
		}
		if p.Addr() == testRange.Addr() || p.Addr() == netip.MustParseAddr("10.32.0.255") {
			t.Fatalf("handed out the network or broadcast address %s", p)
		}
		seen[p.Addr()] = true
	}
	if _, err := a.TryAllocate("d", netip.Prefix{}); !errors.Is(err, ErrExhausted) {
		t.Fatalf("255th allocation: %v, want exhausted", err)
	}
	if got := a.Release("c"); len(got) != 254 {
		t.Fatalf("released %d", len(got))
	}
	p, err := a.TryAllocate("e", netip.MustParsePrefix("10.32.0.128/25"))
	if err != nil || p.Bits() != 25 || !netip.MustParsePrefix("10.32.0.128/25").Contains(p.Addr()) {
		t.Fatalf("subnet allocation: %v %v", p, err)
	}
	if _, err := a.TryAllocate("e", netip.MustParsePrefix("10.33.0.0/24")); err == nil {
		t.Fatal("allocated outside the range")
	}
}

func TestConsensusAndDonation(t *testing.T) {
	n := &fakeNet{}
	a := newTestAllocator(t, 1, Init{Mode: ModeConsensus, Quorum: 2}, NewMemStore(), n)
	b := newTestAllocator(t, 2, Init{Mode: ModeConsensus, Quorum: 2}, NewMemStore(), n)
	obs := newTestAllocator(t, 3, Init{Mode: ModeObserver}, NewMemStore(), n)
	a.Tick()
	if a.RingSnapshot() != nil {
		t.Fatal("claimed alone with quorum 2")
	}
	for range 4 {
		n.syncAll()
	}
	ra, rb := a.RingSnapshot(), b.RingSnapshot()
	if ra == nil || rb == nil || !ringsEqual(ra, rb) {
		t.Fatalf("no agreement: %v %v", ra, rb)
	}
	if ro := obs.RingSnapshot(); ro == nil || !ringsEqual(ro, ra) {
		t.Fatal("the observer did not adopt the ring")
	}
	if len(ra.Owned(3)) != 0 {
		t.Fatal("the observer owns space")
	}
	// The observer allocates through a donation.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	p, err := obs.Allocate(ctx, "x", netip.Prefix{})
	if err != nil {
		t.Fatal(err)
	}
	if owner := obs.RingSnapshot().OwnerOf(p.Addr()); owner != 3 {
		t.Fatalf("allocated %s owned by %s", p, owner)
	}
	ra = a.RingSnapshot()
	rb = b.RingSnapshot()
	if ra.OwnerOf(p.Addr()) != 3 || rb.OwnerOf(p.Addr()) != 3 {
		t.Fatal("the donation did not reach the others")
	}
}

func TestRemovePeer(t *testing.T) {
	n := &fakeNet{}
	seeds := Init{Mode: ModeSeed, Seeds: names(1, 2, 3)}
	a := newTestAllocator(t, 1, seeds, NewMemStore(), n)
	b := newTestAllocator(t, 2, seeds, NewMemStore(), n)
	c := newTestAllocator(t, 3, seeds, NewMemStore(), n)
	n.syncAll()
	n.syncAll()
	if _, err := a.RemovePeer(3); err == nil || !strings.Contains(err.Error(), "alive") {
		t.Fatalf("removing a live peer: %v", err)
	}
	n.mu.Lock()
	n.down[3] = true
	n.mu.Unlock()
	// Run on two hosts: reclaimed once, by the lowest-named survivor.
	if _, err := b.RemovePeer(3); err != nil {
		t.Fatal(err)
	}
	if _, err := a.RemovePeer(3); err != nil {
		t.Fatal(err)
	}
	n.syncAll()
	n.syncAll()
	ra, rb := a.RingSnapshot(), b.RingSnapshot()
	if !ringsEqual(ra, rb) {
		t.Fatal("survivors disagree")
	}
	if len(ra.Owned(3)) != 0 {
		t.Fatal("the removed peer still owns space")
	}
	for _, s := range ra.Spans {
		if s.Version > reclaimBump && s.Owner != 1 {
			t.Fatalf("span %v reclaimed by someone other than the lowest survivor", s)
		}
	}
	// The removed peer comes back: it learns it owns nothing, never
	// allocates from its old space, and is revived.
	n.mu.Lock()
	n.down[3] = false
	n.mu.Unlock()
	n.syncAll()
	n.syncAll()
	if len(c.RingSnapshot().Owned(3)) != 0 {
		t.Fatal("the returning peer still owns space")
	}
	if c.RingSnapshot().IsRemoved(3) {
		t.Fatal("the returning peer was not revived")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Allocate(ctx, "x", netip.Prefix{}); err != nil {
		t.Fatalf("the returning peer cannot get space: %v", err)
	}
}

// TestLostDataFile: a peer whose data file is gone recovers its share from
// the ring and keeps the addresses still in use on its host.
func TestLostDataFile(t *testing.T) {
	n := &fakeNet{}
	seeds := Init{Mode: ModeSeed, Seeds: names(1, 2)}
	a := newTestAllocator(t, 1, seeds, NewMemStore(), n)
	newTestAllocator(t, 2, seeds, NewMemStore(), n)
	n.syncAll()
	var used []netip.Addr
	for range 3 {
		p, err := a.TryAllocate("c", netip.Prefix{})
		if err != nil {
			t.Fatal(err)
		}
		used = append(used, p.Addr())
	}
	// a restarts with a new, empty store; its containers live on.
	a2, err := New(Options{Self: 1, Range: testRange, Init: seeds, Store: NewMemStore(), Transport: fakeTransport{n, 1},
		Scan: func() ([]netip.Addr, error) { return used, nil }})
	if err != nil {
		t.Fatal(err)
	}
	n.add(a2)
	if _, err := a2.TryAllocate("d", netip.Prefix{}); err == nil {
		t.Fatal("allocated before hearing the other owner")
	}
	n.syncAll()
	n.syncAll()
	for range 10 {
		p, err := a2.TryAllocate("d", netip.Prefix{})
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range used {
			if p.Addr() == u {
				t.Fatalf("handed out %s, still in use", u)
			}
		}
	}
	allocs := a2.Allocations()
	for _, u := range used {
		if allocs[u] != recoveredPrefix+u.String() {
			t.Errorf("%s recorded as %q", u, allocs[u])
		}
	}
}

// TestPersistence: allocations and the ring survive a restart on the bolt
// store, and a reconcile releases those of vanished endpoints.
func TestPersistence(t *testing.T) {
	dir := t.TempDir()
	n := &fakeNet{}
	st, err := OpenBolt(dir, 1, testRange)
	if err != nil {
		t.Fatal(err)
	}
	a := newTestAllocator(t, 1, Init{Mode: ModeConsensus, Quorum: 1}, st, n)
	a.Tick()
	p1, err := a.TryAllocate("keep", netip.Prefix{})
	if err != nil {
		t.Fatal(err)
	}
	p2, err := a.TryAllocate("gone", netip.Prefix{})
	if err != nil {
		t.Fatal(err)
	}
	ring := AppendRing(nil, a.RingSnapshot())
	a.Close()
	st.Close()

	st, err = OpenBolt(dir, 1, testRange)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	b := newTestAllocator(t, 1, Init{Mode: ModeConsensus, Quorum: 1}, st, &fakeNet{})
	if string(AppendRing(nil, b.RingSnapshot())) != string(ring) {
		t.Fatal("ring changed across the restart")
	}
	b.Reconcile(map[string]bool{"keep": true})
	got := b.Allocations()
	if got[p1.Addr()] != "keep" || got[p2.Addr()] != "" {
		t.Fatalf("after reconcile: %v", got)
	}
	if p, err := b.TryAllocate("new", netip.Prefix{}); err != nil || p.Addr() == p1.Addr() {
		t.Fatalf("new allocation %v %v", p, err)
	}
}

func TestDataFileRefused(t *testing.T) {
	t.Run("corrupt", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, DataFile)
		garbage := make([]byte, 64<<10)
		for i := range garbage {
			garbage[i] = byte(i * 7)
		}
		if err := os.WriteFile(path, garbage, 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := OpenBolt(dir, 1, testRange)
		if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "move it away") {
			t.Fatalf("error %v: want one naming %s and the recovery step", err, path)
		}
		if b, _ := os.ReadFile(path); string(b) != string(garbage) {
			t.Fatal("the corrupt file was changed")
		}
	})
	t.Run("truncated", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, DataFile), []byte("not a database"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := OpenBolt(dir, 1, testRange); err == nil || !strings.Contains(err.Error(), "corrupt") {
			t.Fatalf("error %v", err)
		}
	})
	t.Run("another peer", func(t *testing.T) {
		dir := t.TempDir()
		st, err := OpenBolt(dir, 1, testRange)
		if err != nil {
			t.Fatal(err)
		}
		st.Close()
		if _, err := OpenBolt(dir, 2, testRange); err == nil || !strings.Contains(err.Error(), "belongs to peer 00:00:00:00:00:01") {
			t.Fatalf("error %v", err)
		}
	})
	t.Run("another range", func(t *testing.T) {
		dir := t.TempDir()
		st, err := OpenBolt(dir, 1, testRange)
		if err != nil {
			t.Fatal(err)
		}
		st.Close()
		if _, err := OpenBolt(dir, 1, netip.MustParsePrefix("10.40.0.0/16")); err == nil || !strings.Contains(err.Error(), "--ipalloc-range 10.32.0.0/24") {
			t.Fatalf("error %v", err)
		}
	})
}

func TestParseInit(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string
		err  bool
	}{
		{"", "consensus=3", false},
		{"consensus", "consensus=3", false},
		{"consensus=5", "consensus=5", false},
		{"consensus=0", "", true},
		{"observer", "observer", false},
		{"seed=00:00:00:00:00:02,00:00:00:00:00:01", "seed=00:00:00:00:00:01,00:00:00:00:00:02", false},
		{"seed=nope", "", true},
		{"magic", "", true},
	} {
		got, err := ParseInit(tc.in, 3)
		if (err != nil) != tc.err || (!tc.err && got.String() != tc.want) {
			t.Errorf("ParseInit(%q) = %v, %v; want %q (error %v)", tc.in, got, err, tc.want, tc.err)
		}
	}
}

// Anti-entropy compares digests: peers that exchanged full states agree,
// and an entry or ring change one of them has not heard shows.
func TestDigestFollowsTheState(t *testing.T) {
	n := &fakeNet{}
	seeds := Init{Mode: ModeSeed, Seeds: []peer.Name{1, 2}}
	a := newTestAllocator(t, 1, seeds, NewMemStore(), n)
	b := newTestAllocator(t, 2, seeds, NewMemStore(), n)
	for range 4 {
		n.syncAll()
	}
	if a.Digest() != b.Digest() {
		t.Fatalf("after full exchanges, digests %x and %x differ", a.Digest(), b.Digest())
	}
	n.mu.Lock()
	n.down[2] = true // b hears nothing more
	n.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := a.Allocate(ctx, "x", netip.Prefix{}); err != nil {
		t.Fatal(err)
	}
	a.Tick()
	if a.Digest() == b.Digest() {
		t.Fatal("a's new entry left the digests equal")
	}
	n.mu.Lock()
	delete(n.down, 2)
	n.mu.Unlock()
	n.syncAll()
	if a.Digest() != b.Digest() {
		t.Fatalf("after b merged a's state, digests %x and %x differ", a.Digest(), b.Digest())
	}
	r := a.RingSnapshot()
	r.Spans[0].Version++
	if ringDigest(r) == ringDigest(a.RingSnapshot()) {
		t.Fatal("a span's version left the ring digest unchanged")
	}
}
