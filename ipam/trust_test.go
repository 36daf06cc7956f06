package ipam

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"weavemesh.dev/weave/peer"
)

// clockNet is a fakeNet with one injected clock for every allocator.
type clockNet struct {
	fakeNet
	now time.Time
}

func newClockNet() *clockNet { return &clockNet{now: time.Unix(1_700_000_000, 0)} }

func (c *clockNet) clock() time.Time { return c.now }

func (c *clockNet) start(t *testing.T, self peer.Name, init Init, store Store, reclaim time.Duration) *Allocator {
	t.Helper()
	a, err := New(Options{Self: self, Range: testRange, Init: init, ReclaimAfter: reclaim, Settle: time.Second,
		Store: store, Transport: fakeTransport{&c.fakeNet, self}, Now: c.clock})
	if err != nil {
		t.Fatal(err)
	}
	c.add(a)
	return a
}

// run advances the clock by d, a second at a time, syncing everyone.
func (c *clockNet) run(d time.Duration) {
	for end := c.now.Add(d); c.now.Before(end); {
		c.now = c.now.Add(time.Second)
		c.syncAll()
	}
}

func (c *clockNet) setDown(p peer.Name, down bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.down[p] = down
}

func mustAllocate(t *testing.T, a *Allocator, owner string, subnet netip.Prefix) netip.Addr {
	t.Helper()
	var err error
	for range 10 {
		var p netip.Prefix
		if p, err = a.TryAllocate(owner, subnet); err == nil {
			return p.Addr()
		}
	}
	t.Fatalf("%s: allocate for %s: %v", a.self, owner, err)
	return netip.Addr{}
}

// ownShare is peer 1's share of testRange split among peers 1 and 2.
var ownShare = netip.MustParsePrefix("10.32.0.0/25")

// TestRefusalReasons: a donor that cannot give says why.
func TestRefusalReasons(t *testing.T) {
	seeds := Init{Mode: ModeSeed, Seeds: names(1, 2)}
	for _, tc := range []struct {
		name  string
		setup func(a *Allocator)
		want  refusal
	}{
		{"full", func(a *Allocator) {
			for {
				if _, err := a.TryAllocate("x", ownShare); err != nil {
					return
				}
			}
		}, refusedFull},
		{"fenced", func(a *Allocator) { a.fenced = true }, refusedFenced},
		{"syncing", func(a *Allocator) { a.needSync = true }, refusedSyncing},
		{"not verified yet", func(a *Allocator) { a.verified = nil }, refusedNotReady},
		{"quarantined", func(a *Allocator) {
			for i := range a.ring.Spans {
				a.ring.Spans[i].Held = a.opts.Now().Add(time.Hour).Unix()
			}
		}, refusedNotReady},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClockNet()
			a := c.start(t, 1, seeds, NewMemStore(), 0)
			c.start(t, 2, seeds, NewMemStore(), 0)
			c.run(2 * time.Second)
			tc.setup(a)
			a.mu.Lock()
			grant, why := a.donateLocked(2, message{ringID: a.ring.ID, subnet: ownShare})
			a.mu.Unlock()
			if grant != nil || why != tc.want {
				t.Fatalf("got grant %v, refusal %v; want %v", grant, why, tc.want)
			}
			// The refusal survives the wire.
			m, err := decodeMessage(appendDonateReply(nil, 7, nil, why))
			if err != nil || m.why != tc.want {
				t.Fatalf("decoded %v, %v", m.why, err)
			}
		})
	}
}

