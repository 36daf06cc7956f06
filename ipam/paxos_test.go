package ipam

import (
	"errors"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
	"time"

	"weavemesh.dev/weave/peer"
)

// paxosNet runs bare consensus nodes over a network that loses,
// duplicates and reorders their claims, and crashes nodes (they keep only
// their own claims, as the data file does).
type paxosNet struct {
	rnd   *rand.Rand
	nodes []*paxos
	down  []bool
	queue []paxosMsg
}

type paxosMsg struct {
	from peer.Name
	to   int
	c    claims
}

func newPaxosNet(seed uint64, n, quorum int) *paxosNet {
	pn := &paxosNet{rnd: rand.New(rand.NewPCG(seed, 7)), down: make([]bool, n)}
	for i := range n {
		pn.nodes = append(pn.nodes, newPaxos(peer.Name(i+1), quorum, claims{}))
	}
	return pn
}

func (pn *paxosNet) value(x *paxos) func() string {
	return func() string {
		var ps []peer.Name
		for p := range x.knows {
			ps = append(ps, p)
		}
		return encodeNames(ps)
	}
}

// round: every live node may propose, thinks, and sends its claims to
// every other; then a shuffled part of the queue is delivered, some
// messages twice, some never.
func (pn *paxosNet) round(proposeChance int) {
	for i, x := range pn.nodes {
		if pn.down[i] {
			continue
		}
		if pn.rnd.IntN(100) < proposeChance {
			x.propose()
		}
		x.think(pn.value(x))
		for j := range pn.nodes {
			if j != i {
				pn.queue = append(pn.queue, paxosMsg{x.self, j, x.mine()})
			}
		}
	}
	pn.rnd.Shuffle(len(pn.queue), func(i, j int) { pn.queue[i], pn.queue[j] = pn.queue[j], pn.queue[i] })
	keep := pn.queue[:0]
	for _, m := range pn.queue {
		switch r := pn.rnd.IntN(10); {
		case r < 3: // lost
		case r < 5: // held back: reordered behind later ones
			keep = append(keep, m)
		default:
			if !pn.down[m.to] {
				pn.nodes[m.to].update(m.from, m.c)
				if r == 9 { // duplicated
					pn.nodes[m.to].update(m.from, m.c)
				}
			}
		}
	}
	pn.queue = keep
	if len(pn.queue) > 1000 {
		pn.queue = pn.queue[len(pn.queue)-1000:]
	}
}

func (pn *paxosNet) crash(i int) {
	pn.down[i] = true
}

func (pn *paxosNet) restart(i int) {
	x := pn.nodes[i]
	pn.nodes[i] = newPaxos(x.self, x.quorum, x.mine())
	pn.down[i] = false
}

// chosen checks that every node that sees a chosen value sees the same.
func (pn *paxosNet) chosen(t *testing.T, seed uint64, step int) (string, int) {
	t.Helper()
	var v string
	n := 0
	for i, x := range pn.nodes {
		if pn.down[i] {
			continue
		}
		if c, ok := x.chosen(); ok {
			if n > 0 && c != v {
				t.Fatalf("seed %d step %d: two values chosen: %x and %x", seed, step, v, c)
			}
			v = c
			n++
		}
	}
	return v, n
}

// TestPaxosUnderLoss: lost, duplicated and reordered claims, duelling
// proposers and crashes never let two values be chosen, and once the
// network calms down every live node learns the value.
func TestPaxosUnderLoss(t *testing.T) {
	for seed := uint64(1); seed <= 300; seed++ {
		n := 3 + int(seed%5)
		pn := newPaxosNet(seed, n, n/2+1)
		for step := range 60 {
			pn.round(15)
			if pn.rnd.IntN(8) == 0 {
				i := pn.rnd.IntN(n)
				if pn.down[i] {
					pn.restart(i)
				} else {
					pn.crash(i)
				}
			}
			pn.chosen(t, seed, step)
		}
		for i := range pn.down {
			if pn.down[i] {
				pn.restart(i)
			}
		}
		// Calm: one proposer, no loss beyond what round does.
		for step := 60; step < 200; step++ {
			if _, ok := pn.nodes[0].chosen(); !ok && step%10 == 0 {
				pn.nodes[0].propose()
			}
			pn.round(0)
			if _, k := pn.chosen(t, seed, step); k == n {
				break
			}
		}
		if _, k := pn.chosen(t, seed, 200); k != n {
			t.Fatalf("seed %d: only %d of %d nodes learnt a value", seed, k, n)
		}
	}
}

