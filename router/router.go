package router

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"weavemesh.dev/weave/api"
	"weavemesh.dev/weave/feature"
	"weavemesh.dev/weave/gossip"
	"weavemesh.dev/weave/mesh/macs"
	"weavemesh.dev/weave/mesh/routes"
	"weavemesh.dev/weave/mesh/topology"
	"weavemesh.dev/weave/meshkey"
	"weavemesh.dev/weave/netdev"
	"weavemesh.dev/weave/peer"
	"weavemesh.dev/weave/sleeve"
	"weavemesh.dev/weave/sleeve/secure"
)

// Names of the host devices the router owns.
const (
	BridgeName = "weave"
	TAPName    = "weave-tap"
)

// Timings of the router's own housekeeping.
const (
	maintainEvery = time.Second
	// forgetTopologyAfter drops the link state of a peer gone this long.
	forgetTopologyAfter = 10 * time.Minute
	// unknownTopologyGrace keeps the link state of a peer not (yet) a
	// member this long.
	unknownTopologyGrace = time.Minute
	// pruneEvery is how often a refresh that found neither membership nor
	// link state changed still prunes the topology, for the time limits
	// above.
	pruneEvery   = 5 * time.Second
	leaveTimeout = 3 * time.Second
	// sweepEvery is how many maintenance ticks pass between checks for
	// endpoints whose namespace disappeared.
	sweepEvery = 10
	// membershipGap is the least time between two refreshes for
	// membership news. A join or a failure is news to every member at
	// once, and while a large mesh forms each router hears of hundreds a
	// second; a refresh per event would copy the member list for each.
	membershipGap = 200 * time.Millisecond
)

const topologyChannel = "topology"

// Router is one running peer router.
type Router struct {
	cfg  Config
	log  *slog.Logger
	name peer.Name

	gossip *gossip.Node
	topoCh *gossip.Channel
	topo   *topology.Topology
	macs   *macs.Table
	routes *routes.Table
	sleeve *sleeve.Engine
	dp     *supervisor // restarts the sleeve's failed pipelines
	bridge *netdev.Bridge
	eps    *endpointStore
	api    *api.Server
	kdp    *kernelDP // the kernel datapath (router/fastdp.go)

	announce *announcer // re-adopted endpoints; set before the loop, used by it only

	ready   atomic.Bool
	update  chan struct{} // cap 1: links or topology changed
	stop    chan struct{} // closed by the API's stop
	stopped sync.Once
	killed  atomic.Bool   // stop without leaving (Kill)
	done    chan struct{} // closed when the router has stopped

	// simDown are the peers a router without a data plane reports it
	// cannot reach (SetLinksDown); guarded by mu.
	simDown []peer.Name
	// unknown is when refresh first met link state of a peer that is not
	// a member; loop goroutine only.
	unknown map[peer.Name]time.Time

	// started are the features opened (features.go), hooks the same
	// taking part in attach and detach; both set before the router is
	// ready.
	started []feature.Feature
	hooks   []feature.EndpointHook

	mu    sync.Mutex // guards alive and simDown
	alive map[peer.Name]gossip.Member

	// view, refused and ended are kept by the loop goroutine (refresh).
	view    memberDerived
	refused refusals
	ended   terminations
	// derivedFrom is the member generation and topology generation the
	// routes were last computed from; pruneAt is when the topology is
	// next pruned though neither changed (zero until the first refresh,
	// which so always computes). Loop goroutine only: a steady mesh's
	// refresh then neither walks the topology nor allocates.
	derivedFrom struct{ members, topo uint64 }
	pruneAt     time.Time
}

// Run runs a router until ctx is cancelled or the API asks it to stop, then
// leaves the mesh cleanly.
func Run(ctx context.Context, cfg Config) error {
	r, err := Start(ctx, cfg)
	if err != nil {
		return err
	}
	return r.Wait()
}

