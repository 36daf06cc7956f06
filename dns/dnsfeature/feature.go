package dnsfeature

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"weavemesh.dev/weave/dns"
	"weavemesh.dev/weave/feature"
	"weavemesh.dev/weave/gossip"
)

// channelName is the gossip channel of weaveDNS records.
const channelName = "dns"

// Housekeeping of weaveDNS, in ticks of tick.
const (
	tick            = time.Second
	bridgeEvery     = 2 // bridge addresses checked for listeners
	resolvConfEvery = 5 // host resolv.conf checked for changes
)

// Keys of the DNS server's listeners.
const (
	keyHost     = "host"
	keyBridge   = "bridge:"   // + address
	keyEndpoint = "endpoint:" // + endpoint ID
)

// Feature is weaveDNS in the router: the replicated records, the DNS
// server with its listeners, and the endpoint hooks that name containers
// and give them a resolver.
type Feature struct {
	opts Options
	host feature.Host
	log  *slog.Logger

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
	// peerList is the membership as the store needs it (peers).
	peerList gossip.MembersCache[[]dns.PeerStatus]

	mu           sync.Mutex        // guards written, bridgeFailed and the manual records file
	written      map[string]string // endpoint ID -> namespace whose resolv.conf we wrote
	bridgeFailed map[netip.Addr]bool

	stop      chan struct{}
	wg        sync.WaitGroup // the housekeeping goroutine
	closeOnce sync.Once
}

var _ feature.Feature = (*Feature)(nil)

// New validates o and returns weaveDNS, to be registered with the router.
func New(o Options) (*Feature, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Feature{opts: o, etcNetns: dns.DefaultEtcNetns, netnsDir: dns.DefaultNetnsDir,
		written: map[string]string{}, bridgeFailed: map[netip.Addr]bool{}, stop: make(chan struct{})}, nil
}

// Name implements feature.Feature.
func (f *Feature) Name() string { return "dns" }

// Open implements feature.Feature: the records, the forwarder, and the
// server on the host's and the bridge's addresses.
func (f *Feature) Open(h feature.Host) error {
	f.host = h
	if f.opts.Off {
		return nil
	}
	// One key names the part of the router a line comes from, as the
	// sleeve's and memberlist's lines carry theirs.
	f.log = h.Logger.With("component", "dns")
	f.manualPath = filepath.Join(h.DataDir, dns.ManualFile)
	empty := map[netip.AddrPort]bool{}
	f.self.Store(&empty)
	var err error
	if f.store, err = dns.NewStore(dns.StoreOptions{Self: h.Self, Peers: f.peers, Logger: f.log}); err != nil {
		return err
	}

	var upstream []netip.AddrPort
	for _, u := range f.opts.Upstream {
		ap, err := dns.ParseUpstream(u)
		if err != nil {
			return fmt.Errorf("--dns-upstream: %w", err)
		}
		upstream = append(upstream, ap)
	}
	metrics := new(dns.Metrics)
	if f.fwd, err = dns.NewForwarder(dns.ForwarderOptions{Servers: upstream, IsSelf: f.isSelf,
		Metrics: metrics, Logger: f.log}); err != nil {
		return err
	}
	if f.h, err = dns.NewHandler(dns.HandlerOptions{Domain: f.opts.Domain, TTL: f.opts.TTL, Store: f.store,
		Forwarder: f.fwd, Metrics: metrics, Logger: f.log}); err != nil {
		return err
	}
	if f.srv, err = dns.NewServer(f.h, f.log); err != nil {
		return err
	}
	listen := f.opts.ListenAddress
	f.hostRequired = listen != ""
	if listen == "" {
		listen = DefaultListenAddress
	}
	if f.hostAddr, err = dns.ParseListenAddr(listen); err != nil {
		return fmt.Errorf("--dns-listen-address: %w", err)
	}
	if err := f.srv.Listen(keyHost, f.hostAddr, ""); err != nil {
		if f.hostRequired {
			return fmt.Errorf("--dns-listen-address %s: %w (is another DNS server running? choose another address)", f.hostAddr, err)
		}
		f.log.Warn("DNS: not answering on the default host address; containers are unaffected", "addr", f.hostAddr, "err", err)
	}
	f.syncBridge()
	if removed, err := dns.SweepNetnsResolvConf(f.etcNetns, f.netnsDir); err != nil {
		f.log.Warn("DNS: cannot remove resolv.conf files of namespaces that are gone", "err", err)
	} else if len(removed) > 0 {
		f.log.Info("DNS: removed resolv.conf files of namespaces that are gone", "namespaces", removed)
	}
	return nil
}

