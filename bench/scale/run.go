package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"

	"weavemesh.dev/weave/api"
	"weavemesh.dev/weave/gossip"
	"weavemesh.dev/weave/peer"
	"weavemesh.dev/weave/router"
	"weavemesh.dev/weave/router/inproc"
)

// Params is one run of the benchmark.
type Params struct {
	Peers     int
	Dilate    float64       // every gossip timer multiplied by this
	JoinEvery time.Duration // pace of the joins
	Trials    int           // changes of each kind, for change_p99_s
	Quiet     time.Duration // wait after convergence before the steady window
	Steady    time.Duration // the steady window: CPU, memory, gossip bytes
	Timeout   time.Duration // bound of every wait for a change to settle
	Seed      uint64
	Dir       string // data directories; removed at the end
	Port      int    // gossip port of every router (0: router.DefaultPort)
	Logger    *slog.Logger
	// CPUProfile and MemProfile, when set, are files for a CPU profile of
	// the steady window and a heap profile at its end.
	CPUProfile, MemProfile string
	// Tune is the memberlist tuning of every router before dilation
	// (nil: the gossip package's defaults).
	Tune func(*memberlist.Config)
	// GOGC, when not 0, is the garbage collector's target percentage for
	// the run (debug.SetGCPercent; -1 turns it off).
	GOGC int
}

// defaultGOGC is the benchmark's garbage collector target. Every router of
// a run shares one heap, which at 300 routers holds most of a gigabyte: a
// collection cycle over it takes seconds of CPU, during which every
// router's allocating goroutines assist it, so probes are answered late,
// live routers are suspected, and their refutations add load until the
// mesh never settles (300 routers collapsed so at the default 100 and
// settled in 1.5 s at 400). A real router's heap is its own few
// megabytes, collected in about a millisecond. 400 collects a quarter as
// often; the memory it costs is in rss_mb_per_router.
const defaultGOGC = 400

// Result is the one JSON object the benchmark prints.
type Result struct {
	Peers                    int                `json:"peers"`
	Dilate                   float64            `json:"dilate"`
	JoinIntervalS            float64            `json:"join_interval_s"`
	JoinS                    float64            `json:"join_s"`
	ConvergeS                float64            `json:"converge_s"`
	ConvergeMembersS         float64            `json:"converge_members_s"` // membership alone
	ChangeP50S               float64            `json:"change_p50_s"`
	ChangeP99S               float64            `json:"change_p99_s"`
	ChangeP99ByKind          map[string]float64 `json:"change_p99_s_by_kind"`
	AllChangesS              float64            `json:"all_changes_s"`
	DeadRemovedS             float64            `json:"dead_removed_s"`
	FalseDead                int                `json:"false_dead"`
	RSSMBPerRouter           float64            `json:"rss_mb_per_router"`
	CPUSPerMinPerRouter      float64            `json:"cpu_s_per_min_per_router"`
	GossipBytesPerSPerRouter float64            `json:"gossip_bytes_per_s_per_router"`
	GoroutinesPerRouter      float64            `json:"goroutines_per_router"`
	// What gossip did in the steady window, per router per minute.
	SteadyPerMinPerRouter steadyCounts `json:"steady_per_min_per_router"`
	SteadyWindowS         float64      `json:"steady_window_s"`
	Trials                int          `json:"trials_per_kind"`
	Cores                 int          `json:"cores"`
	GOGC                  int          `json:"gogc"`
	Seed                  uint64       `json:"seed"`
	// TimedOut names the measurements that did not settle within the
	// timeout; their figures are the timeout.
	TimedOut []string `json:"timed_out,omitempty"`
}

// steadyCounts are gossip's counters over the steady window.
type steadyCounts struct {
	PushPulls      float64 `json:"push_pulls"`
	AEDigests      float64 `json:"ae_digests"`
	AEStates       float64 `json:"ae_states"`
	AEPulls        float64 `json:"ae_pulls"`
	BroadcastsSent float64 `json:"broadcasts_sent"`
}

// gossipCounts sums gossip's counters over the running routers.
func (b *bench) gossipCounts() steadyCounts {
	var c steadyCounts
	for _, i := range b.m.Running() {
		s := b.m.Router(i).Gossip().Stats()
		c.PushPulls += float64(s.PushPullSent)
		c.AEDigests += float64(s.AEDigestsSent)
		c.AEStates += float64(s.AEStatesSent)
		c.AEPulls += float64(s.AEPulls)
		c.BroadcastsSent += float64(s.BroadcastsSent)
	}
	return c
}