// Start starts a router and returns once it is ready. It runs until ctx
// is cancelled, the API or Stop asks it to stop (it then leaves the mesh
// cleanly) or Kill; Wait waits for the end.
func Start(ctx context.Context, cfg Config) (*Router, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if protoErr != nil {
		return nil, protoErr
	}
	features, err := cfg.features()
	if err != nil {
		return nil, err
	}
	r := &Router{
		cfg:     cfg,
		log:     cfg.Logger,
		update:  make(chan struct{}, 1),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
		alive:   map[peer.Name]gossip.Member{},
		unknown: map[peer.Name]time.Time{},
	}
	var cleanup []func()
	started := false
	defer func() {
		if !started {
			runCleanup(cleanup)
		}
	}()
	unlock, err := lockDataDir(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	cleanup = append(cleanup, unlock)
	if err := r.identity(); err != nil {
		return nil, err
	}
	r.log = r.log.With("self", r.name.String())
	if r.eps, err = loadEndpoints(cfg.DataDir); err != nil {
		return nil, err
	}

	r.macs = macs.New(0, nil)
	r.routes = routes.NewTable(r.name)
	r.topo = topology.New(r.name, r.poke)
	keys, sec, err := r.encryption()
	if err != nil {
		return nil, err
	}
	if cfg.DataPlane != DataPlaneNone {
		if err := r.startDataPlane(sec, &cleanup); err != nil {
			return nil, err
		}
	}

	r.gossip, err = gossip.New(gossip.Config{
		Name: r.name, Nickname: cfg.Nickname, BindAddr: cfg.BindAddr, Port: cfg.Port,
		AdvertiseAddr: cfg.AdvertiseAddr, DataPort: cfg.DataPort,
		ProtoMin: protoMin, ProtoMax: protoMax, Version: cfg.Version,
		Fastdp:  r.kdp.gossipMeta(),
		DataDir: cfg.DataDir, Logger: r.log,
		SecretKey: keys.gossip, Label: "weave/" + cfg.MeshName,
		Clock: cfg.Clock, Tune: cfg.GossipTune, BytesSent: cfg.GossipBytesSent,
	})
	if err != nil {
		return nil, err
	}
	cleanup = append(cleanup, func() { r.gossip.Shutdown() })
	if r.topoCh, err = r.gossip.Register(topologyChannel, r.topo); err != nil {
		return nil, err
	}
	r.topoCh.OnMessage(func(from peer.Name, msg []byte) {
		if _, err := r.topo.MergeDelta(msg); err != nil {
			r.log.Warn("bad topology message", "peer", from, "err", err)
		}
	})

	apiAddr := cfg.HTTPAddr
	if apiAddr == APIOff {
		// Built, for ServeHTTP in the same process, but never listening.
		apiAddr = DefaultHTTPAddr
	}
	r.api, err = api.NewServer(api.ServerOptions{Addr: apiAddr, Backend: r, Version: r.versionInfo(), Logger: r.log, Token: cfg.HTTPToken})
	if err != nil {
		return nil, err
	}
	r.api.Handle("POST /reset", api.JSON(r.serveReset))
	r.api.Handle("GET /status/targets", api.JSON(func(*http.Request) (any, error) {
		return api.Targets{Targets: r.gossip.KnownPeers()}, nil
	}))
	// Profiles for operators chasing CPU or memory, on loopback only.
	if r.api.Local() {
		r.api.Handle("GET /debug/pprof/", http.HandlerFunc(pprof.Index))
		r.api.Handle("GET /debug/pprof/profile", http.HandlerFunc(pprof.Profile))
		r.api.Handle("GET /debug/pprof/trace", http.HandlerFunc(pprof.Trace))
		r.api.Handle("GET /debug/pprof/symbol", http.HandlerFunc(pprof.Symbol))
	}
	cleanup = append(cleanup, r.closeFeatures)
	if err := r.startFeatures(ctx, features); err != nil {
		return nil, err
	}
	if cfg.HTTPAddr != APIOff {
		if err := r.api.Start(); err != nil {
			return nil, err
		}
	}
	// The API closes last, after the data dir is unlocked: weave stop
	// waits for it to go quiet, and a weave launch right after must find
	// everything released.
	cleanup = append([]func(){func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		r.api.Close(ctx)
	}}, cleanup...)

	if err := r.gossip.Start(ctx, cfg.Peers); err != nil {
		return nil, err
	}
	r.adoptEndpoints(ctx)
	r.refresh()
	// Our own link state goes out at once rather than with the next
	// push-pull, so every peer lists this one in its topology within a
	// few gossip rounds of the join.
	r.publish(r.topo.LocalDelta(), nil)
	r.ready.Store(true)
	r.log.Info("router ready", "nickname", cfg.Nickname, "gossip_port", cfg.Port, "data_port", cfg.DataPort,
		"api", r.apiAddr(), "mtu", cfg.MTU, "peers", cfg.Peers, "datapath", r.datapathName())

	started = true
	go func() {
		defer close(r.done)
		defer runCleanup(cleanup)
		r.loop(ctx)
		r.ready.Store(false)
		if r.killed.Load() {
			return
		}
		r.log.Info("leaving the mesh")
		if err := r.gossip.Leave(leaveTimeout); err != nil {
			r.log.Warn("leave did not complete", "err", err)
		}
	}()
	return r, nil
}

