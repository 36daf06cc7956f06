package dnsfeature

import (
	"errors"
	"net/netip"

	"weavemesh.dev/weave/dns"
)

// What weaveDNS offers other features (the Docker and CNI plugins), which
// find it with feature.Host.Feature("dns") and use it through a small
// interface of their own.

// ErrOff is RegisterEndpoint's answer when weaveDNS is off.
var ErrOff = errors.New("weaveDNS is off on this router (--no-dns)")

// RegisterEndpoint names the endpoint id (any ID the caller keeps apart
// from weave's own endpoint IDs) at addrs, replacing what it had; an
// empty name removes its records. An invalid name is logged and leaves
// the endpoint without a name, as for weave attach.
func (f *Feature) RegisterEndpoint(id, name string, addrs []netip.Addr) error {
	if f.opts.Off {
		return ErrOff
	}
	cidrs := make([]string, len(addrs))
	for i, a := range addrs {
		cidrs[i] = netip.PrefixFrom(a, a.BitLen()).String()
	}
	f.register(id, name, cidrs)
	return nil
}

// RegisterEndpointNames is RegisterEndpoint for an endpoint known by
// several names (a Docker container's name and its network aliases):
// each valid name answers with every address. An invalid name is logged
// and skipped; the others are registered. No names removes its records.
func (f *Feature) RegisterEndpointNames(id string, names []string, addrs []netip.Addr) error {
	if f.opts.Off {
		return ErrOff
	}
	f.registerNames(id, names, addrs)
	return nil
}

// UnregisterEndpoint removes the records of endpoint id.
func (f *Feature) UnregisterEndpoint(id string) {
	if !f.opts.Off {
		f.store.RemoveEndpoint(id)
	}
}

// Enabled reports whether weaveDNS runs (it is off with --no-dns).
func (f *Feature) Enabled() bool { return !f.opts.Off }

// ServeNamespace answers DNS for endpoint id inside the network namespace
// at netns (a path), on the containers' nameserver address, as weave
// attach gives its endpoints; StopNamespace stops (a listener that is not
// there is no error). The caller writes the namespace's resolv.conf, if
// any.
func (f *Feature) ServeNamespace(id, netns string) error {
	if f.opts.Off {
		return ErrOff
	}
	return f.srv.Listen(keyEndpoint+id, dns.ContainerNameserver, netns)
}

// StopNamespace stops what ServeNamespace started for endpoint id.
func (f *Feature) StopNamespace(id string) {
	if !f.opts.Off {
		f.srv.Stop(keyEndpoint + id)
	}
}