// dilate returns tune followed by every memberlist timer multiplied by k.
func dilate(tune func(*memberlist.Config), k float64) func(*memberlist.Config) {
	return func(c *memberlist.Config) {
		if tune != nil {
			tune(c)
		}
		if k == 1 {
			return
		}
		for _, d := range []*time.Duration{&c.TCPTimeout, &c.PushPullInterval, &c.ProbeInterval, &c.ProbeTimeout,
			&c.GossipInterval, &c.GossipToTheDeadTime, &c.DeadNodeReclaimTime} {
			*d = time.Duration(float64(*d) * k)
		}
	}
}

// bench is one run in progress.
type bench struct {
	p    Params
	m    *inproc.Mesh
	rng  *rand.Rand
	log  *slog.Logger
	res  Result
	ctx  context.Context
	up   time.Time // when every router saw every other
	dead peer.Name // the killed router
	// allocs counts the addresses allocated on each router: the count
	// every router must learn.
	allocs map[int]uint32
}

func run(ctx context.Context, p Params) (Result, error) {
	if p.Peers < 2 {
		return Result{}, fmt.Errorf("-peers %d: want at least 2", p.Peers)
	}
	if p.Dilate <= 0 {
		return Result{}, fmt.Errorf("-dilate %v: want a positive factor", p.Dilate)
	}
	if p.Logger == nil {
		p.Logger = slog.New(slog.DiscardHandler)
	}
	m, err := inproc.New(inproc.Options{
		Dir: p.Dir, Size: p.Peers, Port: p.Port, CountBytes: true,
		Tune: dilate(p.Tune, p.Dilate), Logger: p.Logger,
	})
	if err != nil {
		return Result{}, err
	}
	defer m.Close()
	b := &bench{p: p, m: m, allocs: map[int]uint32{}, rng: rand.New(rand.NewPCG(p.Seed, p.Seed^0x5eed)), log: p.Logger, ctx: ctx,
		res: Result{Peers: p.Peers, Dilate: p.Dilate, JoinIntervalS: seconds(p.JoinEvery), Trials: p.Trials,
			Cores: runtime.NumCPU(), Seed: p.Seed, SteadyWindowS: seconds(p.Steady), ChangeP99ByKind: map[string]float64{},
			GOGC: p.GOGC}}
	if p.GOGC != 0 {
		defer debug.SetGCPercent(debug.SetGCPercent(p.GOGC))
	}
	steps := []struct {
		name string
		f    func() error
	}{
		{"join", b.join}, {"converge", b.converge}, {"steady", b.steady}, {"changes", b.changes},
		{"all_changes", b.allChanges}, {"dead_removed", b.deadRemoved},
	}
	for _, s := range steps {
		if err := ctx.Err(); err != nil {
			return b.res, err
		}
		b.log.Info("scale: step", "step", s.name)
		if err := s.f(); err != nil {
			return b.res, fmt.Errorf("%s: %w", s.name, err)
		}
	}
	b.res.FalseDead = b.falseDead()
	return b.res, nil
}

// join starts the routers at the given pace, each joining one router
// started before it, chosen at random.
func (b *bench) join() error {
	t0 := time.Now()
	for i := 0; i < b.p.Peers; i++ {
		next := t0.Add(time.Duration(i) * b.p.JoinEvery)
		if d := time.Until(next); d > 0 {
			select {
			case <-time.After(d):
			case <-b.ctx.Done():
				return b.ctx.Err()
			}
		}
		var join []int
		if i > 0 {
			join = []int{b.rng.IntN(i)}
		}
		ctx, cancel := context.WithTimeout(b.ctx, time.Minute)
		_, err := b.m.Start(ctx, i, join...)
		cancel()
		if err != nil {
			return err
		}
	}
	b.res.JoinS = seconds(time.Since(t0))
	return nil
}

func (b *bench) names() []peer.Name {
	run := b.m.Running()
	out := make([]peer.Name, len(run))
	for k, i := range run {
		out[k] = b.m.Name(i)
	}
	return out
}

// converge waits from the last join until every router lists every other
// as alive and holds its topology entry.
func (b *bench) converge() error {
	all := b.names()
	start := time.Now()
	took, _ := b.waitAll(start, func(_ int, r *router.Router) bool { return inproc.SeesAlive(r, all) })
	b.res.ConvergeMembersS = seconds(took)
	took, ok := b.waitAll(start, func(_ int, r *router.Router) bool { return inproc.Sees(r, all) })
	b.res.ConvergeS = seconds(took)
	if !ok {
		b.timedOut("converge_s")
	}
	b.up = time.Now()
	return nil
}

