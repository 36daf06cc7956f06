package router

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"weavemesh.dev/weave/api"
	"weavemesh.dev/weave/dns"
	"weavemesh.dev/weave/gossip"
)

// dnsChannel is the gossip channel of weaveDNS records.
const dnsChannel = "dns"

// DefaultDNSListenAddress is where the router also answers DNS in its own
// namespace unless --dns-listen-address says otherwise; skipped with a
// warning when something else has it.
const DefaultDNSListenAddress = "127.0.0.1:53"

// Housekeeping of weaveDNS, in ticks of dnsTick.
const (
	dnsTick            = time.Second
	dnsBridgeEvery     = 2 // bridge addresses checked for listeners
	dnsResolvConfEvery = 5 // host resolv.conf checked for changes
)

// Keys of the DNS server's listeners.
const (
	dnsKeyHost     = "host"
	dnsKeyBridge   = "bridge:"   // + address
	dnsKeyEndpoint = "endpoint:" // + endpoint ID
)

// dnsDefaults validates the weaveDNS fields of c and fills in defaults,
// naming the flag of any bad one.
func (c *Config) dnsDefaults() error {
	if c.NoDNS {
		return nil
	}
	if c.DNSDomain == "" {
		c.DNSDomain = dns.DefaultDomain
	}
	d, err := dns.ParseDomain(c.DNSDomain)
	if err != nil {
		return fmt.Errorf("--dns-domain: %w", err)
	}
	c.DNSDomain = d
	if c.DNSTTL == 0 {
		c.DNSTTL = dns.DefaultTTL
	}
	if c.DNSTTL < time.Second || c.DNSTTL > dns.MaxTTL || c.DNSTTL%time.Second != 0 {
		return fmt.Errorf("--dns-ttl %s: want whole seconds from 1 to %d", c.DNSTTL, int(dns.MaxTTL/time.Second))
	}
	if c.DNSListenAddress != "" {
		ap, err := dns.ParseListenAddr(c.DNSListenAddress)
		if err != nil {
			return fmt.Errorf("--dns-listen-address: %w", err)
		}
		c.DNSListenAddress = ap.String()
	}
	ups := make([]string, 0, len(c.DNSUpstream))
	for _, u := range c.DNSUpstream {
		ap, err := dns.ParseUpstream(u)
		if err != nil {
			return fmt.Errorf("--dns-upstream: %w", err)
		}
		ups = append(ups, ap.String())
	}
	if len(ups) > 0 {
		c.DNSUpstream = ups
	}
	return nil
}

// dnsFeature is weaveDNS in the router: the replicated records, the DNS
// server with its listeners, and the endpoint hook that names containers
// and gives them a resolver.
type dnsFeature struct {
	r          *Router
	log        *slog.Logger
	domain     string
	store      *dns.Store
	fwd        *dns.Forwarder
	h          *dns.Handler
	srv        *dns.Server
	manualPath string
	etcNetns   string
	netnsDir   string
	// hostAddr is the listener in the router's namespace; hostRequired when
	// the user asked for it, so failing to get it is an error.
	hostAddr     netip.AddrPort
	hostRequired bool

	// self is the set of addresses this router answers DNS on in its own
	// namespace, for the forwarder's loop check.
	self atomic.Pointer[map[netip.AddrPort]bool]

	mu           sync.Mutex        // guards written, bridgeFailed and the manual records file
	written      map[string]string // endpoint ID -> namespace whose resolv.conf we wrote
	bridgeFailed map[netip.Addr]bool

	stop      chan struct{}
	wg        sync.WaitGroup // the housekeeping goroutine
	closeOnce sync.Once
}

