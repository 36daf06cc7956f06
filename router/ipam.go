package router

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"weavemesh.dev/weave/api"
	"weavemesh.dev/weave/ipam"
	"weavemesh.dev/weave/netdev"
	"weavemesh.dev/weave/peer"
)

const (
	ipamChannel = "ipam"
	// exposeOwner holds the host's own addresses on the overlay.
	exposeOwner = "weave:expose"
	// allocateTimeout bounds one allocation that waits for space from
	// other peers, inside the API client's own timeout.
	allocateTimeout = 20 * time.Second
)

// Defaults of the IP allocation settings.
const DefaultIPAllocReclaimAfter = 10 * time.Minute

// DefaultIPAllocRange is the range IP allocation splits among the peers
// unless told otherwise.
var DefaultIPAllocRange = netip.MustParsePrefix("10.32.0.0/12")

// ipallocDefaults validates and fills in the IP allocation fields of c.
func (c *Config) ipallocDefaults() error {
	if !c.IPAllocRange.IsValid() {
		c.IPAllocRange = DefaultIPAllocRange
	}
	r := c.IPAllocRange
	if !r.Addr().Is4() || r.Bits() < 8 || r.Bits() > 30 {
		return fmt.Errorf("--ipalloc-range %s: want an IPv4 range from /8 to /30, like %s", r, DefaultIPAllocRange)
	}
	c.IPAllocRange = r.Masked()
	if !c.IPAllocDefaultSubnet.IsValid() {
		c.IPAllocDefaultSubnet = c.IPAllocRange
	}
	d := c.IPAllocDefaultSubnet.Masked()
	if !d.Addr().Is4() || !c.IPAllocRange.Contains(d.Addr()) || d.Bits() < c.IPAllocRange.Bits() || d.Bits() > 30 {
		return fmt.Errorf("--ipalloc-default-subnet %s: must lie inside --ipalloc-range %s and be at most a /30", c.IPAllocDefaultSubnet, c.IPAllocRange)
	}
	c.IPAllocDefaultSubnet = d
	if c.IPAllocReclaimAfter == 0 {
		c.IPAllocReclaimAfter = DefaultIPAllocReclaimAfter
	}
	if _, err := ipam.ParseInit(c.IPAllocInit, len(c.Peers)+1); err != nil {
		return err
	}
	return nil
}

// ipamHook gives endpoints addresses from the IP allocator and serves the
// IPAM API (status, rmpeer, expose, hide).
type ipamHook struct {
	r     *Router
	a     *ipam.Allocator
	tr    *ipam.GossipTransport
	store *ipam.BoltStore

	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once

	mu      sync.Mutex // guards pending
	pending map[*attachPlan][]netip.Addr
}