// steady measures CPU, memory and gossip bytes over a quiet window.
func (b *bench) steady() error {
	if err := b.sleep(b.p.Quiet); err != nil {
		return err
	}
	runtime.GC()
	cpu0, err := cpuTime()
	if err != nil {
		return err
	}
	bytes0, t0, counts0 := b.m.TotalBytesSent(), time.Now(), b.gossipCounts()
	stopProfile, err := startCPUProfile(b.p.CPUProfile)
	if err != nil {
		return err
	}
	err = b.sleep(b.p.Steady)
	stopProfile()
	if err != nil {
		return err
	}
	if err := writeHeapProfile(b.p.MemProfile); err != nil {
		return err
	}
	cpu1, err := cpuTime()
	if err != nil {
		return err
	}
	wall, bytes1 := time.Since(t0), b.m.TotalBytesSent()
	n := len(b.m.Running())
	counts1 := b.gossipCounts()
	per := func(x1, x0 float64) float64 { return round3((x1 - x0) / wall.Minutes() / float64(n)) }
	b.res.SteadyPerMinPerRouter = steadyCounts{
		PushPulls: per(counts1.PushPulls, counts0.PushPulls), AEDigests: per(counts1.AEDigests, counts0.AEDigests),
		AEStates: per(counts1.AEStates, counts0.AEStates), AEPulls: per(counts1.AEPulls, counts0.AEPulls),
		BroadcastsSent: per(counts1.BroadcastsSent, counts0.BroadcastsSent),
	}
	b.res.CPUSPerMinPerRouter = round3(cpuPerMinPerRouter(cpu1-cpu0, wall, n))
	b.res.GossipBytesPerSPerRouter = round3(float64(bytes1-bytes0) / wall.Seconds() / float64(n))
	b.res.GoroutinesPerRouter = round3(float64(runtime.NumGoroutine()) / float64(n))
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return err
	}
	defer f.Close()
	rss, err := parseRSS(f)
	if err != nil {
		return err
	}
	b.res.RSSMBPerRouter = round3(float64(rss) / (1 << 20) / float64(n))
	return nil
}

// changes times one change on one router until every router has it: a
// topology change (a link down, then up again), an allocation, a DNS
// record, Trials of each in turn.
func (b *bench) changes() error {
	by := map[string][]float64{}
	var all []float64
	for k := 0; k < b.p.Trials; k++ {
		for _, kind := range []string{"topology", "ipam", "dns"} {
			took, ok, err := b.change(kind, k)
			if err != nil {
				return err
			}
			if !ok {
				b.timedOut("change_" + kind)
			}
			by[kind] = append(by[kind], took.Seconds())
			all = append(all, took.Seconds())
		}
	}
	for kind, xs := range by {
		b.res.ChangeP99ByKind[kind] = round3(percentile(xs, 99))
	}
	b.res.ChangeP50S = round3(percentile(all, 50))
	b.res.ChangeP99S = round3(percentile(all, 99))
	return nil
}

// change makes trial k of kind on a random router and waits for it.
func (b *bench) change(kind string, k int) (time.Duration, bool, error) {
	run := b.m.Running()
	src := run[b.rng.IntN(len(run))]
	r := b.m.Router(src)
	self := b.m.Name(src)
	start := time.Now()
	var check func(int, *router.Router) bool
	switch kind {
	case "topology":
		dst := b.m.Name(run[b.rng.IntN(len(run))])
		if dst == self {
			dst = b.m.Name(run[(slices.Index(run, src)+1)%len(run)])
		}
		r.SetLinksDown([]peer.Name{dst})
		check = func(_ int, o *router.Router) bool {
			e, ok := o.Topology().Entry(self)
			return ok && slices.Equal(e.Down, []peer.Name{dst})
		}
		defer r.SetLinksDown(nil)
	case "ipam":
		ctx, cancel := context.WithTimeout(b.ctx, b.p.Timeout)
		_, err := inproc.Allocate(ctx, r, "trial-"+strconv.Itoa(k))
		cancel()
		if err != nil {
			return 0, false, err
		}
		b.allocs[src]++
		want := b.allocs[src]
		check = func(_ int, o *router.Router) bool {
			n, err := inproc.Allocated(b.ctx, o, self)
			return err == nil && n >= want
		}
	case "dns":
		name := "trial-" + strconv.Itoa(k)
		ip := netip.AddrFrom4([4]byte{10, 40, byte(k >> 8), byte(k)})
		if err := inproc.AddDNS(r, name, ip); err != nil {
			return 0, false, err
		}
		check = func(_ int, o *router.Router) bool {
			got, err := inproc.LookupDNS(o, name)
			return err == nil && slices.Contains(got, ip.String())
		}
	}
	took, ok := b.waitAll(start, check)
	return took, ok, nil
}

