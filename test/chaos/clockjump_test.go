package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"weavemesh.dev/weave/gossip"
	"weavemesh.dev/weave/internal/clock"
	"weavemesh.dev/weave/peer"
	"weavemesh.dev/weave/router/inproc"
)

// clockJumpSeed is the CI seed; WEAVE_CHAOS_SEED replays another.
const clockJumpSeed = 1

// TestClockJumps steps the clocks of routers of an in-process mesh an hour
// and more forward and back, past the IP allocation reclaim timeout, and
// checks after every step that no address is handed out or owned twice,
// that no live peer is declared dead, and that DNS records and link state
// still reach every router.
func TestClockJumps(t *testing.T) {
	seed := uint64(clockJumpSeed)
	if s := os.Getenv("WEAVE_CHAOS_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("WEAVE_CHAOS_SEED=%q: %v", s, err)
		}
		seed = n
	}
	rng := rand.New(rand.NewPCG(seed, seed^0xc10c))
	const n = 5
	const reclaimAfter = 2 * time.Minute
	clocks := make([]*inproc.JumpClock, n)
	for i := range clocks {
		clocks[i] = new(inproc.JumpClock)
	}
	m, err := inproc.New(inproc.Options{
		Dir: t.TempDir(), Size: n, ReclaimAfter: reclaimAfter, Tune: gossip.QuickTimings,
		Clock: func(i int) clock.Clock { return clocks[i] },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for i := 0; i < n; i++ {
		var join []int
		if i > 0 {
			join = []int{rng.IntN(i)}
		}
		if _, err := m.Start(ctx, i, join...); err != nil {
			t.Fatal(err)
		}
	}
	c := &checker{t: t, m: m, seed: seed, ctx: ctx}
	c.converged(0)
	// Addresses in use on every router before the clocks move.
	for i := 0; i < n; i++ {
		for k := 0; k < 2; k++ {
			if _, err := inproc.Allocate(ctx, m.Router(i), fmt.Sprintf("ep-%d-%d", i, k)); err != nil {
				c.fail(0, "allocate on router %d: %v", i, err)
			}
		}
	}
	c.since = c.memberSince()

	for step := 1; step <= 6; step++ {
		jumped := rng.Perm(n)[:1+rng.IntN(2)]
		for _, i := range jumped {
			d := time.Hour + time.Duration(rng.IntN(60))*time.Minute
			if rng.IntN(2) == 0 {
				d = -d
			}
			clocks[i].Jump(d)
			t.Logf("seed %d step %d: router %d clock %+v (now %+v off)", seed, step, i, d, clocks[i].Offset())
		}
		// Long enough for every router to tick (IP allocation, membership
		// rounds) several times on its stepped clock.
		time.Sleep(3 * time.Second)
		owner := fmt.Sprintf("step-%d", step)
		if _, err := inproc.Allocate(ctx, m.Router(jumped[0]), owner); err != nil {
			c.fail(step, "allocate on router %d after its clock jumped: %v", jumped[0], err)
		}
		c.converged(step)
		c.noneDeclaredDead(step)
		c.noAddressTwice(step)
		c.dnsAndTopologySpread(step, rng)
	}
}

// checker checks the invariants and names the seed and step of a failure.
type checker struct {
	t     *testing.T
	m     *inproc.Mesh
	seed  uint64
	ctx   context.Context
	since map[[2]peer.Name]time.Time // (observer, member) -> Since
}

func (c *checker) fail(step int, format string, args ...any) {
	c.t.Helper()
	c.t.Fatalf("seed %d step %d: %s", c.seed, step, fmt.Sprintf(format, args...))
}

func (c *checker) all() []peer.Name {
	var out []peer.Name
	for _, i := range c.m.Running() {
		out = append(out, c.m.Name(i))
	}
	return out
}

// eventually polls ok for up to 20 seconds.
func (c *checker) eventually(step int, what string, ok func() (bool, string)) {
	c.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		good, why := ok()
		if good {
			return
		}
		if time.Now().After(deadline) {
			c.fail(step, "%s: %s", what, why)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *checker) converged(step int) {
	c.t.Helper()
	all := c.all()
	c.eventually(step, "every router sees every router", func() (bool, string) {
		for _, i := range c.m.Running() {
			if !inproc.Sees(c.m.Router(i), all) {
				return false, fmt.Sprintf("router %d does not", i)
			}
		}
		return true, ""
	})
}

// memberSince records when each router saw each member change state.
func (c *checker) memberSince() map[[2]peer.Name]time.Time {
	out := map[[2]peer.Name]time.Time{}
	for _, i := range c.m.Running() {
		for _, mb := range c.m.Router(i).Gossip().Members() {
			out[[2]peer.Name{c.m.Name(i), mb.Name}] = mb.Since
		}
	}
	return out
}

// noneDeclaredDead: every live router is alive everywhere and has not
// changed state since the mesh formed (a death and return would have).
func (c *checker) noneDeclaredDead(step int) {
	c.t.Helper()
	for _, i := range c.m.Running() {
		for _, mb := range c.m.Router(i).Gossip().Members() {
			if mb.State != gossip.Alive {
				c.fail(step, "router %d lists live peer %s as %s", i, mb.Name, mb.State)
			}
			if was, ok := c.since[[2]peer.Name{c.m.Name(i), mb.Name}]; ok && !mb.Since.Equal(was) {
				c.fail(step, "router %d saw live peer %s change state (since %s, was %s)", i, mb.Name, mb.Since, was)
			}
		}
	}
}

// noAddressTwice: no address is allocated on two routers, and the
// routers' own shares of the range do not overlap (their sizes add up to
// at most the range, and every router agrees on every share).
func (c *checker) noAddressTwice(step int) {
	c.t.Helper()
	c.eventually(step, "address ownership", func() (bool, string) {
		holder := map[string]int{}
		var own uint64
		var size uint64
		shares := map[string]uint32{} // peer -> addresses, as its owner says
		for _, i := range c.m.Running() {
			st, err := inproc.IPAMStatus(c.ctx, c.m.Router(i))
			if err != nil {
				return false, err.Error()
			}
			p, err := netip.ParsePrefix(st.Range)
			if err != nil {
				return false, err.Error()
			}
			size = 1 << (32 - p.Bits())
			for _, a := range st.Allocations {
				if j, dup := holder[a.Address]; dup && j != i {
					c.fail(step, "address %s allocated on routers %d and %d", a.Address, j, i)
				}
				holder[a.Address] = i
			}
			for _, s := range st.Peers {
				if s.Self {
					own += uint64(s.Addresses)
					shares[s.Name] = s.Addresses
				}
			}
		}
		if own > size {
			c.fail(step, "the routers own %d addresses of a range of %d: some are owned twice", own, size)
		}
		for _, i := range c.m.Running() {
			st, err := inproc.IPAMStatus(c.ctx, c.m.Router(i))
			if err != nil {
				return false, err.Error()
			}
			for _, s := range st.Peers {
				if want, ok := shares[s.Name]; ok && s.Addresses != want {
					return false, fmt.Sprintf("router %d thinks %s owns %d addresses; it says %d", i, s.Name, s.Addresses, want)
				}
			}
		}
		return true, ""
	})
}

// dnsAndTopologySpread: a record and a link going down, made on random
// routers, reach every router.
func (c *checker) dnsAndTopologySpread(step int, rng *rand.Rand) {
	c.t.Helper()
	run := c.m.Running()
	src := run[rng.IntN(len(run))]
	name := "jump-" + strconv.Itoa(step)
	ip := netip.AddrFrom4([4]byte{10, 99, 0, byte(step)})
	if err := inproc.AddDNS(c.m.Router(src), name, ip); err != nil {
		c.fail(step, "dns add on router %d: %v", src, err)
	}
	from, to := run[rng.IntN(len(run))], run[rng.IntN(len(run))]
	if from == to {
		to = run[(slices.Index(run, from)+1)%len(run)]
	}
	self, down := c.m.Name(from), c.m.Name(to)
	c.m.Router(from).SetLinksDown([]peer.Name{down})
	c.eventually(step, "DNS and link state reach every router", func() (bool, string) {
		for _, i := range run {
			r := c.m.Router(i)
			got, err := inproc.LookupDNS(r, name)
			if err != nil {
				return false, err.Error()
			}
			if !slices.Contains(got, ip.String()) {
				return false, fmt.Sprintf("router %d does not answer %s", i, name)
			}
			e, ok := r.Topology().Entry(self)
			if !ok || !slices.Equal(e.Down, []peer.Name{down}) {
				return false, fmt.Sprintf("router %d does not see router %d's link to %d down", i, from, to)
			}
		}
		return true, ""
	})
	c.m.Router(from).SetLinksDown(nil)
}