// newIPAMHook opens the allocator on the data dir, registers its gossip
// channel and API routes, and starts it. Call after gossip.New and the API
// server's creation, before gossip.Start.
func newIPAMHook(r *Router) (*ipamHook, error) {
	cfg := r.cfg
	if lines, err := netdev.HostRoutesOverlapping(cfg.IPAllocRange, BridgeName); err != nil {
		r.log.Warn("cannot check the allocation range against the host's routes", "err", err)
	} else if len(lines) > 0 {
		if !cfg.IPAllocOverlapOK {
			return nil, fmt.Errorf("--ipalloc-range %s overlaps what this host already uses: %s; pick another range with --ipalloc-range, or pass --ipalloc-allow-overlap if you know the overlap is harmless",
				cfg.IPAllocRange, strings.Join(lines, "; "))
		}
		r.log.Warn("the allocation range overlaps the host's routes (allowed by --ipalloc-allow-overlap)", "range", cfg.IPAllocRange, "overlaps", lines)
	}
	others := otherPeers(cfg.Peers, cfg.Port, cfg.AdvertiseAddr)
	init, err := ipam.ParseInit(cfg.IPAllocInit, len(others)+1)
	if err != nil {
		return nil, err
	}
	if n := len(cfg.Peers) - len(others); n > 0 && init.Mode == ipam.ModeConsensus && cfg.IPAllocInit == "" {
		r.log.Info("peers named on the command line that are this host are not counted for the initial split", "self", n, "others", len(others))
	}
	store, err := ipam.OpenBolt(cfg.DataDir, r.name, cfg.IPAllocRange)
	if err != nil {
		return nil, err
	}
	h := &ipamHook{r: r, store: store, tr: ipam.NewGossipTransport(r.gossip), pending: map[*attachPlan][]netip.Addr{}}
	reclaim := cfg.IPAllocReclaimAfter
	if reclaim < 0 {
		reclaim = 0
	}
	h.a, err = ipam.New(ipam.Options{
		Self: r.name, Range: cfg.IPAllocRange, DefaultSubnet: cfg.IPAllocDefaultSubnet, Init: init,
		ReclaimAfter: reclaim, Settle: min(ipam.DefaultSettle, max(reclaim/2, time.Second)),
		Store: store, Transport: h.tr, Scan: h.scan, Logger: r.log.With("component", "ipam"),
	})
	if err != nil {
		store.Close()
		return nil, err
	}
	ch, err := r.gossip.Register(ipamChannel, h.a)
	if err != nil {
		store.Close()
		return nil, err
	}
	h.tr.SetChannel(ch)
	ch.OnMessage(h.a.Deliver)
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		h.a.Run(ctx, time.Second)
	}()
	r.api.Handle("GET /status/ipam", http.HandlerFunc(h.serveStatus))
	r.api.Handle("POST /ipam/rmpeer", http.HandlerFunc(h.serveRmpeer))
	r.api.Handle("POST /expose", http.HandlerFunc(h.serveExpose))
	r.api.Handle("POST /hide", http.HandlerFunc(h.serveHide))
	r.log.Info("IP allocation", "range", cfg.IPAllocRange, "default_subnet", h.a.Status().DefaultSubnet, "init", init.String(), "reclaim_after", reclaim)
	return h, nil
}

// close stops the allocator and closes the data file; idempotent.
func (h *ipamHook) close() {
	h.once.Do(func() {
		h.cancel()
		h.wg.Wait()
		h.a.Close()
		if err := h.store.Close(); err != nil {
			h.r.log.Warn("close IPAM data file", "err", err)
		}
	})
}

