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

// tinyRange is a /28: 14 addresses to hand out, so tests can exhaust it.
var tinyRange = netip.MustParsePrefix("10.41.0.0/28")

const tinyUsable = 14

// TestIPAMReadmeExample: the README's example as a user types it, on 2
// and on 3 hosts: every host runs `weave launch` naming every host, itself
// included, and an attach with no address succeeds on every host within
// 10 s of the last launch.
func TestIPAMReadmeExample(t *testing.T) {
	for _, n := range []int{2, 3} {
		t.Run(fmt.Sprintf("%d hosts", n), func(t *testing.T) {
			cl := newCluster(t, harness.Options{Hosts: n})
			var all []string
			for _, h := range cl.Hosts {
				all = append(all, h.IP.String())
			}
			for _, h := range cl.Hosts {
				if out, err := h.Launch(all...); err != nil {
					t.Fatalf("%s: %v: %s", h.Name, err, out)
				}
			}
			launched := time.Now()
			var wg sync.WaitGroup
			errs := make([]error, n)
			took := make([]time.Duration, n)
			for i, h := range cl.Hosts {
				c, err := h.AddContainer(fmt.Sprintf("rd%d", h.Index))
				if err != nil {
					t.Fatal(err)
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, errs[i] = attachAuto(c)
					took[i] = time.Since(launched)
				}()
			}
			wg.Wait()
			for i, h := range cl.Hosts {
				if errs[i] != nil {
					st, _ := ipamStatus(h)
					t.Fatalf("%s: %v (ipam: %s %s)", h.Name, errs[i], st.Reason, st.Consensus)
				}
				if took[i] > 10*time.Second {
					t.Errorf("%s: the attach succeeded %s after the last launch, want within 10s", h.Name, took[i].Round(100*time.Millisecond))
				}
				t.Logf("%s allocated %s after the last launch", h.Name, took[i].Round(100*time.Millisecond))
			}
			if got := checkUnique(t, cl.Hosts); got != n {
				t.Errorf("%d distinct addresses, want %d", got, n)
			}
		})
	}
}

// startTiny starts 3 routers splitting tinyRange with a short reclaim
// timeout.
func startTiny(t *testing.T, reclaim time.Duration) *harness.Cluster {
	t.Helper()
	return startIPAM(t, 3, "--ipalloc-range="+tinyRange.String(), "--ipalloc-reclaim-after="+reclaim.String())
}

// attachNew attaches a new container on h with an allocated address.
func attachNew(t *testing.T, h *harness.Host, name string) (netip.Addr, error) {
	t.Helper()
	c, err := h.AddContainer(name)
	if err != nil {
		t.Fatal(err)
	}
	ps, err := attachAuto(c)
	if err != nil {
		return netip.Addr{}, err
	}
	return ps[0].Addr(), nil
}

