package chaos

import (
	"context"
	"encoding/json"
	"os"
	"testing"
	"time"

	"weavemesh.dev/weave/test/harness"
)

// Soak shape: soakHosts hosts, of which soakStart run at first; the others
// join later, and peers leave and come back throughout.
const (
	soakHosts     = 6
	soakStart     = 5
	soakMinUp     = 3  // never fewer routers running
	soakMaxCtrs   = 6  // containers per host at most
	soakTrafficOf = 20 // every this many ticks, traffic and DNS are checked too
)

// soakStats is what a soak did and measured; it is logged as JSON at the
// end (docs/reliability.md records runs).
type soakStats struct {
	Seed        uint64         `json:"seed"`
	Duration    string         `json:"duration"`
	Ticks       int            `json:"ticks"`
	Ops         map[string]int `json:"ops"`
	Checks      int            `json:"invariant_checks"`
	MaxCheck    string         `json:"max_check"`   // longest invariant check
	MaxAttach   string         `json:"max_attach"`  // longest acknowledged attach
	MaxTraffic  string         `json:"max_traffic"` // longest wait for every pair to ping
	MaxDNS      string         `json:"max_dns"`     // longest wait for DNS to agree
	MaxRSSMiB   int64          `json:"max_rss_mib"` // largest router RSS seen
	Goroutines  map[string]int `json:"goroutines_end"`
	Containers  int            `json:"containers_end"`
	FailedSteps int            `json:"failed_steps"`
}

// TestSoak churns a mesh for CHAOS_SOAK (e.g. 1h): containers attached and
// detached, routers stopped and started, killed and restarted, a new peer
// joining, with the address invariant checked every second and traffic
// and DNS every soakTrafficOf seconds. On demand only.
func TestSoak(t *testing.T) {
	d := envDuration(t, "CHAOS_SOAK")
	if d == 0 {
		t.Skip("set CHAOS_SOAK=1h (a duration) to run the soak")
	}
	seed := uint64(envInt(t, "CHAOS_SEED", ciSeed))
	w := newWorld(t, seed, soakHosts, soakStart)
	w.stepName = "soak"
	for _, h := range w.running() {
		if _, err := w.attach(h); err != nil {
			w.fatalf("%v", err)
		}
	}
	st := soakStats{Seed: seed, Ops: map[string]int{}}
	var maxCheck, maxAttach, maxTraffic, maxDNS time.Duration
	start := time.Now()
	end := start.Add(d)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for w.step = 1; time.Now().Before(end); w.step++ {
		<-tick.C
		op := w.soakOp(&maxAttach)
		w.stepName = "soak " + op
		st.Ops[op]++
		c0 := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		w.checkAddresses(ctx)
		cancel()
		st.Checks++
		maxCheck = max(maxCheck, time.Since(c0))
		if w.step%soakTrafficOf == 0 {
			hs := w.running()
			maxTraffic = max(maxTraffic, w.trafficResumes(hs, trafficBound))
			maxDNS = max(maxDNS, w.dnsConverges(hs, dnsBound))
			for _, h := range hs {
				if r, err := rss(h.RouterPID()); err == nil {
					st.MaxRSSMiB = max(st.MaxRSSMiB, r>>20)
				}
			}
			t.Logf("soak: %v in, step %d, %d routers up, ops %v", time.Since(start).Round(time.Second), w.step, len(hs), st.Ops)
		}
		if t.Failed() {
			st.FailedSteps++
			break
		}
	}
	st.Ticks = w.step - 1
	st.Duration = time.Since(start).Round(time.Second).String()
	st.MaxCheck, st.MaxAttach = maxCheck.Round(time.Millisecond).String(), maxAttach.Round(time.Millisecond).String()
	st.MaxTraffic, st.MaxDNS = maxTraffic.Round(time.Millisecond).String(), maxDNS.Round(time.Millisecond).String()
	st.Goroutines = map[string]int{}
	for h, n := range w.goroutinesOf(w.running()) {
		st.Goroutines[h.Name] = n
	}
	for _, h := range w.cl.Hosts {
		st.Containers += len(w.containersOf(h))
	}
	b, _ := json.Marshal(st)
	t.Logf("soak result: %s", b)
	if p := os.Getenv("CHAOS_SOAK_REPORT"); p != "" {
		if err := os.WriteFile(p, append(b, '\n'), 0o644); err != nil {
			t.Error(err)
		}
	}
}

// soakOp performs one random churn operation and names it.
func (w *world) soakOp(maxAttach *time.Duration) string {
	up := w.running()
	var down []*harness.Host
	for _, h := range w.cl.Hosts {
		if !h.RouterRunning() {
			down = append(down, h)
		}
	}
	r := w.rng.IntN(100)
	switch {
	case r < 45:
		h := pick(w, up)
		if len(w.containersOf(h)) >= soakMaxCtrs {
			return w.soakDetach(h)
		}
		t0 := time.Now()
		if _, err := w.attach(h); err != nil {
			w.failf("attach on %s: %v", h.Name, err)
		}
		*maxAttach = max(*maxAttach, time.Since(t0))
		return "attach"
	case r < 75:
		return w.soakDetach(pick(w, up))
	case r < 84 && len(up) > soakMinUp:
		h := pick(w, up)
		if err := h.Stop(); err != nil {
			w.failf("stop %s: %v", h.Name, err)
		}
		return "leave"
	case r < 93 && len(down) > 0:
		h := pick(w, down)
		var err error
		if h.RouterPID() == 0 {
			err = h.StartRouter(w.routerArgs(h, soakStart)...) // a peer new to the mesh
		} else {
			err = h.Restart()
		}
		if err != nil {
			w.fatalf("start %s: %v", h.Name, err)
		}
		return "join"
	case r < 97:
		h := pick(w, up)
		if err := h.Kill(); err != nil {
			w.fatalf("%v", err)
		}
		if err := h.Restart(); err != nil {
			w.fatalf("restart %s after SIGKILL: %v", h.Name, err)
		}
		w.allocationsKept(h)
		return "kill"
	}
	return "idle"
}

func (w *world) soakDetach(h *harness.Host) string {
	if err := w.detach(h); err != nil {
		w.failf("detach on %s: %v", h.Name, err)
	}
	return "detach"
}
