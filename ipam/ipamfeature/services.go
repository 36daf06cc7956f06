package ipamfeature

import (
	"context"
	"net/netip"

	"weavemesh.dev/weave/api"
)

// What IP allocation offers other features (the Docker and CNI plugins),
// which find it with feature.Host.Feature("ipam") and use it through a
// small interface of their own. An owner is any string the caller keeps
// apart from endpoint IDs (a prefix of its own); Reconcile leaves alone
// only what the endpoints and the exposed host hold, so a caller claims
// its addresses back in its own Reconcile, which runs after this one.

// Range is the range split among the peers.
func (f *Feature) Range() netip.Prefix { return f.opts.Range }

// DefaultSubnet is where an allocation goes without a subnet.
func (f *Feature) DefaultSubnet() netip.Prefix { return f.opts.DefaultSubnet }

// Allocate allocates an address in subnet for owner, waiting for space
// from other peers for a while; errors are of api's kinds (Conflict when
// the subnet is full, NotReady while this peer cannot allocate).
func (f *Feature) Allocate(ctx context.Context, owner string, subnet netip.Prefix) (netip.Prefix, error) {
	return f.allocate(ctx, owner, subnet)
}

// Claim records addr, chosen by hand, as owner's (see ipam's
// Allocator.Claim); the answer is a warning when it could not be.
func (f *Feature) Claim(owner string, addr netip.Addr) string { return f.a.Claim(owner, addr) }

// ReleaseAddr frees addr if owner holds it.
func (f *Feature) ReleaseAddr(owner string, addr netip.Addr) { f.a.ReleaseAddr(owner, addr) }

// Release frees every address owner holds and returns them.
func (f *Feature) Release(owner string) []netip.Addr { return f.a.Release(owner) }

// Allocations lists this peer's allocations and their owners.
func (f *Feature) Allocations() []api.IPAMAllocation {
	var out []api.IPAMAllocation
	for _, a := range f.a.Status().Allocations {
		out = append(out, api.IPAMAllocation{Address: a.Addr.String(), Owner: a.Owner})
	}
	return out
}

// HandOver gives all of this peer's space to a live peer (weave reset):
// the peer it went to and how many addresses, or an error saying why it
// stays (no live peer: the others reclaim it later).
func (f *Feature) HandOver() (string, uint32, error) {
	to, n, err := f.a.HandOver()
	if err != nil || n == 0 {
		return "", 0, err
	}
	return to.String(), n, nil
}