// waitIPAMSettled waits until every host's view satisfies ok.
func waitIPAMSettled(t *testing.T, hosts []*harness.Host, timeout time.Duration, what string, ok func(h *harness.Host, st api.IPAMStatus) error) {
	t.Helper()
	err := harness.PollFor(timeout, what, func(context.Context) error {
		for _, h := range hosts {
			st, err := ipamStatus(h)
			if err != nil {
				return err
			}
			if err := ok(h, st); err != nil {
				return fmt.Errorf("%s: %w", h.Name, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func selfName(t *testing.T, h *harness.Host) string {
	t.Helper()
	st, err := ipamStatus(h)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range st.Peers {
		if p.Self {
			return p.Name
		}
	}
	t.Fatalf("%s: no self in IPAM status", h.Name)
	return ""
}

// exhaust attaches containers on the hosts in turn until each says
// "exhausted", and returns how many it attached.
func exhaust(t *testing.T, hosts []*harness.Host, tag string) int {
	t.Helper()
	n := 0
	full := map[*harness.Host]bool{}
	for i := 0; len(full) < len(hosts); i++ {
		h := hosts[i%len(hosts)]
		if full[h] {
			continue
		}
		_, err := attachNew(t, h, fmt.Sprintf("%s%d", tag, i))
		switch {
		case err == nil:
			n++
		case strings.Contains(err.Error(), "exhausted") && strings.Contains(err.Error(), tinyRange.String()):
			full[h] = true
		default:
			t.Fatalf("%s: attach %d: %v (want success or exhausted naming %s)", h.Name, i, err, tinyRange)
		}
		if i > 4*tinyUsable {
			t.Fatal("too many attaches")
		}
	}
	return n
}

// TestIPAMSurvivorsExhaustRange: on a /28, one host is SIGKILLed and never
// comes back. After the reclaim timeout and the quarantine the survivors
// hand out every remaining address with no error, and the next attach is
// refused as exhausted, naming the subnet.
func TestIPAMSurvivorsExhaustRange(t *testing.T) {
	const reclaim = 15 * time.Second
	cl := startTiny(t, reclaim)
	h1, h2, h3 := cl.Host(1), cl.Host(2), cl.Host(3)
	if _, err := attachNew(t, h3, "gone1"); err != nil {
		t.Fatal(err)
	}
	dead := selfName(t, h3)
	if err := h3.Kill(); err != nil {
		t.Fatal(err)
	}
	survivors := []*harness.Host{h1, h2}
	waitIPAMSettled(t, survivors, 2*ipamTimeout, "host3's space reclaimed and out of quarantine", func(h *harness.Host, st api.IPAMStatus) error {
		for _, p := range st.Peers {
			if p.Name == dead && p.Addresses > 0 {
				return fmt.Errorf("host3 still owns %d addresses", p.Addresses)
			}
		}
		if st.Quarantined > 0 {
			return fmt.Errorf("%d addresses in quarantine until %s", st.Quarantined, st.QuarantineUntil)
		}
		return nil
	})
	got := exhaust(t, survivors, "x")
	if n := checkUnique(t, survivors); n != tinyUsable {
		t.Errorf("survivors hold %d distinct addresses (%d attached now), want all %d", n, got, tinyUsable)
	}
}

// TestIPAMPartitionPastReclaim: host3, with live containers, is cut off
// for three times the reclaim timeout while hosts 1 and 2 allocate. After
// the heal every host allocates until exhausted: no address is held
// twice, and host3's containers keep theirs.
func TestIPAMPartitionPastReclaim(t *testing.T) {
	const reclaim = 15 * time.Second
	cl := startTiny(t, reclaim)
	h1, h2, h3 := cl.Host(1), cl.Host(2), cl.Host(3)
	var kept []netip.Addr
	for i := range 3 {
		a, err := attachNew(t, h3, fmt.Sprintf("live%d", i))
		if err != nil {
			t.Fatal(err)
		}
		kept = append(kept, a)
	}
	cut := time.Now()
	for _, h := range []*harness.Host{h1, h2} {
		if err := cl.Cut(h, h3); err != nil {
			t.Fatal(err)
		}
	}
	// Once host3's space is reclaimed, hosts 1 and 2 allocate.
	w := selfName(t, h3)
	waitIPAMSettled(t, []*harness.Host{h1}, 2*ipamTimeout, "host3's space reclaimed", func(h *harness.Host, st api.IPAMStatus) error {
		for _, p := range st.Peers {
			if p.Name == w && p.Addresses > 0 {
				return fmt.Errorf("host3 still owns %d addresses", p.Addresses)
			}
		}
		return nil
	})
	for _, h := range []*harness.Host{h1, h2} {
		if _, err := attachNew(t, h, fmt.Sprintf("during%d", h.Index)); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(time.Until(cut.Add(3 * reclaim)))
	for _, h := range []*harness.Host{h1, h2} {
		if err := cl.Heal(h, h3); err != nil {
			t.Fatal(err)
		}
	}
	waitMesh(t, cl)
	waitIPAMSettled(t, cl.Hosts, 2*ipamTimeout, "host3 claimed its addresses back", func(h *harness.Host, st api.IPAMStatus) error {
		if st.PendingClaims > 0 {
			return fmt.Errorf("%d addresses still being claimed back", st.PendingClaims)
		}
		if !st.Ready {
			return fmt.Errorf("not ready: %s", st.Reason)
		}
		return nil
	})
	exhaust(t, cl.Hosts, "y")
	if n := checkUnique(t, cl.Hosts); n != tinyUsable {
		t.Errorf("%d distinct addresses in use, want all %d", n, tinyUsable)
	}
	st, err := ipamStatus(h3)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range kept {
		found := false
		for _, al := range st.Allocations {
			found = found || al.Address == a.String()
		}
		if !found {
			t.Errorf("host3 no longer records %s, which its container holds", a)
		}
	}
	for _, c := range st.AddressConflicts {
		t.Errorf("conflict reported: %s", c)
	}
}

// TestIPAMLoneRouterJoins: a host re-installed with an empty data dir and
// started alone splits the range only among itself and hands out an
// address. When it is then connected to the mesh it gives its ring up for
// the mesh's by itself, keeps its container's address (claimed back from
// the mesh), and allocates on from the mesh's ring; no CONFLICT is left.
func TestIPAMLoneRouterJoins(t *testing.T) {
	cl := newCluster(t, harness.Options{Hosts: 3})
	h1, h2, h3 := cl.Host(1), cl.Host(2), cl.Host(3)
	for _, h := range []*harness.Host{h1, h3} {
		if err := h.StartRouter("--ipalloc-init=consensus=2", h1.IP.String(), h3.IP.String()); err != nil {
			t.Fatal(err)
		}
	}
	if err := h2.StartRouter(); err != nil { // alone: it claims the range itself
		t.Fatal(err)
	}
	lone, err := attachNew(t, h2, "lone1")
	if err != nil {
		t.Fatal(err)
	}
	waitIPAMReady(t, []*harness.Host{h1, h3}, 2)
	if _, err := h2.Weave("connect", h1.IP.String()); err != nil {
		t.Fatal(err)
	}
	waitMesh(t, cl)
	s1, err := ipamStatus(h1)
	if err != nil {
		t.Fatal(err)
	}
	name2 := selfName(t, h2)
	waitIPAMSettled(t, cl.Hosts, ipamTimeout, "host2 on the mesh's ring with its address", func(h *harness.Host, st api.IPAMStatus) error {
		switch {
		case st.RingID != s1.RingID:
			return fmt.Errorf("ring %s, the mesh's is %s", st.RingID, s1.RingID)
		case len(st.Conflicts) > 0 || len(st.AddressConflicts) > 0:
			return fmt.Errorf("conflicts: %v %v", st.Conflicts, st.AddressConflicts)
		case st.PendingClaims > 0:
			return fmt.Errorf("%d addresses still being claimed back", st.PendingClaims)
		}
		for _, p := range st.Peers {
			if p.Name == name2 && p.Addresses == 0 {
				return fmt.Errorf("host2 owns nothing yet")
			}
		}
		return nil
	})
	st2, err := ipamStatus(h2)
	if err != nil {
		t.Fatal(err)
	}
	if st2.Counters.RingsAdopted != 1 {
		t.Errorf("host2 adopted %d rings, want 1", st2.Counters.RingsAdopted)
	}
	found := false
	for _, a := range st2.Allocations {
		found = found || a.Address == lone.String()
	}
	if !found {
		t.Errorf("host2 no longer records %s", lone)
	}
	ps := attachMany(t, cl.Hosts, 2, "j")
	if n := checkUnique(t, cl.Hosts); n != 7 {
		t.Errorf("%d distinct addresses, want 7", n)
	}
	pingPairs(t, ps, time.Minute)
}
