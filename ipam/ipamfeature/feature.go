package ipamfeature

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"weavemesh.dev/weave/api"
	"weavemesh.dev/weave/feature"
	"weavemesh.dev/weave/gossip"
	"weavemesh.dev/weave/ipam"
)

const (
	channelName = "ipam"
	// exposeOwner holds the host's own addresses on the overlay.
	exposeOwner = "weave:expose"
	// allocateTimeout bounds one allocation that waits for space from
	// other peers, inside the API client's own timeout.
	allocateTimeout = 20 * time.Second
)

// Feature gives endpoints addresses from the IP allocator and serves the
// IPAM API (status, rmpeer, expose, hide).
type Feature struct {
	opts    Options
	host    feature.Host
	log     *slog.Logger
	init    ipam.Init
	reclaim time.Duration
	a       *ipam.Allocator
	tr      *ipam.GossipTransport
	store   *ipam.BoltStore

	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once

	mu      sync.Mutex // guards pending
	pending map[*feature.AttachPlan][]netip.Addr
}

var _ feature.Feature = (*Feature)(nil)

// New validates o and returns IP allocation, to be registered with the
// router.
func New(o Options) (*Feature, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Feature{opts: o, pending: map[*feature.AttachPlan][]netip.Addr{}}, nil
}

// Name implements feature.Feature.
func (f *Feature) Name() string { return "ipam" }

// membership is Host.Members as ipam.Membership.
type membership func() []gossip.Member

func (m membership) Members() []gossip.Member { return m() }

// Open implements feature.Feature: it checks the range against the
// host's routes and opens the allocator on the data dir.
func (f *Feature) Open(h feature.Host) error {
	f.host, f.log = h, h.Logger
	o := f.opts
	if lines, err := h.Bridge.RoutesOverlapping(o.Range); err != nil {
		f.log.Warn("cannot check the allocation range against the host's routes", "err", err)
	} else if len(lines) > 0 {
		if !o.OverlapOK {
			return fmt.Errorf("--ipalloc-range %s overlaps what this host already uses: %s; pick another range with --ipalloc-range, or pass --ipalloc-allow-overlap if you know the overlap is harmless",
				o.Range, strings.Join(lines, "; "))
		}
		f.log.Warn("the allocation range overlaps the host's routes (allowed by --ipalloc-allow-overlap)", "range", o.Range, "overlaps", lines)
	}
	others := otherPeers(o.Peers, o.Port, o.AdvertiseAddr)
	init, err := ipam.ParseInit(o.Init, len(others)+1)
	if err != nil {
		return err
	}
	if n := len(o.Peers) - len(others); n > 0 && init.Mode == ipam.ModeConsensus && o.Init == "" {
		f.log.Info("peers named on the command line that are this host are not counted for the initial split", "self", n, "others", len(others))
	}
	f.init = init
	if f.store, err = ipam.OpenBolt(h.DataDir, h.Self, o.Range); err != nil {
		return err
	}
	f.tr = ipam.NewGossipTransport(membership(h.Members))
	f.reclaim = max(o.ReclaimAfter, 0)
	f.a, err = ipam.New(ipam.Options{
		Self: h.Self, Range: o.Range, DefaultSubnet: o.DefaultSubnet, Init: init,
		ReclaimAfter: f.reclaim, Settle: min(ipam.DefaultSettle, max(f.reclaim/2, time.Second)),
		Store: f.store, Transport: f.tr, Scan: f.scan, Now: o.Now, Logger: f.log.With("component", "ipam"),
	})
	return err
}

// Channels implements feature.Feature: the address ring and its
// messages.
func (f *Feature) Channels() []feature.Channel {
	return []feature.Channel{{Name: channelName, State: f.a, OnMessage: f.a.Deliver, Bind: f.tr.SetChannel}}
}

// Start implements feature.Feature: the allocator runs until Close.
func (f *Feature) Start(context.Context) error {
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		f.a.Run(ctx, time.Second)
	}()
	f.log.Info("IP allocation", "range", f.opts.Range, "default_subnet", f.a.Status().DefaultSubnet, "init", f.init.String(), "reclaim_after", f.reclaim)
	return nil
}

// Close implements feature.Feature: it stops the allocator and closes the
// data file.
func (f *Feature) Close(context.Context) {
	f.once.Do(func() {
		if f.cancel != nil {
			f.cancel()
			f.wg.Wait()
		}
		if f.a != nil {
			f.a.Close()
		}
		if f.store == nil {
			return
		}
		if err := f.store.Close(); err != nil {
			f.log.Warn("close IPAM data file", "err", err)
		}
	})
}

// scan lists the addresses in use on this host: every endpoint's and the
// bridge's own.
func (f *Feature) scan() ([]netip.Addr, error) {
	out, err := f.host.Bridge.EndpointAddrs()
	if err != nil {
		return nil, err
	}
	addrs, err := f.host.Bridge.Addrs()
	if err != nil {
		return nil, err
	}
	for _, p := range addrs {
		out = append(out, p.Addr())
	}
	return out, nil
}