// TestConsensusOneNamedPeerDead: three peers are named, one never starts;
// the other two agree on a split among themselves, and the third, when it
// comes, adopts their ring and gets space by donation.
func TestConsensusOneNamedPeerDead(t *testing.T) {
	n := &fakeNet{}
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { return now }
	mk := func(self peer.Name) *Allocator {
		a, err := New(Options{Self: self, Range: testRange, Init: Init{Mode: ModeConsensus, Quorum: 3}, Store: NewMemStore(), Transport: fakeTransport{n, self}, Settle: time.Millisecond, Now: clock})
		if err != nil {
			t.Fatal(err)
		}
		n.add(a)
		return a
	}
	a, b := mk(1), mk(2)
	for range 20 {
		now = now.Add(time.Second)
		n.syncAll()
	}
	ra, rb := a.RingSnapshot(), b.RingSnapshot()
	if ra == nil || rb == nil || !ringsEqual(ra, rb) {
		t.Fatalf("no agreement without the third peer: %v / %v (%s)", ra, rb, a.Status().Reason)
	}
	if got := len(ra.Owners()); got != 2 {
		t.Fatalf("split among %d peers, want the 2 that ran", got)
	}
	c := mk(3)
	for range 5 {
		now = now.Add(time.Second)
		n.syncAll()
	}
	if rc := c.RingSnapshot(); rc == nil || rc.ID != ra.ID {
		t.Fatal("the late peer did not adopt the ring")
	}
	var err error
	for range 20 {
		if _, err = c.TryAllocate("late", netip.Prefix{}); err == nil {
			break
		}
		now = now.Add(time.Second)
		n.syncAll()
	}
	if err != nil {
		t.Fatalf("the late peer cannot allocate: %v", err)
	}
}

// TestConsensusStatus: a waiting peer says what it waits for.
func TestConsensusStatus(t *testing.T) {
	a := newTestAllocator(t, 1, Init{Mode: ModeConsensus, Quorum: 3}, NewMemStore(), &fakeNet{})
	a.Tick()
	_, err := a.TryAllocate("x", netip.Prefix{})
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("allocate before the split: %v", err)
	}
	st := a.Status()
	for _, want := range []string{"majority (2) of the 3 peers", "heard from 1"} {
		if !strings.Contains(st.Consensus, want) || !strings.Contains(err.Error(), want) {
			t.Errorf("status %q / error %q lack %q", st.Consensus, err, want)
		}
	}
}

func TestClaimsRoundTrip(t *testing.T) {
	for _, c := range []claims{
		{},
		{Promise: proposalID{3, 9}},
		{Promise: proposalID{4, 2}, Accepted: proposalID{4, 2}, Value: encodeNames([]peer.Name{5, 2, 9})},
	} {
		got, rest, err := decodeClaims(appendClaims(nil, c))
		if err != nil || len(rest) != 0 || got != c {
			t.Errorf("%+v: got %+v, %d left, %v", c, got, len(rest), err)
		}
	}
	for name, b := range map[string][]byte{
		"value without acceptance": appendClaims(nil, claims{Value: encodeNames([]peer.Name{1})}),
		"unsorted value":           appendClaims(nil, claims{Accepted: proposalID{1, 1}, Value: string([]byte{0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 1})}),
		"truncated":                appendClaims(nil, claims{Promise: proposalID{1, 1}})[:5],
	} {
		if _, _, err := decodeClaims(b); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
}

func FuzzDecodeClaims(f *testing.F) {
	f.Add(appendClaims(nil, claims{Promise: proposalID{4, 2}, Accepted: proposalID{4, 2}, Value: encodeNames([]peer.Name{5, 2, 9})}))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, rest, err := decodeClaims(b)
		if err != nil {
			return
		}
		again, _, err := decodeClaims(appendClaims(nil, c))
		if err != nil || again != c {
			t.Fatalf("%+v does not round-trip: %+v %v (rest %d)", c, again, err, len(rest))
		}
	})
}
