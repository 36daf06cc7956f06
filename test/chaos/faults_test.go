package chaos

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"weavemesh.dev/weave/test/harness"
)

// fault is one kind of step: it breaks something, repairs it and checks
// that the mesh recovered within its bounds.
type fault struct {
	name string
	run  func(w *world)
}

var faults = []fault{
	{"partition", (*world).partition},
	{"loss", (*world).loss},
	{"kill", (*world).kill},
	{"full-disk", (*world).fullDisk},
	{"flood", (*world).flood},
	{"churn", (*world).churn},
}

// hold waits out the length of a fault: the fault is the point, not a
// condition to poll for.
func hold(d time.Duration) { time.Sleep(d) }

// goroutinesOf returns the goroutine count of every host in hs.
func (w *world) goroutinesOf(hs []*harness.Host) map[*harness.Host]int {
	w.t.Helper()
	out := map[*harness.Host]int{}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, h := range hs {
		n, err := goroutines(ctx, h)
		if err != nil {
			w.failf("%v", err)
			continue
		}
		out[h] = n
	}
	return out
}

// partition cuts the running routers into two groups for a few seconds,
// allocating on both sides meanwhile, then heals and checks that the
// mesh, traffic and DNS come back and no goroutine stayed behind.
func (w *world) partition() {
	hs := w.running()
	if len(hs) < 2 {
		return
	}
	perm := w.rng.Perm(len(hs))
	k := 1 + w.rng.IntN(len(hs)/2)
	var a, b []*harness.Host
	for i, p := range perm {
		if i < k {
			a = append(a, hs[p])
		} else {
			b = append(b, hs[p])
		}
	}
	// Counted once the mesh has settled, so connections being made after
	// the previous step do not look like a leak.
	before := w.goroutinesOf(hs)
	for _, x := range a {
		for _, y := range b {
			if err := w.cl.Cut(x, y); err != nil {
				w.fatalf("cut: %v", err)
			}
		}
	}
	d := time.Duration(2000+w.rng.IntN(4000)) * time.Millisecond
	w.t.Logf("step %d: partition %v | %v for %v", w.step, names(a), names(b), d)
	for _, side := range [][]*harness.Host{a, b} {
		if _, err := w.attach(pick(w, side)); err != nil {
			w.failf("attach during the partition: %v", err)
		}
	}
	hold(d)
	for _, x := range a {
		for _, y := range b {
			if err := w.cl.Heal(x, y); err != nil {
				w.fatalf("heal: %v", err)
			}
		}
	}
	healed := time.Now()
	w.waitMesh(hs)
	w.trafficResumes(hs, trafficBound)
	traffic := time.Since(healed)
	w.dnsConverges(hs, healDNSBound)
	w.t.Logf("step %d: after the heal, traffic back in %v, DNS agreed in %v",
		w.step, traffic.Round(100*time.Millisecond), time.Since(healed).Round(100*time.Millisecond))
	for h, n := range before {
		w.noLeak(h, n)
	}
}

func names(hs []*harness.Host) []string {
	var out []string
	for _, h := range hs {
		out = append(out, h.Name)
	}
	return out
}

// loss drops 1-30% of the underlay's packets while a TCP transfer and
// pings run, then checks recovery.
func (w *world) loss() {
	hs := w.running()
	pct := 1 + w.rng.IntN(30)
	w.t.Logf("step %d: %d%% underlay loss", w.step, pct)
	if err := w.cl.SetLoss(pct); err != nil {
		w.fatalf("%v", err)
	}
	defer func() {
		if err := w.cl.SetLoss(0); err != nil {
			w.fatalf("%v", err)
		}
	}()
	if err := w.transfer(hs, 2*time.Minute); err != nil {
		w.failf("at %d%% loss: %v", pct, err)
	}
	w.trafficResumes(hs, trafficBound)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if n, err := w.cl.LossDrops(ctx); err != nil || n == 0 {
		w.failf("the loss rule dropped %d packets (%v): it is not on the path", n, err)
	} else {
		w.t.Logf("step %d: the underlay dropped %d packets", w.step, n)
	}
	if err := w.cl.SetLoss(0); err != nil {
		w.fatalf("%v", err)
	}
	w.trafficResumes(hs, trafficBound)
}

// kill attaches a container, SIGKILLs its router as soon as the attach is
// acknowledged, restarts it, and checks that the allocation survived and
// traffic resumes.
func (w *world) kill() {
	hs := w.running()
	h := pick(w, hs)
	k, err := w.attach(h)
	if err != nil {
		w.failf("attach before the kill: %v", err)
	}
	if k != nil {
		w.t.Logf("step %d: SIGKILL %s right after attaching %s at %s", w.step, h.Name, k.name, k.addr)
	}
	if err := h.Kill(); err != nil {
		w.fatalf("%v", err)
	}
	start := time.Now()
	if err := h.Restart(); err != nil {
		w.fatalf("restart after SIGKILL: %v", err)
	}
	w.allocationsKept(h)
	w.waitMesh(hs)
	w.trafficResumes(hs, trafficBound)
	w.dnsConverges(hs, dnsBound)
	w.t.Logf("step %d: %s back, traffic and DNS in %v", w.step, h.Name, time.Since(start).Round(100*time.Millisecond))
}