// startDNS sets weaveDNS up: after gossip.New (its channel must be
// registered before gossip.Start) and before the API starts. The returned
// function stops it; Run calls it on the way out.
func (r *Router) startDNS() (func(), error) {
	if r.cfg.NoDNS {
		r.api.HandleDNS(dnsOff{})
		return func() {}, nil
	}
	// One key names the part of the router a line comes from, as the
	// sleeve's and memberlist's lines carry theirs.
	log := r.log.With("component", "dns")
	f := &dnsFeature{
		r: r, log: log, domain: r.cfg.DNSDomain,
		manualPath: filepath.Join(r.cfg.DataDir, dns.ManualFile),
		etcNetns:   dns.DefaultEtcNetns, netnsDir: dns.DefaultNetnsDir,
		written: map[string]string{}, bridgeFailed: map[netip.Addr]bool{},
		stop: make(chan struct{}),
	}
	empty := map[netip.AddrPort]bool{}
	f.self.Store(&empty)
	var err error
	if f.store, err = dns.NewStore(dns.StoreOptions{Self: r.name, Peers: r.dnsPeers, Logger: log}); err != nil {
		return nil, err
	}
	ch, err := r.gossip.Register(dnsChannel, f.store)
	if err != nil {
		return nil, err
	}
	f.store.SetTransport(ch)
	ch.OnMessage(f.store.HandleMessage)
	if err := f.preload(); err != nil {
		return nil, err
	}

	var upstream []netip.AddrPort
	for _, u := range r.cfg.DNSUpstream {
		ap, err := dns.ParseUpstream(u)
		if err != nil {
			return nil, fmt.Errorf("--dns-upstream: %w", err)
		}
		upstream = append(upstream, ap)
	}
	metrics := new(dns.Metrics)
	if f.fwd, err = dns.NewForwarder(dns.ForwarderOptions{Servers: upstream, IsSelf: f.isSelf,
		Metrics: metrics, Logger: log}); err != nil {
		return nil, err
	}
	if f.h, err = dns.NewHandler(dns.HandlerOptions{Domain: f.domain, TTL: r.cfg.DNSTTL, Store: f.store,
		Forwarder: f.fwd, Metrics: metrics, Logger: log}); err != nil {
		return nil, err
	}
	if f.srv, err = dns.NewServer(f.h, log); err != nil {
		return nil, err
	}
	listen := r.cfg.DNSListenAddress
	f.hostRequired = listen != ""
	if listen == "" {
		listen = DefaultDNSListenAddress
	}
	if f.hostAddr, err = dns.ParseListenAddr(listen); err != nil {
		return nil, fmt.Errorf("--dns-listen-address: %w", err)
	}
	if err := f.srv.Listen(dnsKeyHost, f.hostAddr, ""); err != nil {
		if f.hostRequired {
			f.srv.Close()
			return nil, fmt.Errorf("--dns-listen-address %s: %w (is another DNS server running? choose another address)", f.hostAddr, err)
		}
		log.Warn("DNS: not answering on the default host address; containers are unaffected", "addr", f.hostAddr, "err", err)
	}
	f.syncBridge()
	if removed, err := dns.SweepNetnsResolvConf(f.etcNetns, f.netnsDir); err != nil {
		log.Warn("DNS: cannot remove resolv.conf files of namespaces that are gone", "err", err)
	} else if len(removed) > 0 {
		log.Info("DNS: removed resolv.conf files of namespaces that are gone", "namespaces", removed)
	}

	r.api.HandleDNS(f)
	r.hooks = append(r.hooks, f)
	f.wg.Add(1)
	go f.loop()
	log.Info("DNS ready", "domain", f.domain, "ttl", r.cfg.DNSTTL, "nameserver", dns.ContainerNameserver.Addr(),
		"listen", f.listenAddrs(), "upstream", f.fwd.Servers())
	return f.close, nil
}

// preload registers, before gossip starts, the records added by hand and
// those of the endpoints the registry holds, so peers never see this
// router without them (and take its records for stale after a restart).
// reconcile later drops the endpoints that did not survive.
func (f *dnsFeature) preload() error {
	manual, err := dns.LoadManual(f.manualPath)
	if err != nil {
		return err
	}
	for name, addrs := range manual {
		if _, err := f.store.Add(name, addrs); err != nil {
			return fmt.Errorf("%s: %w", f.manualPath, err)
		}
	}
	for _, rec := range f.r.eps.list() {
		f.register(rec.ID, rec.Name, rec.CIDRs)
	}
	return nil
}

func (f *dnsFeature) close() {
	f.closeOnce.Do(func() {
		close(f.stop)
		f.wg.Wait()
		f.srv.Close()
		// The files name a server that is gone now: without them, tools in
		// the namespaces fall back to the host's resolvers. A restarted
		// router writes them again.
		f.mu.Lock()
		for _, ns := range f.written {
			if err := dns.RemoveNetnsResolvConf(f.etcNetns, ns); err != nil {
				f.log.Warn("DNS: remove resolv.conf", "netns", ns, "err", err)
			}
		}
		f.written = map[string]string{}
		f.mu.Unlock()
		f.store.Close()
	})
}

