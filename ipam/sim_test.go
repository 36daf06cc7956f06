package ipam

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"weavemesh.dev/weave/peer"
)

// The simulation runs many peers in one process over a simulated network
// with partitions, message loss, crashes (the data file survives), lost
// data files, peers that never come back, rmpeer and reclaim, and checks
// after every step that no address is held twice and that no two peers
// may allocate from the same address.
//
// The model matches what the protocol promises (docs/ipam.md). A crash is
// a SIGKILL: what the store has is what was written, nothing is saved on
// the way out. Containers outlive their router. Partitions and router
// downtimes last up to 1.8 times the reclaim timeout, past the reclaim and
// within the quarantine that follows it; a host whose router stays down
// longer is taken to be gone with its containers.

type simMsg struct {
	from, to peer.Name
	unicast  bool
	data     []byte
}

type simPeer struct {
	name  peer.Name
	store *MemStore
	a     *Allocator
	// containers survive a router crash: address -> owner.
	containers map[uint32]string
	downSince  time.Time
	// absentSince is when the peer was last present: up, reaching a
	// majority, and settled (not syncing, nothing to claim back).
	absentSince time.Time
	dead        bool // killed for good
}

type sim struct {
	t     testing.TB
	rnd   *rand.Rand
	now   time.Time
	rng   netip.Prefix
	ra    time.Duration
	peers []*simPeer
	byN   map[peer.Name]*simPeer
	group map[peer.Name]int
	queue []simMsg
	seq   int
	parts time.Time // when the current partition started
	plen  time.Duration
	stats map[string]int
	// lastRelease is the step of the last release, for the honest
	// exhaustion check (gossip takes a few steps to tell of it).
	lastRelease int
	counts      Counters // of allocators stopped so far
	init        Init
	// owners numbers containers.
	owners int
}

type simTransport struct {
	s    *sim
	self peer.Name
}

func (t simTransport) Broadcast(key string, delta []byte) error {
	for _, p := range t.s.peers {
		if p.name != t.self {
			t.s.queue = append(t.s.queue, simMsg{from: t.self, to: p.name, data: slices.Clone(delta)})
		}
	}
	return nil
}

func (t simTransport) SendAsync(to peer.Name, msg []byte) bool {
	t.s.queue = append(t.s.queue, simMsg{from: t.self, to: to, unicast: true, data: slices.Clone(msg)})
	return true
}

func (t simTransport) Members() []Member {
	var out []Member
	for _, p := range t.s.peers {
		if p.name == t.self {
			continue
		}
		out = append(out, Member{Name: p.name, Alive: t.s.connected(t.self, p.name)})
	}
	return out
}

// gone is how long a router may stay down with its host's containers
// alive.
func (s *sim) gone() time.Duration { return s.ra * 18 / 10 }

func (s *sim) connected(a, b peer.Name) bool {
	pa, pb := s.byN[a], s.byN[b]
	return pa.a != nil && pb.a != nil && s.group[a] == s.group[b]
}

func newSim(t testing.TB, seed uint64, n int, init Init) *sim {
	s := &sim{
		t: t, rnd: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		now: time.Unix(1_700_000_000, 0), rng: netip.MustParsePrefix("10.32.0.0/22"),
		ra: 60 * time.Second, byN: map[peer.Name]*simPeer{}, group: map[peer.Name]int{},
		stats: map[string]int{}, init: init,
	}
	for i := 0; i < n; i++ {
		name := peer.Name(0x0a0000000000 + uint64(i+1)*0x10101)
		p := &simPeer{name: name, store: NewMemStore(), containers: map[uint32]string{}, absentSince: s.now}
		s.peers = append(s.peers, p)
		s.byN[name] = p
	}
	if init.Mode == ModeSeed && len(init.Seeds) == 0 {
		for _, p := range s.peers[:min(3, n)] {
			s.init.Seeds = append(s.init.Seeds, p.name)
		}
	}
	for _, p := range s.peers {
		s.start(p)
	}
	return s
}

