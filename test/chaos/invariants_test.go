package chaos

import (
	"bufio"
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"weavemesh.dev/weave/api"
	"weavemesh.dev/weave/test/harness"
)

func ipamStatus(ctx context.Context, h *harness.Host) (api.IPAMStatus, error) {
	var st api.IPAMStatus
	err := h.WeaveJSON(ctx, &st, "status", "ipam", "--json")
	return st, err
}

func dnsStatus(ctx context.Context, h *harness.Host) (api.DNSStatus, error) {
	var st api.DNSStatus
	err := h.WeaveJSON(ctx, &st, "status", "dns", "--json")
	return st, err
}

// checkAddresses is the address invariant, on the routers that run: no
// address is on two live endpoints, none is allocated to two holders, no
// router reports an address conflict, each router's view of the range
// adds up to the range (two owners of one address would make it more),
// and every container the routers acknowledged is still listed by its
// router (`weave ps`) with its address, and nothing else is.
func (w *world) checkAddresses(ctx context.Context) {
	w.t.Helper()
	live := map[netip.Addr]string{}
	// A stopped router's containers keep their addresses: nobody else may
	// be given one.
	for _, h := range w.cl.Hosts {
		if !h.RouterRunning() {
			for _, k := range w.containersOf(h) {
				live[k.addr] = h.Name + " (stopped) " + k.name
			}
		}
	}
	for _, h := range w.running() {
		eps, err := h.Endpoints()
		if err != nil {
			w.failf("%s: weave ps: %v", h.Name, err)
			continue
		}
		listed := map[netip.Addr]bool{}
		for _, e := range eps {
			for _, c := range e.CIDRs {
				p, err := netip.ParsePrefix(c)
				if err != nil {
					w.failf("%s: endpoint %s has address %q", h.Name, e.Netns, c)
					continue
				}
				where := h.Name + " " + e.Netns
				if prev, dup := live[p.Addr()]; dup {
					w.failf("%s is live twice: %s and %s", p.Addr(), prev, where)
				}
				live[p.Addr()] = where
				listed[p.Addr()] = true
			}
		}
		mine := map[string]bool{}
		for _, k := range w.containersOf(h) {
			mine[k.c.NS.Name] = true
			if !listed[k.addr] {
				w.failf("%s: weave ps lacks acknowledged %s (%s)", h.Name, k.name, k.addr)
			}
		}
		for _, e := range eps {
			if !mine[filepath.Base(e.Netns)] {
				w.failf("%s: weave ps lists %s %v, which no acknowledged attach made (or a detach removed)", h.Name, e.Netns, e.CIDRs)
			}
		}
		st, err := ipamStatus(ctx, h)
		if err != nil {
			w.failf("%s: weave status ipam: %v", h.Name, err)
			continue
		}
		if len(st.AddressConflicts) > 0 {
			w.failf("%s reports address conflicts: %v", h.Name, st.AddressConflicts)
		}
		held := map[string]string{}
		for _, a := range st.Allocations {
			if prev, dup := held[a.Address]; dup && prev != a.Owner {
				w.failf("%s: %s allocated to %s and %s", h.Name, a.Address, prev, a.Owner)
			}
			held[a.Address] = a.Owner
		}
		if st.Ready {
			if r, err := netip.ParsePrefix(st.Range); err == nil {
				var sum uint64
				for _, p := range st.Peers {
					sum += uint64(p.Addresses)
				}
				if size := uint64(1) << (32 - r.Bits()); sum > size {
					w.failf("%s: its peers own %d addresses of the %d in %s: some are owned twice", h.Name, sum, size, r)
				}
			}
		}
	}
}

// dnsConverges waits until every router in hs answers with exactly the
// names of the containers attached on hs, and returns how long it took.
func (w *world) dnsConverges(hs []*harness.Host, bound time.Duration) time.Duration {
	w.t.Helper()
	var want []string
	for _, h := range hs {
		for _, k := range w.containersOf(h) {
			want = append(want, k.name+".weave.local.="+k.addr.String())
		}
	}
	slices.Sort(want)
	start := time.Now()
	var mismatch error // the last disagreement, which a call cut short by the deadline would hide
	err := harness.PollFor(bound, "DNS to agree", func(ctx context.Context) error {
		for _, h := range hs {
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			t0 := time.Now()
			st, err := dnsStatus(cctx, h)
			cancel()
			if err != nil {
				return fmt.Errorf("%s: weave status dns failed after %v: %w", h.Name, time.Since(t0).Round(time.Millisecond), err)
			}
			var got, hidden []string
			for _, e := range st.Entries {
				if !e.Hidden {
					got = append(got, e.Name+"="+e.Address)
				} else {
					hidden = append(hidden, e.Name+"="+e.Address+"@"+e.Nickname)
				}
			}
			slices.Sort(got)
			if !slices.Equal(got, want) {
				mismatch = fmt.Errorf("%s has %d entries %v (and hidden %v), want %d %v", h.Name, len(got), got, hidden, len(want), want)
				return mismatch
			}
		}
		return nil
	})
	if err != nil {
		w.failf("DNS not converged within %v: %v (last disagreement: %v)", bound, err, mismatch)
		for _, h := range hs {
			w.t.Logf("%s gossip counters:\n%s", h.Name, gossipMetrics(h))
		}
	}
	return time.Since(start)
}

// goroutines returns the router's goroutine count, from its pprof
// endpoint on loopback inside the host.
func goroutines(ctx context.Context, h *harness.Host) (int, error) {
	out, err := h.Output(ctx, "curl", "-sS", "--max-time", "10", "http://127.0.0.1:6784/debug/pprof/goroutine?debug=1")
	if err != nil {
		return 0, fmt.Errorf("%s: goroutine profile: %w", h.Name, err)
	}
	first, _, _ := strings.Cut(out, "\n")
	n, err := strconv.Atoi(strings.TrimPrefix(first, "goroutine profile: total "))
	if err != nil {
		return 0, fmt.Errorf("%s: goroutine profile starts %q", h.Name, first)
	}
	return n, nil
}

// noLeak waits for h's goroutine count to come back to within leakSlack
// of before.
func (w *world) noLeak(h *harness.Host, before int) {
	w.t.Helper()
	var now int
	err := harness.PollFor(30*time.Second, h.Name+" goroutines back", func(ctx context.Context) error {
		var err error
		if now, err = goroutines(ctx, h); err != nil {
			return err
		}
		if now > before+leakSlack {
			return fmt.Errorf("%d goroutines, %d before", now, before)
		}
		return nil
	})
	if err != nil {
		w.failf("goroutine leak: %v", err)
	}
}

// rss returns the resident memory of a process, in bytes.
func rss(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("pid %d: no VmRSS", pid)
}

// gossipMetrics returns the router's gossip metrics, for reports.
func gossipMetrics(h *harness.Host) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := h.Output(ctx, "curl", "-sS", "--max-time", "5", "http://127.0.0.1:6782/metrics")
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "weave_gossip") || strings.HasPrefix(l, "weave_dns") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}
