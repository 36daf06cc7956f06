package docker

import (
	"context"
	"net/netip"
)

// Router is what the plugin needs of the local router. Its methods are safe
// for concurrent use.
type Router interface {
	// CreateVeth makes the veth pair of endpoint id: both ends at the
	// overlay MTU, the host end a port of the weave bridge, the other end
	// left in the router's namespace for Docker to move into the
	// container; it returns that end's name. A pair already there is
	// returned as it is.
	CreateVeth(id string) (ifname string, err error)
	// DeleteVeth removes endpoint id's pair, wherever its other end is by
	// now. Removing a pair that is gone is not an error.
	DeleteVeth(id string) error

	// Range is weave IPAM's allocation range, DefaultSubnet the subnet
	// of networks that name none.
	Range() netip.Prefix
	DefaultSubnet() netip.Prefix
	// Allocate gives owner a free address in subnet, which lies inside
	// Range; the prefix returned has the subnet's length.
	Allocate(ctx context.Context, owner string, subnet netip.Prefix) (netip.Prefix, error)
	// Claim records addr, chosen by the user, as owner's. It fails when
	// another owner holds it.
	Claim(owner string, addr netip.Addr) error
	// Release gives back owner's addr, ReleaseAll every address owner
	// holds. Releasing what is not held is not an error.
	Release(owner string, addr netip.Addr)
	ReleaseAll(owner string)

	// RegisterNames makes weaveDNS answer each of names (a container's
	// name, then its network aliases) with addrs for endpoint id,
	// replacing what it had; UnregisterName removes endpoint id's records
	// (none is no error).
	RegisterNames(id string, names []string, addrs []netip.Addr) error
	UnregisterName(id string)
	// ServeDNS answers DNS for endpoint id inside the namespace at netns,
	// on the containers' nameserver address; StopDNS stops (a listener
	// that is not there is no error).
	ServeDNS(id, netns string) error
	StopDNS(id string)
}