func (s *sim) start(p *simPeer) {
	a, err := New(Options{
		Self: p.name, Range: s.rng, Init: s.init, ReclaimAfter: s.ra, Settle: 5 * time.Second,
		Store: p.store, Transport: simTransport{s, p.name}, Now: func() time.Time { return s.now },
		Logger: simLogger(p.name),
		Scan: func() ([]netip.Addr, error) {
			var out []netip.Addr
			for n := range p.containers {
				out = append(out, numAddr(n))
			}
			return out, nil
		},
	})
	if err != nil {
		s.t.Fatalf("start %s: %v", p.name, err)
	}
	p.a = a
	keep := map[string]bool{}
	for _, o := range p.containers {
		keep[o] = true
	}
	a.Reconcile(keep)
}

func (s *sim) up() []*simPeer {
	var out []*simPeer
	for _, p := range s.peers {
		if p.a != nil {
			out = append(out, p)
		}
	}
	return out
}

func (s *sim) pick(ps []*simPeer) *simPeer {
	if len(ps) == 0 {
		return nil
	}
	return ps[s.rnd.IntN(len(ps))]
}

// deliver hands queued messages over in random order; messages between
// peers that cannot reach each other are lost, and some deltas are lost
// anyway (push-pull repairs them).
func (s *sim) deliver() {
	q := s.queue
	s.queue = nil
	s.rnd.Shuffle(len(q), func(i, j int) { q[i], q[j] = q[j], q[i] })
	for _, m := range q {
		if !s.connected(m.from, m.to) {
			continue
		}
		to := s.byN[m.to].a
		if m.unicast {
			to.HandleMessage(m.from, m.data)
			continue
		}
		if s.rnd.IntN(10) == 0 {
			continue
		}
		if _, err := to.MergeDelta(m.data); err != nil && !errors.Is(err, ErrForeignRing) {
			s.t.Fatalf("merge delta at %s: %v", m.to, err)
		}
	}
}

func (s *sim) pushPull() {
	up := s.up()
	for range len(up) {
		a, b := s.pick(up), s.pick(up)
		if a == b || !s.connected(a.name, b.name) {
			continue
		}
		if err := b.a.MergeFull(a.a.FullState()); err != nil && !errors.Is(err, ErrForeignRing) {
			s.t.Fatalf("merge full at %s: %v", b.name, err)
		}
		if err := a.a.MergeFull(b.a.FullState()); err != nil && !errors.Is(err, ErrForeignRing) {
			s.t.Fatalf("merge full at %s: %v", a.name, err)
		}
	}
}

func (s *sim) logf(format string, args ...any) {
	if os.Getenv("IPAM_SIM_LOG") != "" {
		fmt.Fprintf(os.Stderr, "step %d: %s\n", s.seq, fmt.Sprintf(format, args...))
	}
}