// TestExhaustedOnlyWhenEveryOwnerIsFull: while a donor is not ready the
// attach waits; once every owner said full it gets "exhausted", naming
// the subnet and the addresses in use.
func TestExhaustedOnlyWhenEveryOwnerIsFull(t *testing.T) {
	c := newClockNet()
	seeds := Init{Mode: ModeSeed, Seeds: names(1, 2)}
	a := c.start(t, 1, seeds, NewMemStore(), 0)
	b := c.start(t, 2, seeds, NewMemStore(), 0)
	c.run(2 * time.Second)
	subnet := ownShare
	for {
		if _, err := a.TryAllocate("x", subnet); err != nil {
			break
		}
	}
	c.run(time.Second) // b hears how many a holds
	// Peer 2 owns nothing in the subnet, peer 1 is full: exhausted.
	_, err := b.TryAllocate("y", subnet)
	for errors.Is(err, errWaiting) {
		_, err = b.TryAllocate("y", subnet)
	}
	if !errors.Is(err, ErrExhausted) || !strings.Contains(err.Error(), subnet.String()) || !strings.Contains(err.Error(), "126 addresses in use across the mesh") {
		t.Fatalf("got %v, want exhausted naming %s and the addresses in use", err, subnet)
	}
	// Peer 1 frees its addresses but has not verified its space (as
	// after a restart that lost its data file), so it is not ready: b
	// waits, it is not told "exhausted".
	a.Release("x")
	a.mu.Lock()
	a.verified, a.holdUntil = nil, c.now.Add(time.Hour)
	a.mu.Unlock()
	c.run(12 * time.Second) // b's entry for a changes: the old "full" is forgotten
	_, err = b.TryAllocate("y", subnet)
	for errors.Is(err, errWaiting) {
		_, err = b.TryAllocate("y", subnet)
	}
	if errors.Is(err, ErrExhausted) || !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "not ready") {
		t.Fatalf("with the owner not ready: %v, want a wait naming the reason", err)
	}
	a.mu.Lock()
	a.holdUntil = time.Time{}
	a.mu.Unlock()
	c.run(2 * time.Second)
	mustAllocate(t, b, "y", subnet)
}

// reclaim is the reclaim timeout of threeSeeds' peers.
const reclaim = 20 * time.Second

// threeSeeds starts peers 1, 2 and 3 seeded with the range and returns
// the first (the claimer when 3 is lost) and the third.
func threeSeeds(t *testing.T) (c *clockNet, a, x *Allocator) {
	c = newClockNet()
	seeds := Init{Mode: ModeSeed, Seeds: names(1, 2, 3)}
	a = c.start(t, 1, seeds, NewMemStore(), reclaim)
	c.start(t, 2, seeds, NewMemStore(), reclaim)
	x = c.start(t, 3, seeds, NewMemStore(), reclaim)
	c.run(3 * time.Second)
	return c, a, x
}

// TestQuarantineAndClaimBack: a peer cut off past the reclaim timeout
// keeps its containers' addresses. The reclaimer holds the space in
// quarantine and uses it last; the peer claims its addresses back when it
// returns.
func TestQuarantineAndClaimBack(t *testing.T) {
	c, a, x := threeSeeds(t)
	held := []netip.Addr{mustAllocate(t, x, "c1", netip.Prefix{}), mustAllocate(t, x, "c2", netip.Prefix{})}

	c.setDown(3, true)
	c.run(reclaim + 5*time.Second)
	if r := a.RingSnapshot(); r.OwnerOf(held[0]) != 1 {
		t.Fatalf("peer 3's space not reclaimed by peer 1: owner %s", r.OwnerOf(held[0]))
	}
	st := a.Status()
	if st.Quarantined == 0 || st.Counters.Reclaims != 1 {
		t.Fatalf("reclaimed space not quarantined: %+v", st)
	}
	// Peer 1 fills its own space; the quarantined space is not touched.
	for {
		p, err := a.TryAllocate("fill", netip.Prefix{})
		if err != nil {
			if errors.Is(err, ErrExhausted) {
				t.Fatalf("exhausted with space in quarantine: %v", err)
			}
			break
		}
		for _, h := range held {
			if p.Addr() == h {
				t.Fatalf("handed out %s, quarantined", h)
			}
		}
	}

	c.setDown(3, false)
	c.run(10 * time.Second)
	rx := x.RingSnapshot()
	for _, h := range held {
		if rx.OwnerOf(h) != 3 || a.RingSnapshot().OwnerOf(h) != 3 {
			t.Fatalf("%s not handed back: owner %s (peer 3's view) %s (peer 1's)", h, rx.OwnerOf(h), a.RingSnapshot().OwnerOf(h))
		}
	}
	if sx := x.Status(); sx.PendingClaims != 0 || sx.Counters.ClaimedBack != 2 || a.Status().Counters.HandedBack != 2 {
		t.Fatalf("claims: peer 3 %+v, peer 1 %+v", sx, a.Status().Counters)
	}
	if got := x.Allocations(); got[held[0]] != "c1" || got[held[1]] != "c2" {
		t.Fatalf("peer 3 lost its allocations: %v", got)
	}
	// And after the quarantine the rest of the reclaimed space is used.
	c.run(reclaim)
	for {
		p, err := a.TryAllocate("more", netip.Prefix{})
		if err != nil {
			break
		}
		for _, h := range held {
			if p.Addr() == h {
				t.Fatalf("handed out %s, which peer 3 holds", h)
			}
		}
	}
}

