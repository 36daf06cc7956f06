package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"weavemesh.dev/weave/api"
	"weavemesh.dev/weave/test/harness"
)

// ipamTimeout bounds waits for the ring to form or change.
const ipamTimeout = 60 * time.Second

// startIPAM starts a router on every host with the given extra flags: host1
// first with no peers, the others joining it, all waiting for consensus
// among the three (so each owns a share).
func startIPAM(t *testing.T, hosts int, flags ...string) *harness.Cluster {
	t.Helper()
	cl := newCluster(t, harness.Options{Hosts: hosts})
	for _, h := range cl.Hosts {
		args := append([]string{fmt.Sprintf("--ipalloc-init=consensus=%d", hosts)}, flags...)
		if err := h.StartRouter(append(args, routerArgs(cl, h)...)...); err != nil {
			t.Fatalf("start router on %s: %v", h.Name, err)
		}
	}
	waitMesh(t, cl)
	waitIPAMReady(t, cl.Hosts, hosts)
	return cl
}

func ipamStatus(h *harness.Host) (api.IPAMStatus, error) {
	ctx, cancel := context.WithTimeout(context.Background(), harness.CLITimeout)
	defer cancel()
	var st api.IPAMStatus
	err := h.WeaveJSON(ctx, &st, "status", "ipam", "--json")
	return st, err
}

