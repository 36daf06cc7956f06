package dnsfeature

import (
	"errors"
	"net/netip"
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

// UnregisterEndpoint removes the records of endpoint id.
func (f *Feature) UnregisterEndpoint(id string) {
	if !f.opts.Off {
		f.store.RemoveEndpoint(id)
	}
}
