package dnsfeature

import (
	"context"
	"errors"
	"net/netip"
	"os"

	"weavemesh.dev/weave/api"
	"weavemesh.dev/weave/dns"
	"weavemesh.dev/weave/feature"
)

// register makes endpoint id's records name at the addresses of cidrs; an
// empty name removes them.
func (f *Feature) register(id, name string, cidrs []string) {
	var fqdn string
	var addrs []netip.Addr
	if name != "" {
		var err error
		if fqdn, err = dns.Normalize(name, f.opts.Domain); err != nil {
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

// registerNames makes endpoint id's records every valid one of names at
// addrs; invalid names are logged and left out.
func (f *Feature) registerNames(id string, names []string, addrs []netip.Addr) {
	var fqdns []string
	seen := map[string]bool{}
	for _, name := range names {
		fqdn, err := dns.Normalize(name, f.opts.Domain)
		if err != nil {
			f.log.Warn("DNS: endpoint has an invalid name; not registering that one", "endpoint", id, "name", name, "err", err)
			continue
		}
		if !seen[fqdn] {
			seen[fqdn] = true
			fqdns = append(fqdns, fqdn)
		}
	}
	if len(fqdns) == 0 {
		addrs = nil
	}
	if err := f.store.SetEndpointNames(id, fqdns, addrs); err != nil {
		f.log.Warn("DNS: cannot register endpoint", "endpoint", id, "names", names, "err", err)
	}
}

// serve gives an endpoint's namespace a resolver: a listener on the
// container nameserver address inside it, and for a named namespace the
// resolv.conf that ip netns exec uses.
func (f *Feature) serve(ep api.Endpoint) {
	if err := f.srv.Listen(keyEndpoint+ep.ID, dns.ContainerNameserver, ep.Netns); err != nil {
		f.log.Warn("DNS: cannot answer inside the namespace; names will not resolve there", "netns", ep.Netns, "err", err)
		return
	}
	ns, ok := dns.NetnsName(ep.Netns, f.netnsDir)
	if !ok {
		return
	}
	content := dns.ContainerResolvConf(ns, dns.ContainerNameserver.Addr(), f.opts.Domain)
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
func (f *Feature) unserve(ep api.Endpoint) {
	f.srv.Stop(keyEndpoint + ep.ID)
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

// PrepareAttach implements feature.EndpointHook: a name must be valid.
func (f *Feature) PrepareAttach(ctx context.Context, p *feature.AttachPlan) error {
	if f.opts.Off || p.Name == "" {
		return nil
	}
	if _, err := dns.Normalize(p.Name, f.opts.Domain); err != nil {
		return api.BadRequest("DNS name: %v", err)
	}
	return nil
}

// AbortAttach implements feature.EndpointHook.
func (f *Feature) AbortAttach(p *feature.AttachPlan) {}

// Attached implements feature.EndpointHook: the endpoint's name and a
// resolver inside its namespace.
func (f *Feature) Attached(ctx context.Context, p *feature.AttachPlan, ep api.Endpoint) error {
	if f.opts.Off {
		return nil
	}
	f.register(ep.ID, p.Name, ep.CIDRs)
	f.serve(ep)
	return nil
}

// Detached implements feature.EndpointHook.
func (f *Feature) Detached(ctx context.Context, ep api.Endpoint) {
	if f.opts.Off {
		return
	}
	f.store.RemoveEndpoint(ep.ID)
	f.unserve(ep)
}

// Reconcile implements feature.EndpointHook: the surviving endpoints keep
// their names and resolvers, the others' records go.
func (f *Feature) Reconcile(ctx context.Context, eps []api.Endpoint) {
	if f.opts.Off {
		return
	}
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