// waitIPAMReady waits until every host can allocate and sees owners peers
// owning space.
func waitIPAMReady(t *testing.T, hosts []*harness.Host, owners int) {
	t.Helper()
	err := harness.PollFor(ipamTimeout, "IPAM ready everywhere", func(context.Context) error {
		for _, h := range hosts {
			st, err := ipamStatus(h)
			if err != nil {
				return err
			}
			if !st.Ready {
				return fmt.Errorf("%s: not ready: %s", h.Name, st.Reason)
			}
			n := 0
			for _, p := range st.Peers {
				if p.Addresses > 0 {
					n++
				}
			}
			if n != owners {
				return fmt.Errorf("%s: %d peers own space, want %d: %+v", h.Name, n, owners, st.Peers)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// attachAuto attaches c with the given items (none: an allocated address)
// and returns its addresses.
func attachAuto(c *harness.Container, items ...string) ([]netip.Prefix, error) {
	args := append([]string{"attach"}, items...)
	out, err := c.Host.Weave(append(args, c.NS.Name)...)
	if err != nil {
		return nil, fmt.Errorf("%s: weave attach: %w", c.Name, err)
	}
	f := strings.Fields(out)
	if len(f) < 3 {
		return nil, fmt.Errorf("%s: weave attach printed %q", c.Name, out)
	}
	var ps []netip.Prefix
	for _, s := range strings.Split(f[2], ",") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("%s: weave attach printed %q", c.Name, out)
		}
		ps = append(ps, p)
	}
	return ps, nil
}

type placed struct {
	c    *harness.Container
	addr netip.Addr
}

// attachMany creates n containers per host and attaches them all at once,
// each with an allocated address.
func attachMany(t *testing.T, hosts []*harness.Host, n int, tag string) []placed {
	t.Helper()
	var (
		mu   sync.Mutex
		out  []placed
		errs []string
		wg   sync.WaitGroup
	)
	for _, h := range hosts {
		for i := 1; i <= n; i++ {
			c, err := h.AddContainer(fmt.Sprintf("%s%d%02d", tag, h.Index, i))
			if err != nil {
				t.Fatal(err)
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				ps, err := attachAuto(c)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, err.Error())
					return
				}
				out = append(out, placed{c, ps[0].Addr()})
			}()
		}
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d attaches failed:\n%s", len(errs), strings.Join(errs, "\n"))
	}
	return out
}

// checkUnique fails on an address given twice, looking at every host's
// endpoints.
func checkUnique(t *testing.T, hosts []*harness.Host) int {
	t.Helper()
	seen := map[netip.Addr]string{}
	for _, h := range hosts {
		eps, err := h.Endpoints()
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range eps {
			for _, c := range e.CIDRs {
				p, err := netip.ParsePrefix(c)
				if err != nil {
					t.Fatalf("%s: endpoint %s has address %q", h.Name, e.Netns, c)
				}
				where := h.Name + " " + e.Netns
				if prev, dup := seen[p.Addr()]; dup {
					t.Errorf("%s given twice: %s and %s", p.Addr(), prev, where)
				}
				seen[p.Addr()] = where
			}
		}
	}
	return len(seen)
}

// pingPairs has every placed container ping every other at the address it
// was given.
func pingPairs(t *testing.T, ps []placed, timeout time.Duration) {
	t.Helper()
	addrs := map[*harness.Container]string{}
	var ctrs []*harness.Container
	for _, p := range ps {
		addrs[p.c] = p.addr.String()
		ctrs = append(ctrs, p.c)
	}
	pingEach(t, ctrs, func(c *harness.Container) string { return addrs[c] }, timeout)
}

// TestIPAMConcurrentAttach: three hosts split the range by consensus; 30
// containers attached at once with no address get unique addresses in the
// default range and all reach each other. Detach releases the address.
func TestIPAMConcurrentAttach(t *testing.T) {
	cl := startIPAM(t, 3)
	ps := attachMany(t, cl.Hosts, 10, "a")
	if n := checkUnique(t, cl.Hosts); n != 30 {
		t.Errorf("%d distinct addresses, want 30", n)
	}
	rng := netip.MustParsePrefix("10.32.0.0/12")
	for _, p := range ps {
		if !rng.Contains(p.addr) {
			t.Errorf("%s got %s, outside %s", p.c.Name, p.addr, rng)
		}
	}
	pingPairs(t, ps, 2*time.Minute)

	// net:CIDR allocates in that subnet; detach gives the address back.
	h1 := cl.Host(1)
	c, err := h1.AddContainer("asub")
	if err != nil {
		t.Fatal(err)
	}
	got, err := attachAuto(c, "net:10.32.200.0/24")
	if err != nil {
		t.Fatal(err)
	}
	if sub := netip.MustParsePrefix("10.32.200.0/24"); len(got) != 1 || got[0].Bits() != 24 || !sub.Contains(got[0].Addr()) {
		t.Errorf("net:10.32.200.0/24 gave %v", got)
	}
	if err := c.Detach(); err != nil {
		t.Fatal(err)
	}
	st, err := ipamStatus(h1)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range st.Allocations {
		if a.Address == got[0].Addr().String() {
			t.Errorf("after detach, %s is still allocated to %s", a.Address, a.Owner)
		}
	}

	// expose gives the host an address that reaches the containers.
	out, err := h1.Weave("expose")
	if err != nil {
		t.Fatalf("weave expose: %v", err)
	}
	hostAddr, err := netip.ParsePrefix(strings.TrimSpace(out))
	if err != nil {
		t.Fatalf("weave expose printed %q", out)
	}
	if err := ping(ctxFor(t, pingTimeout), ps[len(ps)-1].c, hostAddr.Addr().String()); err != nil {
		t.Errorf("container -> exposed host: %v", err)
	}
	if out, err := h1.Weave("hide"); err != nil || strings.TrimSpace(out) != hostAddr.String() {
		t.Errorf("weave hide: %q, %v; want %s", out, err, hostAddr)
	}
}

// TestIPAMPartition: allocations on both sides of a partition, then heal:
// still unique, and each side allocated from its own share.
func TestIPAMPartition(t *testing.T) {
	cl := startIPAM(t, 3)
	h1, h2, h3 := cl.Host(1), cl.Host(2), cl.Host(3)
	if err := cl.Cut(h1, h3); err != nil {
		t.Fatal(err)
	}
	if err := cl.Cut(h2, h3); err != nil {
		t.Fatal(err)
	}
	err := harness.PollFor(meshTimeout, "host3 to be cut off", func(context.Context) error {
		alive, err := seesAlive(h1, h3.Name)
		if err != nil {
			return err
		}
		if alive {
			return fmt.Errorf("host1 still sees host3")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	attachMany(t, cl.Hosts, 5, "p")
	if err := cl.Heal(h1, h3); err != nil {
		t.Fatal(err)
	}
	if err := cl.Heal(h2, h3); err != nil {
		t.Fatal(err)
	}
	waitMesh(t, cl)
	ps := attachMany(t, cl.Hosts, 2, "q")
	if n := checkUnique(t, cl.Hosts); n != 21 {
		t.Errorf("%d distinct addresses, want 21", n)
	}
	pingPairs(t, ps, 2*time.Minute)
}

// TestIPAMRestart: a router killed and restarted keeps its ring share and
// allocations; its containers keep their addresses and new ones get others.
func TestIPAMRestart(t *testing.T) {
	cl := startIPAM(t, 2)
	h2 := cl.Host(2)
	ps := attachMany(t, cl.Hosts, 3, "r")
	before, err := ipamStatus(h2)
	if err != nil {
		t.Fatal(err)
	}
	if err := h2.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := h2.Restart(); err != nil {
		t.Fatal(err)
	}
	waitMesh(t, cl)
	after, err := ipamStatus(h2)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(after.Allocations) != fmt.Sprint(before.Allocations) {
		t.Errorf("allocations changed across the restart:\nbefore %+v\nafter  %+v", before.Allocations, after.Allocations)
	}
	if after.RingID != before.RingID {
		t.Errorf("ring changed across the restart: %s -> %s", before.RingID, after.RingID)
	}
	more := attachMany(t, []*harness.Host{h2}, 3, "s")
	if n := checkUnique(t, cl.Hosts); n != 9 {
		t.Errorf("%d distinct addresses, want 9", n)
	}
	pingPairs(t, append(ps, more...), time.Minute)
}

// TestIPAMReclaim: a peer killed and never restarted has its space
// reclaimed after --ipalloc-reclaim-after by exactly one survivor, and the
// others allocate from it.
func TestIPAMReclaim(t *testing.T) {
	cl := startIPAM(t, 3, "--ipalloc-reclaim-after=5s")
	h1, h2, h3 := cl.Host(1), cl.Host(2), cl.Host(3)
	gone := attachMany(t, []*harness.Host{h3}, 2, "k")
	st, err := ipamStatus(h3)
	if err != nil {
		t.Fatal(err)
	}
	var dead string
	for _, p := range st.Peers {
		if p.Self {
			dead = p.Name
		}
	}
	if err := h3.Kill(); err != nil {
		t.Fatal(err)
	}
	err = harness.PollFor(2*ipamTimeout, "host3's space reclaimed", func(context.Context) error {
		var total uint64
		for _, h := range []*harness.Host{h1, h2} {
			st, err := ipamStatus(h)
			if err != nil {
				return err
			}
			total = 0
			for _, p := range st.Peers {
				if p.Name == dead && p.Addresses > 0 {
					return fmt.Errorf("%s: host3 still owns %d addresses", h.Name, p.Addresses)
				}
				total += uint64(p.Addresses)
			}
			if total != 1<<20 {
				return fmt.Errorf("%s: owners hold %d addresses, want %d", h.Name, total, 1<<20)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The survivors' rings agree, and they allocate on.
	s1, _ := ipamStatus(h1)
	s2, _ := ipamStatus(h2)
	share := func(st api.IPAMStatus) map[string]uint32 {
		out := map[string]uint32{}
		for _, p := range st.Peers {
			out[p.Name] = p.Addresses
		}
		return out
	}
	if fmt.Sprint(share(s1)) != fmt.Sprint(share(s2)) {
		t.Errorf("survivors disagree on the split: %v vs %v", share(s1), share(s2))
	}
	attachMany(t, []*harness.Host{h1, h2}, 2, "m")
	checkUnique(t, []*harness.Host{h1, h2})

	// The reclaimed space is used again: an allocation inside the small
	// subnet around one of host3's old addresses succeeds on a survivor,
	// and lands in what was host3's share.
	old := gone[0].addr
	sub := netip.PrefixFrom(old, 29).Masked()
	for _, h := range []*harness.Host{h1, h2} {
		c, err := h.AddContainer(fmt.Sprintf("r%d", h.Index))
		if err != nil {
			t.Fatal(err)
		}
		ps, err := attachAuto(c, "net:"+sub.String())
		if err != nil {
			t.Fatalf("allocate in host3's former space %s on %s: %v", sub, h.Name, err)
		}
		if !sub.Contains(ps[0].Addr()) {
			t.Fatalf("%s: asked for %s, got %s", h.Name, sub, ps[0])
		}
		t.Logf("%s allocated %s in host3's former space (host3 had %s)", h.Name, ps[0], old)
	}
	checkUnique(t, []*harness.Host{h1, h2})
}