// Channels implements feature.Feature: the records.
func (f *Feature) Channels() []feature.Channel {
	if f.opts.Off {
		return nil
	}
	return []feature.Channel{{Name: channelName, State: f.store, OnMessage: f.store.HandleMessage,
		Bind: func(ch *gossip.Channel) { f.store.SetTransport(ch) }}}
}

// Start implements feature.Feature: the preloaded records (see preload),
// then the housekeeping goroutine.
func (f *Feature) Start(ctx context.Context) error {
	if f.opts.Off {
		return nil
	}
	if err := f.preload(); err != nil {
		return err
	}
	f.wg.Add(1)
	go f.loop()
	f.log.Info("DNS ready", "domain", f.opts.Domain, "ttl", f.opts.TTL, "nameserver", dns.ContainerNameserver.Addr(),
		"listen", f.listenAddrs(), "upstream", f.fwd.Servers())
	return nil
}

// preload registers, once the channel is bound and before gossip starts,
// the records added by hand and those of the endpoints the registry
// holds, so peers never see this router without them (and take its
// records for stale after a restart).
// Reconcile later drops the endpoints that did not survive.
func (f *Feature) preload() error {
	manual, err := dns.LoadManual(f.manualPath)
	if err != nil {
		return err
	}
	for name, addrs := range manual {
		if _, err := f.store.Add(name, addrs); err != nil {
			return fmt.Errorf("%s: %w", f.manualPath, err)
		}
	}
	for _, rec := range f.host.Endpoints() {
		f.register(rec.ID, rec.Name, rec.CIDRs)
	}
	return nil
}

// Close implements feature.Feature.
func (f *Feature) Close(ctx context.Context) {
	if f.opts.Off {
		return
	}
	f.closeOnce.Do(func() {
		close(f.stop)
		f.wg.Wait()
		if f.srv != nil {
			f.srv.Close()
		}
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
		if f.store != nil {
			f.store.Close()
		}
	})
}

func (f *Feature) loop() {
	defer f.wg.Done()
	t := time.NewTicker(tick)
	defer t.Stop()
	for n := 1; ; n++ {
		select {
		case <-f.stop:
			return
		case <-t.C:
		}
		f.store.Refresh()
		if n%bridgeEvery == 0 {
			f.syncBridge()
		}
		if n%resolvConfEvery == 0 {
			f.fwd.Reload()
		}
	}
}

// peers is the membership as the DNS records need it.
// The list is derived again only when membership changed, and is shared:
// the store does not modify it.
func (f *Feature) peers() []dns.PeerStatus {
	return f.peerList.Get(f.host.Members(), func(ms []gossip.Member) []dns.PeerStatus {
		out := make([]dns.PeerStatus, 0, len(ms))
		for _, m := range ms {
			out = append(out, dns.PeerStatus{Name: m.Name, Alive: m.State == gossip.Alive || m.State == gossip.Suspect, Since: m.Since})
		}
		return out
	})
}

// syncBridge answers on every address of the weave bridge (weave expose
// adds them), so containers on the overlay and the host can also reach
// the server there, and refreshes the addresses the loop check knows.
func (f *Feature) syncBridge() {
	addrs, err := f.host.Bridge.Addrs()
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
		want[keyBridge+p.Addr().String()] = ap
	}
	for _, k := range f.srv.Keys() {
		if _, ok := want[k]; !ok && strings.HasPrefix(k, keyBridge) {
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
func (f *Feature) isSelf(addr netip.AddrPort) bool {
	return (*f.self.Load())[netip.AddrPortFrom(addr.Addr().WithZone("").Unmap(), addr.Port())]
}

func (f *Feature) listenAddrs() []string {
	var out []string
	for _, l := range f.srv.Listeners() {
		if l.Netns == "" {
			out = append(out, l.Addr.String())
		}
	}
	return out
}