// TestConflictDetected: when the reclaimer did hand out an address the
// returning peer holds, both say so and count it, and neither record is
// overwritten.
func TestConflictDetected(t *testing.T) {
	c, a, x := threeSeeds(t)
	h := mustAllocate(t, x, "c1", netip.Prefix{})
	c.setDown(3, true)
	c.run(2*reclaim + 5*time.Second) // past reclaim and quarantine
	// Peer 1 hands out exactly that address.
	if warn := a.Claim("other", h); warn != "" {
		t.Fatalf("claim %s on peer 1: %s", h, warn)
	}
	c.setDown(3, false)
	c.run(5 * time.Second)
	for _, p := range []*Allocator{a, x} {
		st := p.Status()
		if st.Counters.Conflicts != 1 || len(st.AddressConflicts) != 1 || !strings.Contains(st.AddressConflicts[0], h.String()) {
			t.Errorf("%s: conflicts %d %v", p.self, st.Counters.Conflicts, st.AddressConflicts)
		}
	}
	if a.Allocations()[h] != "other" || x.Allocations()[h] != "c1" {
		t.Errorf("a record was overwritten: %q on 1, %q on 3", a.Allocations()[h], x.Allocations()[h])
	}
	// Detaching one side ends the conflict there.
	x.Release("c1")
	if st := x.Status(); len(st.AddressConflicts) != 0 {
		t.Errorf("after detach: %v", st.AddressConflicts)
	}
}

// TestForeignRings: a router started alone gives its ring up for the
// mesh's and claims back what its endpoints hold; two real meshes are a
// conflict with steps to resolve it.
func TestForeignRings(t *testing.T) {
	t.Run("lone without allocations adopts", func(t *testing.T) {
		c := newClockNet()
		mesh := Init{Mode: ModeSeed, Seeds: names(1, 2)}
		a := c.start(t, 1, mesh, NewMemStore(), 0)
		c.start(t, 2, mesh, NewMemStore(), 0)
		l := c.start(t, 9, Init{Mode: ModeConsensus, Quorum: 1}, NewMemStore(), 0)
		l.Tick()
		if r := l.RingSnapshot(); r == nil || !lone(r) {
			t.Fatal("the lone router did not claim the range")
		}
		c.run(3 * time.Second)
		if l.RingSnapshot().ID != a.RingSnapshot().ID {
			t.Fatal("the lone router kept its ring")
		}
		for _, p := range []*Allocator{a, l} {
			if st := p.Status(); len(st.Conflicts) != 0 {
				t.Errorf("%s reports %v", p.self, st.Conflicts)
			}
		}
		mustAllocate(t, l, "x", netip.Prefix{})
	})
	t.Run("lone with allocations adopts and claims them back", func(t *testing.T) {
		c := newClockNet()
		l := c.start(t, 9, Init{Mode: ModeConsensus, Quorum: 1}, NewMemStore(), 0)
		l.Tick()
		var mine []netip.Addr
		for i := range 3 {
			mine = append(mine, mustAllocate(t, l, "c"+string(rune('0'+i)), netip.Prefix{}))
		}
		mesh := Init{Mode: ModeSeed, Seeds: names(1, 2)}
		a := c.start(t, 1, mesh, NewMemStore(), 0)
		c.start(t, 2, mesh, NewMemStore(), 0)
		c.run(5 * time.Second)
		r := a.RingSnapshot()
		if l.RingSnapshot().ID != r.ID {
			t.Fatal("the lone router kept its ring")
		}
		for _, h := range mine {
			if r.OwnerOf(h) != 9 {
				t.Errorf("%s, held on the lone router, is owned by %s", h, r.OwnerOf(h))
			}
		}
		if st := l.Status(); st.Counters.RingsAdopted != 1 || st.PendingClaims != 0 {
			t.Errorf("status %+v", st)
		}
	})
	t.Run("two lone routers: exactly one yields", func(t *testing.T) {
		c := newClockNet()
		a := c.start(t, 1, Init{Mode: ModeConsensus, Quorum: 1}, NewMemStore(), 0)
		b := c.start(t, 2, Init{Mode: ModeConsensus, Quorum: 1}, NewMemStore(), 0)
		a.Tick()
		b.Tick()
		ida, idb := a.RingSnapshot().ID, b.RingSnapshot().ID
		c.run(3 * time.Second)
		if a.RingSnapshot().ID != b.RingSnapshot().ID || a.RingSnapshot().ID != min(ida, idb) {
			t.Fatalf("rings %x %x, want both %x", a.RingSnapshot().ID, b.RingSnapshot().ID, min(ida, idb))
		}
	})
	t.Run("two real meshes conflict", func(t *testing.T) {
		n1, n2 := &fakeNet{}, &fakeNet{}
		a := newTestAllocator(t, 1, Init{Mode: ModeSeed, Seeds: names(1, 2)}, NewMemStore(), n1)
		b := newTestAllocator(t, 3, Init{Mode: ModeSeed, Seeds: names(3, 4)}, NewMemStore(), n2)
		before := AppendRing(nil, a.RingSnapshot())
		if err := a.MergeFull(b.FullState()); !errors.Is(err, ErrForeignRing) {
			t.Fatalf("merge of a separately initialised ring: %v", err)
		}
		if string(AppendRing(nil, a.RingSnapshot())) != string(before) {
			t.Fatal("the foreign ring changed ours")
		}
		st := a.Status()
		if len(st.Conflicts) != 1 || !strings.Contains(st.Conflicts[0], "separately initialised") || !strings.Contains(st.Conflicts[0], "weave launch again") {
			t.Fatalf("conflicts %v", st.Conflicts)
		}
	})
}