func (f *dnsFeature) loop() {
	defer f.wg.Done()
	t := time.NewTicker(dnsTick)
	defer t.Stop()
	for n := 1; ; n++ {
		select {
		case <-f.stop:
			return
		case <-t.C:
		}
		f.store.Refresh()
		if n%dnsBridgeEvery == 0 {
			f.syncBridge()
		}
		if n%dnsResolvConfEvery == 0 {
			f.fwd.Reload()
		}
	}
}

// dnsPeers is the membership as the DNS records need it.
func (r *Router) dnsPeers() []dns.PeerStatus {
	ms := r.gossip.Members()
	out := make([]dns.PeerStatus, 0, len(ms))
	for _, m := range ms {
		out = append(out, dns.PeerStatus{Name: m.Name, Alive: m.State == gossip.Alive || m.State == gossip.Suspect, Since: m.Since})
	}
	return out
}

// syncBridge answers on every address of the weave bridge (weave expose
// adds them), so containers on the overlay and the host can also reach
// the server there, and refreshes the addresses the loop check knows.
func (f *dnsFeature) syncBridge() {
	addrs, err := f.r.bridge.Addrs()
	if err != nil {
		f.log.Debug("DNS: list bridge addresses", "err", err)
		return
	}
	want := map[string]netip.AddrPort{}
	for _, p := range addrs {
		ap := netip.AddrPortFrom(p.Addr(), 53)
		if ap == f.hostAddr {
			continue
		}
		want[dnsKeyBridge+p.Addr().String()] = ap
	}
	for _, k := range f.srv.Keys() {
		if _, ok := want[k]; !ok && strings.HasPrefix(k, dnsKeyBridge) {
			f.srv.Stop(k)
		}
	}
	for k, ap := range want {
		err := f.srv.Listen(k, ap, "")
		f.mu.Lock()
		failed := f.bridgeFailed[ap.Addr()]
		f.bridgeFailed[ap.Addr()] = err != nil
		f.mu.Unlock()
		if err != nil && !failed {
			f.log.Warn("DNS: cannot answer on a bridge address; will retry", "addr", ap, "err", err)
		}
	}
	self := map[netip.AddrPort]bool{}
	for _, l := range f.srv.Listeners() {
		if l.Netns != "" {
			continue
		}
		self[l.Addr] = true
		if l.Addr.Addr().IsUnspecified() {
			// Answering on every address: all of the host's are ours.
			ifaddrs, _ := net.InterfaceAddrs()
			for _, ia := range ifaddrs {
				if pfx, err := netip.ParsePrefix(ia.String()); err == nil {
					self[netip.AddrPortFrom(pfx.Addr().Unmap(), l.Addr.Port())] = true
				}
			}
		}
	}
	f.self.Store(&self)
}

// isSelf reports whether addr is one of our own listeners (the loop check
// of the forwarder).
func (f *dnsFeature) isSelf(addr netip.AddrPort) bool {
	return (*f.self.Load())[netip.AddrPortFrom(addr.Addr().WithZone("").Unmap(), addr.Port())]
}

func (f *dnsFeature) listenAddrs() []string {
	var out []string
	for _, l := range f.srv.Listeners() {
		if l.Netns == "" {
			out = append(out, l.Addr.String())
		}
	}
	return out
}

// register makes endpoint id's records name at the addresses of cidrs; an
// empty name removes them.
func (f *dnsFeature) register(id, name string, cidrs []string) {
	var fqdn string
	var addrs []netip.Addr
	if name != "" {
		var err error
		if fqdn, err = dns.Normalize(name, f.domain); err != nil {
			f.log.Warn("DNS: endpoint has an invalid name; not registering it", "endpoint", id, "name", name, "err", err)
		}
		for _, c := range cidrs {
			if p, err := netip.ParsePrefix(c); err == nil {
				addrs = append(addrs, p.Addr())
			}
		}
	}
	if err := f.store.SetEndpoint(id, fqdn, addrs); err != nil {
		f.log.Warn("DNS: cannot register endpoint", "endpoint", id, "name", name, "err", err)
	}
}