func (s *sim) step() {
	s.seq++
	s.now = s.now.Add(time.Second)
	up := s.up()
	switch r := s.rnd.IntN(100); {
	case r < 45: // allocations
		for range 1 + s.rnd.IntN(3) {
			if p := s.pick(up); p != nil {
				s.owners++
				owner := "c" + strconv.Itoa(s.owners)
				pfx, err := p.a.TryAllocate(owner, netip.Prefix{})
				if err == nil {
					p.containers[addrNum(pfx.Addr())] = owner
					s.logf("%s allocated %s to %s", p.name, pfx, owner)
					s.stats["allocated"]++
				} else if errors.Is(err, ErrExhausted) {
					s.stats["exhausted"]++
					s.checkExhausted(p, err)
				}
			}
		}
	case r < 65: // releases
		if p := s.pick(up); p != nil && len(p.containers) > 0 {
			keys := slices.Sorted(maps.Keys(p.containers))
			n := keys[s.rnd.IntN(len(keys))]
			p.a.Release(p.containers[n])
			delete(p.containers, n)
			s.stats["released"]++
			s.lastRelease = s.seq
		}
	case r < 70: // partition, short or past the reclaim timeout
		if s.parts.IsZero() {
			for _, p := range s.peers {
				s.group[p.name] = s.rnd.IntN(2)
			}
			s.parts = s.now
			s.plen = time.Duration(s.rnd.Int64N(int64(s.ra / 3)))
			if s.rnd.IntN(2) == 0 {
				s.plen = s.ra + time.Duration(s.rnd.Int64N(int64(s.gone()-s.ra)))
				s.stats["long partition"]++
			}
			s.stats["partition"]++
			s.logf("partition %v for %s", s.group, s.plen)
		}
	case r < 74: // SIGKILL a router; its containers live on
		if p := s.pick(up); p != nil && len(up) > 2 {
			s.kill(p)
			p.downSince = s.now
			s.stats["crash"]++
			s.logf("%s crashed", p.name)
		}
	case r < 80: // restart, maybe with the data file lost
		var down []*simPeer
		for _, p := range s.peers {
			if p.a == nil && !p.dead {
				down = append(down, p)
			}
		}
		if p := s.pick(down); p != nil {
			if s.now.Sub(p.absentSince) >= s.gone() {
				// Away this long: the host and its containers are gone.
				clear(p.containers)
			}
			if s.rnd.IntN(4) == 0 && s.othersHoldRing(p) {
				// A lost data file: the host was re-installed, and its
				// containers went with it unless they were recent.
				if s.now.Sub(p.downSince) >= s.ra/2 {
					clear(p.containers)
				}
				p.store = NewMemStore()
				s.stats["lost data"]++
				s.logf("%s lost its data", p.name)
			}
			s.logf("%s restarts after %s", p.name, s.now.Sub(p.downSince))
			s.start(p)
			s.stats["restart"]++
		}
	case r < 81: // a peer dies for good
		var down []*simPeer
		for _, p := range s.peers {
			if p.a == nil && !p.dead {
				down = append(down, p)
			}
		}
		if p := s.pick(down); p != nil && s.live() > 3 && s.seq > 200 {
			p.dead = true
			clear(p.containers)
			s.stats["dead"]++
			if q := s.pick(s.up()); q != nil && s.rnd.IntN(2) == 0 {
				if _, err := q.a.RemovePeer(p.name); err == nil {
					s.stats["rmpeer"]++
				}
			}
		}
	}
	if !s.parts.IsZero() && s.now.Sub(s.parts) > s.plen {
		clear(s.group)
		s.parts = time.Time{}
		s.stats["heal"]++
		s.logf("healed")
	}
	s.presence()
	s.deliver()
	if s.seq%3 == 0 {
		s.pushPull()
	}
	for _, p := range s.up() {
		p.a.Tick()
	}
	s.deliver()
	s.check()
}

// presence updates when each peer was last present, and takes a host
// away with its containers once its peer was absent for gone(): the
// protocol promises no duplicate address only for absences (downtime,
// partition, or both in turn) shorter than the reclaim timeout plus the
// quarantine.
func (s *sim) presence() {
	for _, p := range s.peers {
		if p.dead {
			continue
		}
		if p.a != nil {
			reach := 0
			for _, q := range s.peers {
				if q == p || s.connected(p.name, q.name) {
					reach++
				}
			}
			st := p.a.Status()
			if 2*reach > len(s.peers) && st.PendingClaims == 0 && st.Ready {
				p.absentSince = s.now
			}
		}
		if len(p.containers) > 0 && s.now.Sub(p.absentSince) >= s.gone() {
			s.logf("%s away for %s: its host and containers are gone", p.name, s.now.Sub(p.absentSince))
			if p.a != nil {
				for _, o := range p.containers {
					p.a.Release(o)
				}
			}
			clear(p.containers)
			s.stats["host gone"]++
		}
	}
}

// othersHoldRing reports whether a peer other than p that is not dead for
// good has the ring in its data file: losing every copy is not modelled.
func (s *sim) othersHoldRing(p *simPeer) bool {
	for _, q := range s.peers {
		if q != p && !q.dead {
			if saved, _ := q.store.Load(); saved.Ring != nil {
				return true
			}
		}
	}
	return false
}

// kill stops p's allocator as SIGKILL would: nothing more is written.
func (s *sim) kill(p *simPeer) {
	s.addCounts(p.a.Status().Counters)
	p.a = nil
}

