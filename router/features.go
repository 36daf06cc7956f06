package router

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"time"

	"weavemesh.dev/weave/api"
	"weavemesh.dev/weave/dns/dnsfeature"
	"weavemesh.dev/weave/feature"
	"weavemesh.dev/weave/ipam/ipamfeature"
	"weavemesh.dev/weave/metrics"
	"weavemesh.dev/weave/netdev"
	"weavemesh.dev/weave/plugin/dockerfeature"
)

// features are what the router runs on top of the mesh, in the order they
// take part in an attach (docs/architecture.md, "Adding a feature").
// Registering a feature is one line here.
func (c Config) features() ([]feature.Feature, error) {
	return register(
		use(ipamfeature.New(c.ipamOptions())),
		use(dnsfeature.New(c.dnsOptions())),
		use(dockerfeature.New(dockerfeature.Options{Socket: c.PluginSocket, Off: c.NoPlugin})),
		use(metrics.New(metrics.Options{Addr: c.MetricsAddr})),
	)
}

// Defaults of the features' settings, for the CLI.
const (
	DefaultIPAllocReclaimAfter = ipamfeature.DefaultReclaimAfter
	DefaultDNSListenAddress    = dnsfeature.DefaultListenAddress
)

// DefaultIPAllocRange is the range IP allocation splits among the peers
// unless told otherwise.
var DefaultIPAllocRange = ipamfeature.DefaultRange

func (c Config) ipamOptions() ipamfeature.Options {
	var now func() time.Time
	if c.Clock != nil {
		now = c.Clock.Now
	}
	return ipamfeature.Options{
		Range: c.IPAllocRange, DefaultSubnet: c.IPAllocDefaultSubnet, Init: c.IPAllocInit,
		ReclaimAfter: c.IPAllocReclaimAfter, OverlapOK: c.IPAllocOverlapOK,
		Peers: c.Peers, Port: c.Port, AdvertiseAddr: c.AdvertiseAddr, Now: now,
	}
}

func (c Config) dnsOptions() dnsfeature.Options {
	return dnsfeature.Options{Off: c.NoDNS, Domain: c.DNSDomain, ListenAddress: c.DNSListenAddress,
		TTL: c.DNSTTL, Upstream: c.DNSUpstream}
}

// registration is a feature's constructor's result.
type registration struct {
	f   feature.Feature
	err error
}

// use takes what a feature's New returns.
func use[F feature.Feature](f F, err error) registration { return registration{f, err} }

// register returns the features, or the first error of their
// constructors (bad options).
func register(rs ...registration) ([]feature.Feature, error) {
	var out []feature.Feature
	for _, r := range rs {
		if r.err != nil {
			return nil, r.err
		}
		out = append(out, r.f)
	}
	return out, nil
}

// startFeatures opens and starts each feature in turn (see
// feature.Feature): after gossip.New and the API server's creation,
// before either starts. The features it reached, the failing one
// included, are in r.started for closeFeatures.
func (r *Router) startFeatures(ctx context.Context, fs []feature.Feature) error {
	h := feature.Host{
		Self: r.name, Nickname: r.cfg.Nickname, DataDir: r.cfg.DataDir, Logger: r.log,
		Members: r.gossip.Members, Ready: r.checkReady, Endpoints: r.registered,
		Bridge: r.hostBridge(), Connections: r.Connections, Peers: r.Peers, Datapaths: r.datapathStats, Gossip: r.gossip.Stats,
		Terminations: r.ended.Counts,
		Feature: func(name string) (feature.Feature, bool) {
			for _, f := range r.started {
				if f.Name() == name {
					return f, true
				}
			}
			return nil, false
		},
	}
	for _, f := range fs {
		r.started = append(r.started, f)
		if err := f.Open(h); err != nil {
			return err
		}
		for _, c := range f.Channels() {
			ch, err := r.gossip.Register(c.Name, c.State)
			if err != nil {
				return err
			}
			if c.Bind != nil {
				c.Bind(ch)
			}
			if c.OnMessage != nil {
				ch.OnMessage(c.OnMessage)
			}
		}
		if err := f.Start(ctx); err != nil {
			return err
		}
		for _, rt := range f.Routes() {
			r.api.Handle(rt.Pattern, rt.Handler)
		}
		r.api.Handle("GET /status/"+f.Name(), api.JSON(func(req *http.Request) (any, error) {
			return f.Status(req.Context())
		}))
		r.hooks = append(r.hooks, f)
	}
	return nil
}

// closeFeatures closes the features started, in reverse.
func (r *Router) closeFeatures() {
	for i := len(r.started) - 1; i >= 0; i-- {
		r.started[i].Close(context.Background())
	}
}

// registered lists the endpoint registry's records.
func (r *Router) registered() []api.Endpoint {
	recs := r.eps.list()
	out := make([]api.Endpoint, 0, len(recs))
	for _, rec := range recs {
		out = append(out, api.Endpoint{ID: rec.ID, Netns: rec.Netns, CIDRs: rec.CIDRs, Name: rec.Name})
	}
	return out
}

// hostBridge is the weave bridge as features see it (feature.Bridge).
type hostBridge struct{ b *netdev.Bridge }

func (h hostBridge) Name() string                   { return h.b.Name() }
func (h hostBridge) MTU() int                       { return h.b.MTU() }
func (h hostBridge) AddPort(iface string) error     { return h.b.AddPort(iface) }
func (h hostBridge) Addrs() ([]netip.Prefix, error) { return h.b.Addrs() }
func (h hostBridge) Expose(p netip.Prefix) error    { return h.b.Expose(p) }
func (h hostBridge) Hide(p netip.Prefix) error      { return h.b.Hide(p) }

func (h hostBridge) EndpointAddrs() ([]netip.Addr, error) {
	eps, err := h.b.Endpoints()
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
	return out, nil
}

func (h hostBridge) RoutesOverlapping(p netip.Prefix) ([]string, error) {
	return netdev.HostRoutesOverlapping(p, BridgeName)
}

// datapathStats are the datapaths' counters, for the metrics.
func (r *Router) datapathStats() []feature.DatapathStats {
	if r.sleeve == nil {
		return nil
	}
	s := r.sleeve.Stats()
	out := []feature.DatapathStats{{
		Name: "sleeve", TxFrames: s.TxFrames, RxFrames: s.RxFrames, TxBytes: s.TxBytes, RxBytes: s.RxBytes,
		Relayed: s.Relayed, Drops: s.Drops, Failures: r.dp.counts()["sleeve"],
	}}
	if r.kdp != nil && r.kdp.dev != nil {
		// The kernel's counters of the VXLAN device: frames into and out
		// of the tunnel, and what it dropped or failed to send.
		if c, err := r.kdp.dev.Counters(); err == nil {
			out = append(out, feature.DatapathStats{
				Name: "fastdp", TxFrames: c.TxPackets, RxFrames: c.RxPackets, TxBytes: c.TxBytes, RxBytes: c.RxBytes,
				Drops: map[string]uint64{"rx_dropped": c.RxDropped, "tx_dropped": c.TxDropped, "rx_errors": c.RxErrors, "tx_errors": c.TxErrors},
			})
		}
	}
	return out
}