// TestClaimWire: claims and their replies decode to what was sent.
func TestClaimWire(t *testing.T) {
	m, err := decodeMessage(appendClaim(nil, 7, []uint32{10, 20}))
	if err != nil || m.kind != msgClaim || m.ringID != 7 || len(m.addrs) != 2 || m.addrs[1] != 20 {
		t.Fatalf("claim: %+v %v", m, err)
	}
	r, _ := NewRing(testRange, names(1, 2))
	m, err = decodeMessage(appendClaimReply(nil, 7, []claimAnswer{{10, claimGranted}, {20, claimConflict}}, r))
	if err != nil || len(m.answers) != 2 || m.answers[1].status != claimConflict || m.grant == nil {
		t.Fatalf("claim reply: %+v %v", m, err)
	}
	for name, b := range map[string][]byte{
		"empty claim":    appendClaim(nil, 7, nil),
		"bad status":     append(appendClaimReply(nil, 7, nil, nil)[:9], 1, 0, 0, 0, 1, 9, 0),
		"short claim":    appendClaim(nil, 7, []uint32{1})[:12],
		"bad refusal":    append(appendDonateReply(nil, 7, nil, refusedFull)[:10], 9),
		"reply trailing": append(appendClaimReply(nil, 7, nil, nil), 0),
	} {
		if _, err := decodeMessage(b); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
}

// TestHandOver: weave reset gives all of a peer's space to the lowest
// live peer, which uses it at once; the peer keeps nothing.
func TestHandOver(t *testing.T) {
	c, a, x := threeSeeds(t)
	mustAllocate(t, x, "c1", netip.Prefix{})
	to, n, err := x.HandOver()
	if err != nil || to != 1 || n == 0 {
		t.Fatalf("hand-over: %v %d %v", to, n, err)
	}
	if len(x.Allocations()) != 0 || len(x.RingSnapshot().Owned(3)) != 0 {
		t.Fatal("the peer kept allocations or space")
	}
	ra := a.RingSnapshot()
	if len(ra.Owned(3)) != 0 {
		t.Fatalf("peer 1 still sees peer 3 owning %v", ra.Owned(3))
	}
	var got uint32
	for _, s := range ra.Owned(1) {
		got += s.Size()
	}
	if st := a.Status(); st.Unverified != 0 || got < n {
		t.Fatalf("peer 1 owns %d, %d unverified", got, st.Unverified)
	}
	c.setDown(3, true)
	c.run(time.Second)
	// Peer 1 allocates in what was peer 3's share: the last addresses.
	if _, err := a.TryAllocate("y", netip.MustParsePrefix("10.32.0.192/26")); err != nil {
		t.Fatalf("allocate in the handed-over space: %v", err)
	}
	// Alone, there is no one to hand over to.
	lone := newTestAllocator(t, 9, Init{Mode: ModeConsensus, Quorum: 1}, NewMemStore(), &fakeNet{})
	lone.Tick()
	if _, _, err := lone.HandOver(); err == nil || !strings.Contains(err.Error(), "rmpeer") {
		t.Fatalf("alone: %v", err)
	}
}