// serve gives an endpoint's namespace a resolver: a listener on the
// container nameserver address inside it, and for a named namespace the
// resolv.conf that ip netns exec uses.
func (f *dnsFeature) serve(ep api.Endpoint) {
	if err := f.srv.Listen(dnsKeyEndpoint+ep.ID, dns.ContainerNameserver, ep.Netns); err != nil {
		f.log.Warn("DNS: cannot answer inside the namespace; names will not resolve there", "netns", ep.Netns, "err", err)
		return
	}
	ns, ok := dns.NetnsName(ep.Netns, f.netnsDir)
	if !ok {
		return
	}
	content := dns.ContainerResolvConf(ns, dns.ContainerNameserver.Addr(), f.domain)
	err := dns.WriteNetnsResolvConf(f.etcNetns, ns, content)
	switch {
	case errors.Is(err, os.ErrExist):
		f.log.Info("DNS: the namespace has a resolv.conf of its own; leaving it", "netns", ns, "err", err)
	case err != nil:
		f.log.Warn("DNS: cannot write the namespace's resolv.conf", "netns", ns, "err", err)
	default:
		f.mu.Lock()
		f.written[ep.ID] = ns
		f.mu.Unlock()
	}
}

// unserve undoes serve.
func (f *dnsFeature) unserve(ep api.Endpoint) {
	f.srv.Stop(dnsKeyEndpoint + ep.ID)
	f.mu.Lock()
	ns, ok := f.written[ep.ID]
	delete(f.written, ep.ID)
	f.mu.Unlock()
	if !ok {
		if ns, ok = dns.NetnsName(ep.Netns, f.netnsDir); !ok {
			return
		}
	}
	if err := dns.RemoveNetnsResolvConf(f.etcNetns, ns); err != nil {
		f.log.Warn("DNS: remove resolv.conf", "netns", ns, "err", err)
	}
}

// ---- endpointHook ----

func (f *dnsFeature) prepareAttach(ctx context.Context, p *attachPlan) error {
	if p.Name == "" {
		return nil
	}
	if _, err := dns.Normalize(p.Name, f.domain); err != nil {
		return api.BadRequest("DNS name: %v", err)
	}
	return nil
}

func (f *dnsFeature) abortAttach(p *attachPlan) {}

func (f *dnsFeature) attached(ctx context.Context, p *attachPlan, ep api.Endpoint) error {
	f.register(ep.ID, p.Name, ep.CIDRs)
	f.serve(ep)
	return nil
}

func (f *dnsFeature) detached(ctx context.Context, ep api.Endpoint) {
	f.store.RemoveEndpoint(ep.ID)
	f.unserve(ep)
}

func (f *dnsFeature) reconcile(ctx context.Context, eps []api.Endpoint) {
	kept := map[string]bool{}
	for _, ep := range eps {
		kept[ep.ID] = true
		f.register(ep.ID, ep.Name, ep.CIDRs)
		f.serve(ep)
	}
	for _, id := range f.store.OwnEndpoints() {
		if !kept[id] {
			f.store.RemoveEndpoint(id)
		}
	}
}

// ---- api.DNSBackend ----

// DNSStatus implements api.DNSBackend.
func (f *dnsFeature) DNSStatus(ctx context.Context) (api.DNSStatus, error) {
	nick := map[string]string{}
	for _, m := range f.r.gossip.Members() {
		nick[m.Name.String()] = m.Nickname
	}
	st := api.DNSStatus{
		Domain: f.domain, TTL: int(f.r.cfg.DNSTTL / time.Second),
		Nameserver: dns.ContainerNameserver.Addr().String(),
		Listen:     f.listenAddrs(),
	}
	for _, u := range f.fwd.Servers() {
		st.Upstream = append(st.Upstream, u.String())
	}
	for _, rec := range f.store.Records() {
		p := rec.Owner.String()
		st.Entries = append(st.Entries, api.DNSEntry{Name: rec.Name, Address: rec.Addr.String(), Peer: p,
			Nickname: nick[p], Endpoint: rec.Endpoint, Hidden: !rec.Visible})
	}
	m := f.h.Metrics().Snapshot()
	st.Counters = api.DNSCounters{Queries: m.Queries, Local: m.Local, Forwarded: m.Forwarded,
		UpstreamFailures: m.UpstreamFailures, Truncated: m.Truncated, Malformed: m.Malformed, Answers: m.Answers}
	return st, nil
}

