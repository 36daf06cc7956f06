package dnsfeature

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"weavemesh.dev/weave/api"
	"weavemesh.dev/weave/dns"
)

// Routes implements feature.Feature: weave dns-add, dns-remove and
// dns-lookup (docs/api.md). With weaveDNS off they answer that it is.
func (f *Feature) Routes() []api.Route {
	return []api.Route{
		{Pattern: "POST /dns/add", Handler: api.Body(func(r *http.Request, req api.DNSRequest) (any, error) {
			if err := validate(req, true); err != nil {
				return nil, err
			}
			return f.add(r.Context(), req)
		})},
		{Pattern: "POST /dns/remove", Handler: api.Body(func(r *http.Request, req api.DNSRequest) (any, error) {
			if err := validate(req, false); err != nil {
				return nil, err
			}
			return f.remove(r.Context(), req)
		})},
		{Pattern: "GET /dns/lookup", Handler: api.JSON(func(r *http.Request) (any, error) {
			name := strings.TrimSpace(r.URL.Query().Get("name"))
			if name == "" {
				return nil, api.BadRequest("give the name to look up as ?name=NAME")
			}
			return f.lookup(r.Context(), name)
		})},
	}
}

// validate checks a request before it reaches the records.
func validate(d api.DNSRequest, needIPs bool) error {
	if strings.TrimSpace(d.Name) == "" {
		return api.BadRequest("name: give a name, like web or web.weave.local")
	}
	if needIPs && len(d.IPs) == 0 {
		return api.BadRequest("ips: give at least one address, like 10.32.1.5")
	}
	return nil
}

func errOff() error {
	return api.NotFound("weaveDNS is off on this router (it was started with --no-dns)")
}

// Status implements feature.Feature: GET /status/dns, an api.DNSStatus
// whose lists are never null.
func (f *Feature) Status(ctx context.Context) (any, error) {
	if f.opts.Off {
		return nil, errOff()
	}
	nick := map[string]string{}
	for _, m := range f.host.Members() {
		nick[m.Name.String()] = m.Nickname
	}
	st := api.DNSStatus{
		Domain: f.opts.Domain, TTL: int(f.opts.TTL / time.Second),
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
		UpstreamFailures: m.UpstreamFailures, Truncated: m.Truncated, Malformed: m.Malformed, Answers: m.Answers,
		UpstreamLatency: api.LatencyHistogram{Counts: m.UpstreamLatency.Counts, SumSeconds: m.UpstreamLatency.Sum.Seconds()}}
	for _, b := range m.UpstreamLatency.Bounds {
		st.Counters.UpstreamLatency.BoundsSeconds = append(st.Counters.UpstreamLatency.BoundsSeconds, b.Seconds())
	}
	st.Listen, st.Upstream, st.Entries = nonNil(st.Listen), nonNil(st.Upstream), nonNil(st.Entries)
	if st.Counters.Answers == nil {
		st.Counters.Answers = map[string]uint64{}
	}
	return st, nil
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// request checks a request's name and addresses.
func (f *Feature) request(req api.DNSRequest) (string, []netip.Addr, error) {
	name, err := dns.Normalize(req.Name, f.opts.Domain)
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

// add answers POST /dns/add.
func (f *Feature) add(ctx context.Context, req api.DNSRequest) (api.DNSRequest, error) {
	return f.changeManual(req, f.store.Add)
}

// remove answers POST /dns/remove.
func (f *Feature) remove(ctx context.Context, req api.DNSRequest) (api.DNSRequest, error) {
	return f.changeManual(req, f.store.Remove)
}

// changeManual applies a change of the records added by hand (apply is
// the store's Add or Remove) and saves them.
func (f *Feature) changeManual(req api.DNSRequest, apply func(name string, addrs []netip.Addr) (int, error)) (api.DNSRequest, error) {
	if f.opts.Off {
		return api.DNSRequest{}, errOff()
	}
	if err := f.host.Ready(); err != nil {
		return api.DNSRequest{}, err
	}
	name, addrs, err := f.request(req)
	if err != nil {
		return api.DNSRequest{}, err
	}
	if _, err := apply(name, addrs); err != nil {
		return api.DNSRequest{}, api.BadRequest("%v", err)
	}
	if err := f.saveManual(); err != nil {
		return api.DNSRequest{}, err
	}
	return api.DNSRequest{Name: name, IPs: addrStrings(addrs)}, nil
}

func (f *Feature) saveManual() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := dns.SaveManual(f.manualPath, f.store.Manual()); err != nil {
		return fmt.Errorf("the change is in effect but will be lost at restart: %w", err)
	}
	return nil
}

// lookup answers GET /dns/lookup.
func (f *Feature) lookup(ctx context.Context, q string) (api.DNSLookup, error) {
	if f.opts.Off {
		return api.DNSLookup{}, errOff()
	}
	if a, err := netip.ParseAddr(q); err == nil {
		names := f.store.Names(a)
		if len(names) == 0 {
			return api.DNSLookup{}, api.NotFound("no DNS entry has address %s", a)
		}
		return api.DNSLookup{Name: a.String(), Names: names}, nil
	}
	name, err := dns.Normalize(q, f.opts.Domain)
	if err != nil {
		return api.DNSLookup{}, api.BadRequest("%v", err)
	}
	addrs := f.store.Lookup(name)
	if len(addrs) == 0 {
		return api.DNSLookup{}, api.NotFound("no DNS entry for %s", name)
	}
	return api.DNSLookup{Name: name, IPs: addrStrings(addrs)}, nil
}