// allocationsKept checks, after a restart, that h's IPAM holds every
// address h acknowledged (checkAddresses checks its endpoints).
func (w *world) allocationsKept(h *harness.Host) {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := ipamStatus(ctx, h)
	if err != nil {
		w.failf("%v", err)
		return
	}
	held := map[string]bool{}
	for _, a := range st.Allocations {
		held[a.Address] = true
	}
	for _, k := range w.containersOf(h) {
		if !held[k.addr.String()] {
			w.failf("%s: after restart IPAM no longer holds %s of acknowledged %s (holds %d)", h.Name, k.addr, k.name, len(st.Allocations))
		}
	}
	w.checkAddresses(ctx)
}

// fullDisk fills the tmpfs under a router's data dir, asks for an attach
// and a detach (each must either work and be kept, or be refused with a
// clear error and leave nothing behind), frees the space, and checks that
// after a SIGKILL and restart the router has exactly what it acknowledged.
func (w *world) fullDisk() {
	hs := w.running()
	h := pick(w, hs)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	held := func() int {
		st, err := ipamStatus(ctx, h)
		if err != nil {
			w.fatalf("%v", err)
		}
		return len(st.Allocations)
	}
	before := held()
	filler := filepath.Join(h.DataDir(), "filler")
	n, err := fill(filler)
	if err != nil {
		w.fatalf("fill %s: %v", h.DataDir(), err)
	}
	w.t.Logf("step %d: %s data dir full (%d bytes of filler)", w.step, h.Name, n)
	k, err := w.attach(h)
	switch {
	case err == nil:
		w.t.Logf("step %d: attach on a full disk acknowledged %s", w.step, k.addr)
	case !strings.Contains(err.Error(), "space"):
		w.failf("attach on a full disk failed without saying the disk is full: %v", err)
	default:
		w.t.Logf("step %d: attach on a full disk refused: %v", w.step, err)
	}
	if want := before + map[bool]int{true: 1}[err == nil]; held() != want {
		w.failf("%s holds %d allocations after the attach on a full disk, want %d: a refused attach must give its address back", h.Name, held(), want)
	}
	if err := w.detach(h); err != nil {
		w.t.Logf("step %d: detach on a full disk refused: %v", w.step, err)
	}
	if !h.RouterRunning() {
		w.fatalf("%s: the router died on a full disk:\n%s", h.Name, harness.Tail(h.RouterLog(), 30))
	}
	if _, err := h.Status(); err != nil {
		w.failf("%s: status on a full disk: %v", h.Name, err)
	}
	if err := os.Remove(filler); err != nil {
		w.fatalf("%v", err)
	}
	if _, err := w.attach(h); err != nil {
		w.failf("attach after the disk was freed: %v", err)
	}
	if err := h.Kill(); err != nil {
		w.fatalf("%v", err)
	}
	if err := h.Restart(); err != nil {
		w.fatalf("restart after a full disk: %v", err)
	}
	w.allocationsKept(h)
	w.waitMesh(hs)
	w.trafficResumes(hs, trafficBound)
	w.dnsConverges(hs, dnsBound)
}

// fill writes to path until the file system is full and returns how much
// it wrote.
func fill(path string) (int64, error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	var n int64
	for {
		m, err := f.Write(buf)
		n += int64(m)
		if errors.Is(err, syscall.ENOSPC) {
			return n, f.Sync()
		}
		if err != nil {
			return n, err
		}
	}
}