func (s *sim) addCounts(c Counters) {
	s.counts.Donated += c.Donated
	s.counts.Received += c.Received
	s.counts.Reclaims += c.Reclaims
	s.counts.HandedBack += c.HandedBack
	s.counts.ClaimedBack += c.ClaimedBack
	s.counts.Conflicts += c.Conflicts
	s.counts.RingsAdopted += c.RingsAdopted
}

// checkExhausted fails when p reported the range exhausted while it is
// not full: fewer addresses are held (by containers anywhere, or recorded
// by a running peer) than the range has, and no release is still on its
// way through gossip.
func (s *sim) checkExhausted(p *simPeer, err error) {
	if s.seq-s.lastRelease <= 5 {
		return
	}
	held := map[uint32]bool{}
	for _, q := range s.peers {
		for n := range q.containers {
			held[n] = true
		}
		if q.a != nil {
			for ad := range q.a.Allocations() {
				held[addrNum(ad)] = true
			}
		}
	}
	if usable := int(rangeSize(s.rng)) - 2; len(held) < usable {
		s.t.Fatalf("step %d: %s says exhausted with %d of %d addresses held: %v", s.seq, p.name, len(held), usable, err)
	}
}

// views describes how every running peer sees address n, for failures.
func (s *sim) views(n uint32) string {
	var b strings.Builder
	for _, p := range s.peers {
		if p.a == nil {
			fmt.Fprintf(&b, "  %s: down\n", p.name)
			continue
		}
		r := p.a.RingSnapshot()
		if r == nil {
			continue
		}
		sp, _ := r.spanAt(n - r.Base())
		fmt.Fprintf(&b, "  %s: span %+v alloc %q\n", p.name, sp, p.a.Allocations()[numAddr(n)])
	}
	return b.String()
}

func (s *sim) live() int {
	n := 0
	for _, p := range s.peers {
		if !p.dead {
			n++
		}
	}
	return n
}

// check verifies the invariants: no address held by two containers, no
// offset usable by two peers, every ring well formed.
func (s *sim) check() {
	held := map[uint32]peer.Name{}
	for _, p := range s.peers {
		for n := range p.containers {
			if q, ok := held[n]; ok {
				s.t.Fatalf("step %d: %s held twice: by a container on %s and one on %s\n%s", s.seq, numAddr(n), q, p.name, s.views(n))
			}
			held[n] = p.name
		}
	}
	usable := map[uint32]peer.Name{}
	for _, p := range s.up() {
		if r := p.a.RingSnapshot(); r != nil {
			if err := r.Check(); err != nil {
				s.t.Fatalf("step %d: ring of %s: %v", s.seq, p.name, err)
			}
		}
		for _, v := range p.a.usableSpace() {
			for off := v.start; off < v.end; off++ {
				if q, ok := usable[off]; ok {
					s.t.Fatalf("step %d: offset %d usable by both %s and %s\n%s", s.seq, off, q, p.name, s.views(addrNum(s.rng.Addr())+off))
				}
				usable[off] = p.name
			}
		}
		// A peer's containers' addresses are all recorded by it.
		// A peer's containers' addresses are recorded by it (under their
		// owner, or as recovered after a lost data file), or lie outside
		// the space it may allocate from.
		allocs := p.a.Allocations()
		mine := p.a.usableSpace()
		base := addrNum(s.rng.Addr())
		for n, o := range p.containers {
			got := allocs[numAddr(n)]
			if got == o || got == recoveredPrefix+numAddr(n).String() {
				continue
			}
			if len(ivalsIntersect(mine, []ival{{n - base, n - base + 1}})) > 0 {
				s.t.Fatalf("step %d: %s lost the allocation of %s to %s (has %q)", s.seq, p.name, numAddr(n), o, got)
			}
		}
	}
}