// allChanges has every router add a DNS record at once and waits until
// every router answers for all of them.
func (b *bench) allChanges() error {
	run := b.m.Running()
	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, len(run))
	for k, i := range run {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[k] = inproc.AddDNS(b.m.Router(i), "all-"+strconv.Itoa(i), netip.AddrFrom4([4]byte{10, 41, byte(i >> 8), byte(i)}))
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	want := len(run)
	took, ok := b.waitAll(start, func(_ int, r *router.Router) bool {
		f, ok := r.Feature("dns")
		if !ok {
			return false
		}
		st, err := f.Status(b.ctx)
		if err != nil {
			return false
		}
		n := 0
		for _, e := range st.(api.DNSStatus).Entries {
			if strings.HasPrefix(e.Name, "all-") && !e.Hidden {
				n++
			}
		}
		return n >= want
	})
	b.res.AllChangesS = seconds(took)
	if !ok {
		b.timedOut("all_changes_s")
	}
	return nil
}

// deadRemoved kills a router without it leaving and waits until every
// other router lists it dead.
func (b *bench) deadRemoved() error {
	run := b.m.Running()
	victim := run[1+b.rng.IntN(len(run)-1)]
	b.dead = b.m.Name(victim)
	start := time.Now()
	b.m.Kill(victim)
	took, ok := b.waitAll(start, func(_ int, r *router.Router) bool {
		for _, mb := range r.Gossip().Members() {
			if mb.Name == b.dead {
				return mb.State == gossip.Dead || mb.State == gossip.Left
			}
		}
		return true
	})
	b.res.DeadRemovedS = seconds(took)
	if !ok {
		b.timedOut("dead_removed_s")
	}
	return nil
}

// falseDead counts the live routers that some router declared dead since
// the mesh converged: listed dead now, or alive again since then (the
// state changed after convergence).
func (b *bench) falseDead() int {
	live := map[peer.Name]bool{}
	for _, n := range b.names() {
		live[n] = true
	}
	bad := map[peer.Name]bool{}
	for _, i := range b.m.Running() {
		for _, mb := range b.m.Router(i).Gossip().Members() {
			if !live[mb.Name] || mb.Name == b.dead {
				continue
			}
			if (mb.State != gossip.Alive && mb.State != gossip.Suspect) || mb.Since.After(b.up) {
				if !bad[mb.Name] {
					b.log.Warn("scale: live peer declared dead", "peer", mb.Name, "observer", b.m.Name(i), "state", mb.State, "since", mb.Since)
				}
				bad[mb.Name] = true
			}
		}
	}
	return len(bad)
}

// waitAll polls every running router with check until each has passed
// once, or the timeout; it returns the time from start to the last first
// pass.
func (b *bench) waitAll(start time.Time, check func(i int, r *router.Router) bool) (time.Duration, bool) {
	run := b.m.Running()
	s := newSettle(len(run), start)
	deadline := time.Now().Add(b.p.Timeout)
	for !s.complete() {
		for k, i := range run {
			if s.done(k) {
				continue
			}
			r := b.m.Router(i)
			if r == nil {
				s.skip(k)
				continue
			}
			if check(i, r) {
				s.see(k, time.Now())
			}
		}
		if s.complete() {
			break
		}
		if time.Now().After(deadline) || b.ctx.Err() != nil {
			return time.Since(start), false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return s.took(), true
}

func (b *bench) timedOut(what string) { b.res.TimedOut = append(b.res.TimedOut, what) }

func (b *bench) sleep(d time.Duration) error {
	select {
	case <-time.After(d):
		return nil
	case <-b.ctx.Done():
		return b.ctx.Err()
	}
}

// startCPUProfile starts a CPU profile into path, if set, and returns
// what stops it.
func startCPUProfile(path string) (func(), error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

// writeHeapProfile writes a heap profile to path, if set.
func writeHeapProfile(path string) error {
	if path == "" {
		return nil
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return pprof.Lookup("heap").WriteTo(f, 0)
}

// fastGossip gossips twice as often, to one peer more.
func fastGossip(c *memberlist.Config) {
	c.GossipInterval = 100 * time.Millisecond
	c.GossipNodes = 4
}

// lanDefaults undoes the gossip package's own choices, for comparison:
// memberlist's LAN defaults as they are.
func lanDefaults(c *memberlist.Config) {
	d := memberlist.DefaultLANConfig()
	c.DeadNodeReclaimTime = d.DeadNodeReclaimTime
}