func (r *Router) loop(ctx context.Context) {
	t := r.clock().NewTicker(maintainEvery)
	defer t.Stop()
	n := 0
	// Membership news within membershipGap of the last refresh waits
	// for the pacer, so a burst costs one refresh.
	pacer := time.NewTimer(0)
	<-pacer.C
	defer pacer.Stop()
	var last time.Time
	paced := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.stop:
			return
		case <-r.gossip.Changes():
			if paced {
				continue
			}
			if wait := membershipGap - time.Since(last); wait > 0 {
				paced = true
				pacer.Reset(wait)
				continue
			}
			last = time.Now()
			r.refresh()
		case <-pacer.C:
			paced = false
			last = time.Now()
			r.refresh()
		case <-r.update:
			r.refresh()
		case now := <-t.C():
			r.announce.run(now, r.log)
			r.macs.Expire(now.Unix())
			r.refresh()
			if n++; n%sweepEvery == 0 {
				r.sweepEndpoints(ctx)
			}
		}
	}
}

// poke asks the loop to refresh; never blocks.
func (r *Router) poke() {
	select {
	case r.update <- struct{}{}:
	default:
	}
}

// identity settles the peer name: --name wins and is saved, otherwise the
// data directory's, otherwise a new one.
func (r *Router) identity() error {
	if r.cfg.Name != peer.None {
		r.name = r.cfg.Name
		return peer.Save(r.cfg.DataDir, r.name)
	}
	n, err := peer.LoadOrCreate(r.cfg.DataDir)
	if err != nil {
		return err
	}
	r.name = n
	return nil
}

// refresh brings the datapath, the published link state and the routes in
// line with membership and link health. It runs on the loop goroutine only.
func (r *Router) refresh() {
	members, gen := r.gossip.MemberView()
	now := r.clock().Now()
	if gen != r.view.gen || r.view.since == nil {
		r.viewChanged(members, gen)
	}
	alive := r.view.alive
	var links []sleeve.Link
	if r.sleeve != nil {
		links = r.sleeve.Links()
	}
	r.ended.note(members, links)
	if r.sleeve != nil {
		r.kdp.refresh(alive, r.sleeve, r.macs, r.cfg.MTU)
	}

	if delta := r.topo.SetLocal(r.linksDown()); delta != nil {
		r.publish(delta, alive)
	}
	if r.derivedFrom.members == r.view.gen && r.derivedFrom.topo == r.topo.Gen() && now.Before(r.pruneAt) {
		return
	}
	r.pruneAt = now.Add(pruneEvery)
	since := r.view.since
	r.topo.Prune(func(p peer.Name) bool {
		if _, ok := alive[p]; ok {
			delete(r.unknown, p)
			return true
		}
		if t, ok := since[p]; ok {
			delete(r.unknown, p)
			return now.Sub(t) < forgetTopologyAfter
		}
		// Not a member: a joining peer's link state can arrive before
		// the news of its join, so it is kept a while. When it was first
		// met is remembered longer, so the entry of a peer long gone,
		// handed back by a peer that has not dropped it yet, goes at once.
		first, ok := r.unknown[p]
		if !ok {
			r.unknown[p] = now
			return true
		}
		return now.Sub(first) < unknownTopologyGrace
	})
	for p, first := range r.unknown {
		if now.Sub(first) > forgetTopologyAfter {
			delete(r.unknown, p)
		}
	}
	// Recomputed only when membership or link state changed: refresh runs
	// every second, and the flood trees cached with the routes survive.
	tg := r.topo.Gen()
	r.routes.Update(routes.Graph{Self: r.name, Peers: r.view.names, Down: r.topo.Down()})
	r.derivedFrom.members, r.derivedFrom.topo = r.view.gen, tg
}

// memberDerived is what refresh derives from one generation of the member
// list; a steady mesh reuses it instead of rebuilding it every second.
// Kept by the loop goroutine; nothing in it is modified once built.
type memberDerived struct {
	gen   uint64
	alive map[peer.Name]gossip.Member // usable for data, self excluded
	names []peer.Name                 // self, then the usable members
	// since is when each member, usable or not, last changed state:
	// members not usable for data are kept in the topology as long as
	// gone ones.
	since map[peer.Name]time.Time
}

// viewChanged rebuilds what refresh derives from the member list and
// applies it: the alive set, the sleeve's peers, forgotten MACs and the
// refusal log.
func (r *Router) viewChanged(members []gossip.Member, gen uint64) {
	d := memberDerived{gen: gen, alive: make(map[peer.Name]gossip.Member, len(members)),
		names: []peer.Name{r.name}, since: make(map[peer.Name]time.Time, len(members))}
	var infos []sleeve.PeerInfo
	for _, m := range members {
		d.since[m.Name] = m.Since
		if m.Name == r.name || !usable(m) {
			continue
		}
		d.alive[m.Name] = m
		infos = append(infos, sleeve.PeerInfo{Name: m.Name, Addr: m.DataAddr})
		d.names = append(d.names, m.Name)
	}
	r.view = d
	r.mu.Lock()
	prev := r.alive
	r.alive = d.alive
	r.mu.Unlock()
	for n := range prev {
		if _, ok := d.alive[n]; !ok {
			r.macs.ForgetPeer(n)
		}
	}
	r.refused.note(r.log, r.name, members)
	if r.sleeve != nil {
		r.sleeve.SetPeers(infos)
	}
}