// dnsRequest checks a request's name and addresses.
func (f *dnsFeature) dnsRequest(req api.DNSRequest) (string, []netip.Addr, error) {
	name, err := dns.Normalize(req.Name, f.domain)
	if err != nil {
		return "", nil, api.BadRequest("%v", err)
	}
	var addrs []netip.Addr
	for _, s := range req.IPs {
		a, err := netip.ParseAddr(strings.TrimSpace(s))
		if err != nil || a.Zone() != "" {
			return "", nil, api.BadRequest("address %q: want a plain IPv4 or IPv6 address, like 10.32.1.5", s)
		}
		addrs = append(addrs, a.Unmap())
	}
	return name, addrs, nil
}

func addrStrings(as []netip.Addr) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.String()
	}
	return out
}

// DNSAdd implements api.DNSBackend.
func (f *dnsFeature) DNSAdd(ctx context.Context, req api.DNSRequest) (api.DNSRequest, error) {
	if err := f.r.checkReady(); err != nil {
		return api.DNSRequest{}, err
	}
	name, addrs, err := f.dnsRequest(req)
	if err != nil {
		return api.DNSRequest{}, err
	}
	if _, err := f.store.Add(name, addrs); err != nil {
		return api.DNSRequest{}, api.BadRequest("%v", err)
	}
	if err := f.saveManual(); err != nil {
		return api.DNSRequest{}, err
	}
	return api.DNSRequest{Name: name, IPs: addrStrings(addrs)}, nil
}

// DNSRemove implements api.DNSBackend.
func (f *dnsFeature) DNSRemove(ctx context.Context, req api.DNSRequest) (api.DNSRequest, error) {
	if err := f.r.checkReady(); err != nil {
		return api.DNSRequest{}, err
	}
	name, addrs, err := f.dnsRequest(req)
	if err != nil {
		return api.DNSRequest{}, err
	}
	if _, err := f.store.Remove(name, addrs); err != nil {
		return api.DNSRequest{}, api.BadRequest("%v", err)
	}
	if err := f.saveManual(); err != nil {
		return api.DNSRequest{}, err
	}
	return api.DNSRequest{Name: name, IPs: addrStrings(addrs)}, nil
}

func (f *dnsFeature) saveManual() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := dns.SaveManual(f.manualPath, f.store.Manual()); err != nil {
		return fmt.Errorf("the change is in effect but will be lost at restart: %w", err)
	}
	return nil
}

// DNSLookup implements api.DNSBackend.
func (f *dnsFeature) DNSLookup(ctx context.Context, q string) (api.DNSLookup, error) {
	if a, err := netip.ParseAddr(q); err == nil {
		names := f.store.Names(a)
		if len(names) == 0 {
			return api.DNSLookup{}, api.NotFound("no DNS entry has address %s", a)
		}
		return api.DNSLookup{Name: a.String(), Names: names}, nil
	}
	name, err := dns.Normalize(q, f.domain)
	if err != nil {
		return api.DNSLookup{}, api.BadRequest("%v", err)
	}
	addrs := f.store.Lookup(name)
	if len(addrs) == 0 {
		return api.DNSLookup{}, api.NotFound("no DNS entry for %s", name)
	}
	return api.DNSLookup{Name: name, IPs: addrStrings(addrs)}, nil
}

// dnsOff answers the DNS routes of a router started with --no-dns.
type dnsOff struct{}

func errDNSOff() error {
	return api.NotFound("weaveDNS is off on this router (it was started with --no-dns)")
}

func (dnsOff) DNSStatus(context.Context) (api.DNSStatus, error) { return api.DNSStatus{}, errDNSOff() }
func (dnsOff) DNSAdd(context.Context, api.DNSRequest) (api.DNSRequest, error) {
	return api.DNSRequest{}, errDNSOff()
}
func (dnsOff) DNSRemove(context.Context, api.DNSRequest) (api.DNSRequest, error) {
	return api.DNSRequest{}, errDNSOff()
}
func (dnsOff) DNSLookup(context.Context, string) (api.DNSLookup, error) {
	return api.DNSLookup{}, errDNSOff()
}
