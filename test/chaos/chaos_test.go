package chaos

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The CI run: every fault kind once, in the order seed 1 gives, on 5
// routers. About 2-3 minutes on the 2-core test machine.
const (
	ciSeed  = 1
	ciHosts = 5
)

// envInt reads a positive integer from the environment, def when unset.
func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		t.Fatalf("%s=%q: want a positive integer", name, s)
	}
	return n
}

// envDuration reads a duration from the environment, 0 when unset.
func envDuration(t *testing.T, name string) time.Duration {
	t.Helper()
	s := os.Getenv(name)
	if s == "" {
		return 0
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		t.Fatalf("%s=%q: want a duration such as 90s or 1h", name, s)
	}
	return d
}

// TestChaos runs a seeded sequence of faults on a mesh of full routers
// with containers attached, checking the invariants after every step.
//
//	CHAOS_SEED=N       the sequence (default 1, the CI run)
//	CHAOS_STEPS=N      how many steps (default one of each kind)
//	CHAOS_DURATION=D   instead, steps until D has passed
//	CHAOS_HOSTS=N      routers, 2-10 (default 5)
//	CHAOS_FAULTS=a,b   only these kinds (default all: partition, loss,
//	                   kill, full-disk, flood, churn)
func TestChaos(t *testing.T) {
	seed := uint64(envInt(t, "CHAOS_SEED", ciSeed))
	kinds, err := selectFaults(os.Getenv("CHAOS_FAULTS"))
	if err != nil {
		t.Fatalf("CHAOS_FAULTS: %v", err)
	}
	steps := envInt(t, "CHAOS_STEPS", len(kinds))
	hosts := envInt(t, "CHAOS_HOSTS", ciHosts)
	if hosts < 2 || hosts > 10 {
		t.Fatalf("CHAOS_HOSTS=%d: want 2-10", hosts)
	}
	var until time.Time
	if d := envDuration(t, "CHAOS_DURATION"); d > 0 {
		until, steps = time.Now().Add(d), 0
	}
	t.Logf("chaos: seed %d, %d hosts, faults %v; rerun with CHAOS_SEED=%d", seed, hosts, faultNames(kinds), seed)
	w := newWorld(t, seed, hosts, hosts)
	for _, h := range w.cl.Hosts {
		for range 2 {
			if _, err := w.attach(h); err != nil {
				w.fatalf("%v", err)
			}
		}
	}
	w.trafficResumes(w.cl.Hosts, trafficBound)
	w.dnsConverges(w.cl.Hosts, dnsBound)
	w.run(kinds, steps, until)
	if t.Failed() {
		fmt.Fprintf(os.Stderr, "chaos: failed; reproduce with CHAOS_SEED=%d CHAOS_STEPS=%d CHAOS_HOSTS=%d CHAOS_FAULTS=%s go test -v -run TestChaos ./test/chaos/\n",
			seed, w.step, hosts, strings.Join(faultNames(kinds), ","))
	}
}