// usable reports whether m can carry data: alive (or merely suspected),
// decodable metadata, and a protocol version in common with us.
func usable(m gossip.Member) bool {
	if m.MetaErr != nil || !m.DataAddr.IsValid() {
		return false
	}
	if m.State != gossip.Alive && m.State != gossip.Suspect {
		return false
	}
	return compatible(m.ProtoMin, m.ProtoMax)
}

// publish broadcasts our link state; a state too large for one gossip
// packet (many links down at once) goes to each peer reliably instead.
func (r *Router) publish(delta []byte, alive map[peer.Name]gossip.Member) {
	err := r.topoCh.Broadcast(r.name.String(), delta)
	if err == nil {
		return
	}
	r.log.Debug("link state too large to broadcast; sending it to each peer", "bytes", len(delta), "err", err)
	for n := range alive {
		if err := r.topoCh.Send(n, delta); err != nil {
			r.log.Debug("send link state", "to", n, "err", err)
		}
	}
}

func (r *Router) requestStop() {
	r.stopped.Do(func() { close(r.stop) })
}

// adoptEndpoints keeps the endpoints of the registry that still exist
// (their veths outlive the router) and forgets the rest, then lets the
// features reconcile with what survived.
func (r *Router) adoptEndpoints(ctx context.Context) {
	var (
		kept    []api.Endpoint
		adopted []netdev.Endpoint
	)
	for _, rec := range r.eps.list() {
		if r.bridge == nil {
			kept = append(kept, api.Endpoint{ID: rec.ID, Netns: rec.Netns, CIDRs: rec.CIDRs, Name: rec.Name})
			continue
		}
		ep, err := r.bridge.Inspect(rec.Netns)
		if endpointGone(err) {
			r.log.Info("endpoint gone while the router was down; forgetting it", "netns", rec.Netns, "err", err)
			if err := r.eps.remove(rec.ID); err != nil {
				r.log.Warn("update endpoints", "err", err)
			}
			continue
		}
		if err != nil {
			// Unreadable for now, not gone: keep it and its addresses.
			r.log.Warn("cannot inspect endpoint; keeping it", "netns", rec.Netns, "err", err)
			kept = append(kept, api.Endpoint{ID: rec.ID, Netns: rec.Netns, CIDRs: rec.CIDRs, Name: rec.Name})
			continue
		}
		r.log.Info("re-adopted endpoint", "netns", rec.Netns, "cidrs", rec.CIDRs)
		kept = append(kept, apiEndpoint(ep, rec.Name))
		adopted = append(adopted, ep)
	}
	for _, h := range r.hooks {
		h.Reconcile(ctx, kept)
	}
	r.announce = newAnnouncer(adopted, r.clock().Now())
}

// meshKeys holds what the password gives gossip.
type meshKeys struct {
	gossip []byte // nil without a password
}

// encryption derives the keys from the password, if there is one, and
// returns the data plane's session manager (nil without a password).
func (r *Router) encryption() (meshKeys, *secure.Manager, error) {
	if len(r.cfg.Password) == 0 {
		if len(r.cfg.TrustedSubnets) > 0 {
			r.log.Warn("--trusted-subnets has no effect without a password: nothing is encrypted")
		}
		return meshKeys{}, nil, nil
	}
	if why := meshkey.Weak(r.cfg.Password); why != "" {
		r.log.Warn("weak mesh password: " + why)
	}
	k, err := meshkey.Derive(r.cfg.Password)
	if err != nil {
		return meshKeys{}, nil, err
	}
	c, err := secure.ParseCipher(r.cfg.SleeveCipher)
	if err != nil {
		return meshKeys{}, nil, fmt.Errorf("--sleeve-cipher: %w", err)
	}
	sec, err := secure.NewManager(secure.Config{Self: r.name, PSK: k.PSK, Trusted: r.cfg.TrustedSubnets, Cipher: c})
	if err != nil {
		return meshKeys{}, nil, err
	}
	r.log.Info("encryption enabled", "trusted_subnets", r.cfg.TrustedSubnets, "cipher", c.String())
	return meshKeys{gossip: k.Gossip[:]}, sec, nil
}

// lockDataDir makes sure one router at a time uses a data directory.
func lockDataDir(dir string) (func(), error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir %s: %w", dir, err)
	}
	path := filepath.Join(dir, "lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("another router is using data dir %s; stop it with weave stop, or give this one its own --data-dir", dir)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}