// subnetOf parses "net:default" and "net:CIDR"; ok is false for other
// items.
func (f *Feature) subnetOf(item string) (netip.Prefix, bool, error) {
	if item == "net:default" {
		return f.opts.DefaultSubnet, true, nil
	}
	s, ok := strings.CutPrefix(item, "net:")
	if !ok {
		return netip.Prefix{}, false, nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, true, api.BadRequest("%q: want net:CIDR such as net:10.32.4.0/24, or net:default", item)
	}
	if !p.Addr().Is4() || !f.opts.Range.Contains(p.Masked().Addr()) || p.Bits() < f.opts.Range.Bits() {
		return netip.Prefix{}, true, api.BadRequest("%q: the subnet must lie inside the allocation range %s", item, f.opts.Range)
	}
	return p.Masked(), true, nil
}

// allocate turns allocator errors into API errors.
func (f *Feature) allocate(ctx context.Context, owner string, subnet netip.Prefix) (netip.Prefix, error) {
	ctx, cancel := context.WithTimeout(ctx, allocateTimeout)
	defer cancel()
	p, err := f.a.Allocate(ctx, owner, subnet)
	switch {
	case err == nil:
		return p, nil
	case errors.Is(err, ipam.ErrExhausted):
		return p, api.Conflict("allocate an address in %s: %v", subnet, err)
	case errors.Is(err, ipam.ErrUnavailable):
		return p, api.NotReady("allocate an address in %s: %v", subnet, err)
	}
	return p, fmt.Errorf("allocate an address in %s: %w", subnet, err)
}

// PrepareAttach implements feature.EndpointHook: it allocates an address
// for each "net:" item, or one in the default subnet when the request
// named none, and records hand-picked addresses that lie in this peer's
// space.
func (f *Feature) PrepareAttach(ctx context.Context, p *feature.AttachPlan) error {
	var subnets []netip.Prefix
	rest := p.Specs[:0:0]
	for _, s := range p.Specs {
		sub, ok, err := f.subnetOf(s)
		if err != nil {
			return err
		}
		if ok {
			subnets = append(subnets, sub)
		} else {
			rest = append(rest, s)
		}
	}
	if p.Auto {
		subnets = append(subnets, f.opts.DefaultSubnet)
	}
	var got []netip.Addr
	for _, sub := range subnets {
		pfx, err := f.allocate(ctx, p.ID, sub)
		if err != nil {
			for _, a := range got {
				f.a.ReleaseAddr(p.ID, a)
			}
			return err
		}
		got = append(got, pfx.Addr())
		p.Prefixes = append(p.Prefixes, pfx)
	}
	for _, s := range rest {
		if pfx, err := netip.ParsePrefix(s); err == nil {
			if warn := f.a.Claim(p.ID, pfx.Addr()); warn != "" {
				f.log.Warn("address chosen by hand", "netns", p.Netns, "address", pfx, "note", warn)
			} else if f.opts.Range.Contains(pfx.Addr()) {
				got = append(got, pfx.Addr())
			}
		}
	}
	p.Specs = rest
	f.mu.Lock()
	f.pending[p] = got
	f.mu.Unlock()
	return nil
}

// AbortAttach implements feature.EndpointHook.
func (f *Feature) AbortAttach(p *feature.AttachPlan) {
	f.mu.Lock()
	got := f.pending[p]
	delete(f.pending, p)
	f.mu.Unlock()
	for _, a := range got {
		f.a.ReleaseAddr(p.ID, a)
	}
}

// Attached implements feature.EndpointHook.
func (f *Feature) Attached(ctx context.Context, p *feature.AttachPlan, ep api.Endpoint) error {
	f.mu.Lock()
	delete(f.pending, p)
	f.mu.Unlock()
	return nil
}

// Detached implements feature.EndpointHook: the endpoint's addresses go
// back.
func (f *Feature) Detached(ctx context.Context, ep api.Endpoint) {
	if got := f.a.Release(ep.ID); len(got) > 0 {
		f.log.Info("released addresses", "netns", ep.Netns, "addresses", got)
	}
}

// Reconcile implements feature.EndpointHook: allocations of endpoints
// that survived the restart stay, the others are released; exposed
// addresses stay while the bridge has them.
func (f *Feature) Reconcile(ctx context.Context, eps []api.Endpoint) {
	keep := map[string]bool{exposeOwner: true}
	for _, ep := range eps {
		keep[ep.ID] = true
	}
	if got := f.a.Reconcile(keep); len(got) > 0 {
		f.log.Info("released the addresses of endpoints gone while the router was down", "addresses", got)
	}
	for _, ep := range eps {
		for _, c := range ep.CIDRs {
			if p, err := netip.ParsePrefix(c); err == nil {
				f.a.Claim(ep.ID, p.Addr())
			}
		}
	}
	if addrs, err := f.host.Bridge.Addrs(); err == nil {
		for _, a := range f.a.Owned(exposeOwner) {
			if !slices.ContainsFunc(addrs, func(p netip.Prefix) bool { return p.Addr() == a }) {
				f.a.ReleaseAddr(exposeOwner, a)
			}
		}
	}
}