// settle heals everything, restarts every live peer and lets gossip run,
// then checks that the rings converged and that allocation works.
func (s *sim) settle() {
	clear(s.group)
	for _, p := range s.peers {
		if p.a == nil && !p.dead {
			if s.now.Sub(p.absentSince) >= s.gone() {
				clear(p.containers)
			}
			s.start(p)
		}
	}
	for i := range 4 * int(s.ra/time.Second) {
		if i == 10 {
			// The operator removes the peers gone for good, on two hosts.
			for _, p := range s.peers {
				if !p.dead {
					continue
				}
				var holders []*simPeer
				for _, q := range s.up() {
					if q.a.RingSnapshot() != nil {
						holders = append(holders, q)
					}
				}
				if len(holders) == 0 {
					for _, q := range s.up() {
						s.t.Logf("%s: %s", q.name, q.a.Status().Reason)
					}
					s.t.Fatalf("step %d: no running peer holds a ring", s.seq)
				}
				for range 2 {
					if _, err := s.pick(holders).a.RemovePeer(p.name); err != nil {
						s.t.Fatalf("rmpeer %s: %v", p.name, err)
					}
				}
			}
		}
		s.now = s.now.Add(time.Second)
		s.deliver()
		s.pushPull()
		for _, p := range s.up() {
			p.a.Tick()
		}
		s.deliver()
		s.check()
	}
	var first *Ring
	for _, p := range s.up() {
		r := p.a.RingSnapshot()
		if r == nil {
			s.t.Fatalf("after settling, %s has no ring", p.name)
		}
		if first == nil {
			first = r
			continue
		}
		if !slices.Equal(first.Spans, r.Spans) {
			s.t.Fatalf("after settling, rings differ:\n%v\n%v", first.Spans, r.Spans)
		}
	}
	for o := range first.Owners() {
		if s.byN[o].dead {
			s.t.Errorf("after settling, dead peer %s still owns space", o)
		}
	}
	p := s.up()[0]
	ok := false
	for range 20 {
		if _, err := p.a.TryAllocate("final", netip.Prefix{}); err == nil {
			ok = true
			break
		} else if errors.Is(err, ErrExhausted) {
			ok = true
			break
		}
		s.now = s.now.Add(time.Second)
		s.deliver()
		s.deliver()
	}
	if !ok {
		s.t.Errorf("after settling, %s cannot allocate: %s", p.name, p.a.Status().Reason)
	}
}

func runSim(t *testing.T, seed uint64, peers, steps int, init Init) Counters {
	s := newSim(t, seed, peers, init)
	for range steps {
		s.step()
	}
	s.settle()
	for _, p := range s.up() {
		s.addCounts(p.a.Status().Counters)
	}
	t.Logf("seed %d: %v %+v", seed, s.stats, s.counts)
	return s.counts
}

func TestSimulation(t *testing.T) {
	for _, tc := range []struct {
		name string
		init Init
	}{
		{"consensus", Init{Mode: ModeConsensus, Quorum: 9}},
		{"seed", Init{Mode: ModeSeed}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			seeds := []uint64{1, 2, 3, 4}
			if v, err := strconv.ParseUint(os.Getenv("IPAM_SIM_SEED"), 10, 64); err == nil {
				seeds = []uint64{v}
			}
			var total Counters
			for _, seed := range seeds {
				c := runSim(t, seed, 9, 1500, tc.init)
				total.Donated += c.Donated
				total.Reclaims += c.Reclaims
				total.HandedBack += c.HandedBack
			}
			// The run must have exercised what it claims to test.
			if len(seeds) > 1 && (total.Donated == 0 || total.Reclaims == 0 || total.HandedBack == 0) {
				t.Errorf("the simulation did not exercise donations, reclaims and hand-backs: %+v", total)
			}
		})
	}
}

// TestSimulationSoak runs many more seeds and steps:
// IPAM_SOAK=200 go test -run TestSimulationSoak ./ipam/
func TestSimulationSoak(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("IPAM_SOAK"))
	if n <= 0 {
		t.Skip("set IPAM_SOAK=<seeds> to run the soak")
	}
	first := uint64(1000)
	if v, err := strconv.ParseUint(os.Getenv("IPAM_SIM_SEED"), 10, 64); err == nil {
		first = v
	}
	for seed := first; seed < first+uint64(n); seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			n := 5 + int(seed%12)
			// Every peer names all the others, as the README shows: the
			// split needs a majority of them, so two halves never both
			// agree.
			runSim(t, seed, n, 4000, Init{Mode: ModeConsensus, Quorum: n})
		})
	}
}

func simLogger(name peer.Name) *slog.Logger {
	if os.Getenv("IPAM_SIM_LOG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("peer", name.String())
}
