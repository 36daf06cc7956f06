package chaos

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"weavemesh.dev/weave/test/harness"
)

// TestBigMesh starts CHAOS_BIG full routers (CHAOS_BIG=1 means 20), each
// with a container, and checks that they form a full mesh, split the
// range, agree on DNS, and that containers ping across it. On demand only.
func TestBigMesh(t *testing.T) {
	n := envInt(t, "CHAOS_BIG", 0)
	if n == 0 {
		t.Skip("set CHAOS_BIG=1 (20 routers) or CHAOS_BIG=N to run the big mesh")
	}
	if n == 1 {
		n = 20
	}
	seed := uint64(envInt(t, "CHAOS_SEED", ciSeed))
	start := time.Now()
	w := newWorld(t, seed, n, n)
	formed := time.Since(start)
	w.stepName = "big mesh"
	for _, h := range w.cl.Hosts {
		if _, err := w.attach(h); err != nil {
			w.fatalf("%v", err)
		}
	}
	attached := time.Since(start)
	// A ring and as many random pairs: every host sends and receives.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var failed []string
	hs := w.cl.Hosts
	for i, h := range hs {
		for _, o := range []*harness.Host{hs[(i+1)%n], hs[w.rng.IntN(n)]} {
			if o == h {
				continue
			}
			a, b := w.containersOf(h)[0], w.containersOf(o)[0]
			err := harness.Poll(ctx, "ping", func(ctx context.Context) error {
				_, err := a.c.Ping(ctx, b.addr.String(), "-c", "1", "-W", "1")
				return err
			})
			if err != nil {
				failed = append(failed, fmt.Sprintf("%s -> %s: %v", h.Name, o.Name, err))
			}
		}
	}
	if len(failed) > 0 {
		w.failf("%d pairs cannot ping:\n%s", len(failed), strings.Join(failed, "\n"))
	}
	pinged := time.Since(start)
	dns := w.dnsConverges(hs, dnsBound)
	w.checkAddresses(ctx)
	var rssMiB []int64
	for _, h := range hs {
		if r, err := rss(h.RouterPID()); err == nil {
			rssMiB = append(rssMiB, r>>20)
		}
	}
	sort.Slice(rssMiB, func(i, j int) bool { return rssMiB[i] < rssMiB[j] })
	t.Logf("big mesh: %d routers; full mesh and IPAM ready %v after the start, %d attached at %v, %d pairs pinged at %v, DNS agreed %v later; router RSS MiB min %d median %d max %d",
		n, formed.Round(100*time.Millisecond), n, attached.Round(100*time.Millisecond), 2*n, pinged.Round(100*time.Millisecond),
		dns.Round(100*time.Millisecond), rssMiB[0], rssMiB[len(rssMiB)/2], rssMiB[len(rssMiB)-1])
}