// scan lists the addresses in use on this host: every endpoint's and the
// bridge's own.
func (h *ipamHook) scan() ([]netip.Addr, error) {
	eps, err := h.r.bridge.Endpoints()
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, ep := range eps {
		if ep.Iface == "" {
			return nil, fmt.Errorf("cannot read the addresses of endpoint %s", ep.HostIface)
		}
		for _, p := range ep.CIDRs {
			out = append(out, p.Addr())
		}
	}
	addrs, err := h.r.bridge.Addrs()
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
func (h *ipamHook) subnetOf(item string) (netip.Prefix, bool, error) {
	if item == "net:default" {
		return h.r.cfg.IPAllocDefaultSubnet, true, nil
	}
	s, ok := strings.CutPrefix(item, "net:")
	if !ok {
		return netip.Prefix{}, false, nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, true, api.BadRequest("%q: want net:CIDR such as net:10.32.4.0/24, or net:default", item)
	}
	if !p.Addr().Is4() || !h.r.cfg.IPAllocRange.Contains(p.Masked().Addr()) || p.Bits() < h.r.cfg.IPAllocRange.Bits() {
		return netip.Prefix{}, true, api.BadRequest("%q: the subnet must lie inside the allocation range %s", item, h.r.cfg.IPAllocRange)
	}
	return p.Masked(), true, nil
}

// allocate turns allocator errors into API errors.
func (h *ipamHook) allocate(ctx context.Context, owner string, subnet netip.Prefix) (netip.Prefix, error) {
	ctx, cancel := context.WithTimeout(ctx, allocateTimeout)
	defer cancel()
	p, err := h.a.Allocate(ctx, owner, subnet)
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

// prepareAttach implements endpointHook: it allocates an address for each
// "net:" item, or one in the default subnet when the request named none,
// and records hand-picked addresses that lie in this peer's space.
func (h *ipamHook) prepareAttach(ctx context.Context, p *attachPlan) error {
	var subnets []netip.Prefix
	rest := p.Specs[:0:0]
	for _, s := range p.Specs {
		sub, ok, err := h.subnetOf(s)
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
		subnets = append(subnets, h.r.cfg.IPAllocDefaultSubnet)
	}
	var got []netip.Addr
	for _, sub := range subnets {
		pfx, err := h.allocate(ctx, p.ID, sub)
		if err != nil {
			for _, a := range got {
				h.a.ReleaseAddr(p.ID, a)
			}
			return err
		}
		got = append(got, pfx.Addr())
		p.Prefixes = append(p.Prefixes, pfx)
	}
	for _, s := range rest {
		if pfx, err := netip.ParsePrefix(s); err == nil {
			if warn := h.a.Claim(p.ID, pfx.Addr()); warn != "" {
				h.r.log.Warn("address chosen by hand", "netns", p.Netns, "address", pfx, "note", warn)
			} else if h.r.cfg.IPAllocRange.Contains(pfx.Addr()) {
				got = append(got, pfx.Addr())
			}
		}
	}
	p.Specs = rest
	h.mu.Lock()
	h.pending[p] = got
	h.mu.Unlock()
	return nil
}

// abortAttach implements endpointHook.
func (h *ipamHook) abortAttach(p *attachPlan) {
	h.mu.Lock()
	got := h.pending[p]
	delete(h.pending, p)
	h.mu.Unlock()
	for _, a := range got {
		h.a.ReleaseAddr(p.ID, a)
	}
}

// attached implements endpointHook.
func (h *ipamHook) attached(ctx context.Context, p *attachPlan, ep api.Endpoint) error {
	h.mu.Lock()
	delete(h.pending, p)
	h.mu.Unlock()
	return nil
}

// detached implements endpointHook: the endpoint's addresses go back.
func (h *ipamHook) detached(ctx context.Context, ep api.Endpoint) {
	if got := h.a.Release(ep.ID); len(got) > 0 {
		h.r.log.Info("released addresses", "netns", ep.Netns, "addresses", got)
	}
}

// reconcile implements endpointHook: allocations of endpoints that
// survived the restart stay, the others are released; exposed addresses
// stay while the bridge has them.
func (h *ipamHook) reconcile(ctx context.Context, eps []api.Endpoint) {
	keep := map[string]bool{exposeOwner: true}
	for _, ep := range eps {
		keep[ep.ID] = true
	}
	if got := h.a.Reconcile(keep); len(got) > 0 {
		h.r.log.Info("released the addresses of endpoints gone while the router was down", "addresses", got)
	}
	for _, ep := range eps {
		for _, c := range ep.CIDRs {
			if p, err := netip.ParsePrefix(c); err == nil {
				h.a.Claim(ep.ID, p.Addr())
			}
		}
	}
	if addrs, err := h.r.bridge.Addrs(); err == nil {
		for _, a := range h.a.Owned(exposeOwner) {
			if !slices.ContainsFunc(addrs, func(p netip.Prefix) bool { return p.Addr() == a }) {
				h.a.ReleaseAddr(exposeOwner, a)
			}
		}
	}
}

func (h *ipamHook) serveStatus(w http.ResponseWriter, r *http.Request) {
	st := h.a.Status()
	out := api.IPAMStatus{
		Range: st.Range.String(), DefaultSubnet: st.DefaultSubnet.String(), Init: st.Init,
		ReclaimAfterSeconds: st.ReclaimAfter.Seconds(), Ready: st.Ready, Reason: st.Reason,
		Unverified: st.Unverified, Conflicts: st.Conflicts, AddressConflicts: st.AddressConflicts,
		Consensus: st.Consensus, Quarantined: st.Quarantined, PendingClaims: st.PendingClaims,
		Counters: api.IPAMCounters(st.Counters),
		Peers:    []api.IPAMPeer{}, Allocations: []api.IPAMAllocation{},
	}
	if !st.QuarantineUntil.IsZero() {
		out.QuarantineUntil = st.QuarantineUntil.UTC().Format(time.RFC3339)
	}
	if st.RingID != 0 {
		out.RingID = fmt.Sprintf("%016x", st.RingID)
	}
	for _, s := range st.Peers {
		nick := s.Nickname
		if s.Self {
			nick = h.r.cfg.Nickname
		}
		out.Peers = append(out.Peers, api.IPAMPeer{
			Name: s.Name.String(), Nickname: nick, Self: s.Self, Reachable: s.Reachable, Removed: s.Removed,
			Addresses: s.Addresses, Percent: s.Percent, Spans: s.Spans, Allocated: s.Allocated,
		})
	}
	for _, a := range st.Allocations {
		out.Allocations = append(out.Allocations, api.IPAMAllocation{Address: a.Addr.String(), Owner: a.Owner})
	}
	api.WriteJSON(w, http.StatusOK, out)
}

func (h *ipamHook) serveRmpeer(w http.ResponseWriter, r *http.Request) {
	var req api.RmpeerRequest
	if err := api.DecodeRequest(w, r, &req); err != nil {
		api.WriteError(w, err)
		return
	}
	var resp api.RmpeerResponse
	for _, s := range req.Peers {
		name, err := h.resolvePeer(s)
		if err != nil {
			api.WriteError(w, err)
			return
		}
		msg, err := h.a.RemovePeer(name)
		if err != nil {
			if errors.Is(err, ipam.ErrUnavailable) {
				api.WriteError(w, api.NotReady("%v", err))
			} else {
				api.WriteError(w, api.Conflict("%v", err))
			}
			return
		}
		h.r.log.Warn("peer removed by weave rmpeer", "peer", name)
		resp.Messages = append(resp.Messages, msg)
	}
	api.WriteJSON(w, http.StatusOK, resp)
}

// resolvePeer accepts a peer name or the nickname of exactly one member.
func (h *ipamHook) resolvePeer(s string) (peer.Name, error) {
	if n, err := peer.ParseName(s); err == nil {
		return n, nil
	}
	var found []peer.Name
	for _, m := range h.r.gossip.Members() {
		if m.Nickname == s {
			found = append(found, m.Name)
		}
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		return 0, api.BadRequest("%q is neither a peer name (aa:bb:cc:dd:ee:ff) nor the nickname of a known peer; see weave status ipam", s)
	}
	return 0, api.BadRequest("nickname %q names %d peers; give the peer name instead (see weave status ipam)", s, len(found))
}

func (h *ipamHook) serveExpose(w http.ResponseWriter, r *http.Request) {
	var req api.ExposeRequest
	if err := api.DecodeRequest(w, r, &req); err != nil {
		api.WriteError(w, err)
		return
	}
	if err := h.r.checkReady(); err != nil {
		api.WriteError(w, err)
		return
	}
	items := req.CIDRs
	if len(items) == 0 {
		items = []string{"net:default"}
	}
	resp := api.ExposeResponse{CIDRs: []string{}}
	for _, item := range items {
		p, err := h.exposeOne(r.Context(), item)
		if err != nil {
			api.WriteError(w, err)
			return
		}
		resp.CIDRs = append(resp.CIDRs, p.String())
	}
	api.WriteJSON(w, http.StatusOK, resp)
}

// exposeOne gives the bridge an address: the one it already has in the
// subnet, a new allocation, or the one given.
func (h *ipamHook) exposeOne(ctx context.Context, item string) (netip.Prefix, error) {
	sub, isNet, err := h.subnetOf(item)
	if err != nil {
		return netip.Prefix{}, err
	}
	if !isNet {
		p, err := netip.ParsePrefix(item)
		if err != nil {
			return p, api.BadRequest("%q: want IP/PREFIX, net:CIDR or net:default", item)
		}
		if err := h.r.bridge.Expose(p); err != nil {
			return p, api.Conflict("%v", err)
		}
		if warn := h.a.Claim(exposeOwner, p.Addr()); warn != "" {
			h.r.log.Warn("exposed address chosen by hand", "address", p, "note", warn)
		}
		return p, nil
	}
	have, err := h.r.bridge.Addrs()
	if err != nil {
		return netip.Prefix{}, err
	}
	mine := h.a.Owned(exposeOwner)
	for _, q := range have {
		if q.Bits() == sub.Bits() && sub.Contains(q.Addr()) && slices.Contains(mine, q.Addr()) {
			return q, nil
		}
	}
	p, err := h.allocate(ctx, exposeOwner, sub)
	if err != nil {
		return p, err
	}
	if err := h.r.bridge.Expose(p); err != nil {
		h.a.ReleaseAddr(exposeOwner, p.Addr())
		return p, err
	}
	h.r.log.Info("exposed the host on the overlay", "address", p)
	return p, nil
}

func (h *ipamHook) serveHide(w http.ResponseWriter, r *http.Request) {
	var req api.ExposeRequest
	if err := api.DecodeRequest(w, r, &req); err != nil {
		api.WriteError(w, err)
		return
	}
	have, err := h.r.bridge.Addrs()
	if err != nil {
		api.WriteError(w, err)
		return
	}
	var targets []netip.Prefix
	for _, q := range have {
		hit := len(req.CIDRs) == 0
		for _, item := range req.CIDRs {
			sub, isNet, err := h.subnetOf(item)
			if err != nil {
				api.WriteError(w, err)
				return
			}
			if isNet {
				hit = hit || (q.Bits() == sub.Bits() && sub.Contains(q.Addr()))
			} else if p, err := netip.ParsePrefix(item); err == nil {
				hit = hit || p == q
			}
		}
		if hit {
			targets = append(targets, q)
		}
	}
	resp := api.ExposeResponse{CIDRs: []string{}}
	for _, q := range targets {
		if err := h.r.bridge.Hide(q); err != nil {
			api.WriteError(w, err)
			return
		}
		h.a.ReleaseAddr(exposeOwner, q.Addr())
		resp.CIDRs = append(resp.CIDRs, q.String())
	}
	api.WriteJSON(w, http.StatusOK, resp)
}

// otherPeers returns the peers named on the command line that are not
// this host: users give every host the same list, their own address
// included, and that one must not count as a peer to wait for. A peer
// is this host when its address (or what its name resolves to) is one of
// this host's own or the advertised address, on this router's port.
// Duplicates count once.
func otherPeers(peers []string, port int, advertise string) []string {
	local := map[netip.Addr]bool{}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil {
				local[p.Addr().Unmap()] = true
			}
		}
	}
	if ap, err := netip.ParseAddr(advertise); err == nil {
		local[ap.Unmap()] = true
	}
	seen := map[string]bool{}
	var out []string
	for _, p := range peers {
		host, ps, err := net.SplitHostPort(p)
		if err != nil {
			host, ps = p, ""
		}
		pp := port
		if ps != "" {
			if n, err := strconv.Atoi(ps); err == nil {
				pp = n
			}
		}
		key := net.JoinHostPort(host, strconv.Itoa(pp))
		if seen[key] {
			continue
		}
		seen[key] = true
		if pp == port && isLocalHost(host, local) {
			continue
		}
		out = append(out, p)
	}
	return out
}

func isLocalHost(host string, local map[netip.Addr]bool) bool {
	if a, err := netip.ParseAddr(host); err == nil {
		return local[a.Unmap()]
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return false
	}
	for _, a := range ips {
		if local[a.Unmap()] {
			return true
		}
	}
	return false
}