// flood sends a router garbage on its sleeve port, and captured gossip
// replayed, damaged and replaced by garbage on its gossip port, from
// another host at the rate the sockets take, and checks that its memory
// stays bounded, it keeps its connections, and its goroutines come back.
func (w *world) flood() {
	hs := w.running()
	if len(hs) < 2 {
		return
	}
	target := pick(w, hs)
	var others []*harness.Host
	for _, h := range hs {
		if h != target {
			others = append(others, h)
		}
	}
	src := pick(w, others)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	gossip := w.captureGossip(ctx, target)
	baseG := w.goroutinesOf([]*harness.Host{target})[target]
	pid := target.RouterPID()
	baseRSS, err := rss(pid)
	if err != nil {
		w.fatalf("%v", err)
	}
	dur := time.Duration(3+w.rng.IntN(4)) * time.Second
	gport, dport := target.IP.String()+":6783", target.IP.String()+":6784"
	floods := [][]string{
		{"-to", dport, "-size", "1400"},
		{"-to", gport, "-size", "600"},
		{"-to", gport, "-payloads", gossip},
		{"-to", gport, "-payloads", gossip, "-mutate", "-seed", strconv.FormatUint(w.rng.Uint64(), 10)},
	}
	w.t.Logf("step %d: flooding %s from %s for %v (RSS %d MiB)", w.step, target.Name, src.Name, dur, baseRSS>>20)
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		outs []string
	)
	for _, f := range floods {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := src.Output(ctx, append([]string{toolBin, "flood", "-for", dur.String()}, f...)...)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				w.failf("flood %v: %v", f, err)
			}
			outs = append(outs, strings.TrimSpace(out))
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	peak := baseRSS
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
sample:
	for {
		select {
		case <-done:
			break sample
		case <-tick.C:
			if r, err := rss(pid); err == nil {
				peak = max(peak, r)
			}
		}
	}
	w.t.Logf("step %d: flood sent %v; %s RSS %d MiB before, peak %d MiB", w.step, outs, target.Name, baseRSS>>20, peak>>20)
	if !target.RouterRunning() {
		w.fatalf("%s died under the flood:\n%s", target.Name, harness.Tail(target.RouterLog(), 30))
	}
	if peak-baseRSS > rssBound {
		w.failf("%s RSS grew by %d MiB under the flood, bound %d MiB", target.Name, (peak-baseRSS)>>20, rssBound>>20)
	}
	w.waitMesh(hs)
	w.trafficResumes(hs, trafficBound)
	w.noLeak(target, baseG)
}

// captureGossip records a few seconds of the gossip datagrams sent to h,
// on its port of the underlay bridge,
// and writes their UDP payloads, in hex one a line, to a file it returns.
func (w *world) captureGossip(ctx context.Context, h *harness.Host) string {
	w.t.Helper()
	capt, err := w.cl.Underlay.Capture(ctx, h.Name, "udp and dst port 6783 and dst host "+h.IP.String())
	if err != nil {
		w.fatalf("%v", err)
	}
	hold(3 * time.Second) // memberlist probes every second
	ps, err := capt.Stop()
	if err != nil {
		w.fatalf("%v", err)
	}
	var lines []string
	for _, p := range ps {
		// Ethernet, IPv4 with its header length, UDP.
		if len(p.Data) < 14+20+8 || binary.BigEndian.Uint16(p.Data[12:]) != 0x0800 {
			continue
		}
		ihl := int(p.Data[14]&0x0f) * 4
		if len(p.Data) <= 14+ihl+8 {
			continue
		}
		lines = append(lines, hex.EncodeToString(p.Data[14+ihl+8:]))
	}
	if len(lines) == 0 {
		w.fatalf("no gossip to %s captured in 3s", h.Name)
	}
	path := filepath.Join(w.cl.Dir, fmt.Sprintf("gossip-%d.hex", w.step))
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		w.fatalf("%v", err)
	}
	return path
}

// churn attaches and detaches containers on random routers and checks
// that DNS and traffic follow.
func (w *world) churn() {
	hs := w.running()
	for range 1 + w.rng.IntN(3) {
		if _, err := w.attach(pick(w, hs)); err != nil {
			w.failf("attach: %v", err)
		}
	}
	if err := w.detach(pick(w, hs)); err != nil {
		w.failf("detach: %v", err)
	}
	w.dnsConverges(hs, dnsBound)
	w.trafficResumes(hs, trafficBound)
}

// run performs steps faults, or as many as fit before until: first every
// kind once in a seeded order, then kinds at random. It stops at the
// first step that broke an invariant, so the report names one step.
func (w *world) run(kinds []fault, steps int, until time.Time) {
	order := w.rng.Perm(len(kinds))
	for w.step = 1; ; w.step++ {
		if (steps > 0 && w.step > steps) || (!until.IsZero() && time.Now().After(until)) {
			return
		}
		f := kinds[w.rng.IntN(len(kinds))]
		if w.step <= len(order) {
			f = kinds[order[w.step-1]]
		}
		w.stepName = f.name
		start := time.Now()
		w.t.Logf("seed %d step %d: %s", w.seed, w.step, f.name)
		f.run(w)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		w.checkAddresses(ctx)
		cancel()
		w.t.Logf("seed %d step %d: %s done in %v", w.seed, w.step, f.name, time.Since(start).Round(100*time.Millisecond))
		if w.t.Failed() {
			w.cl.LogRouters(w.t)
			return
		}
	}
}

// faultNames lists the names of fs, for messages.
func faultNames(fs []fault) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.name)
	}
	return out
}

// selectFaults returns the faults named in a comma-separated list, or
// all of them for "".
func selectFaults(list string) ([]fault, error) {
	if list == "" {
		return faults, nil
	}
	var out []fault
	for _, name := range strings.Split(list, ",") {
		i := slices.IndexFunc(faults, func(f fault) bool { return f.name == strings.TrimSpace(name) })
		if i < 0 {
			return nil, fmt.Errorf("no fault %q; there are %v", name, faultNames(faults))
		}
		out = append(out, faults[i])
	}
	return out, nil
}
