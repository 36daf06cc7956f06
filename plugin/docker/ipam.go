package docker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/docker/go-plugins-helpers/ipam"
)

// Docker's option naming the address a RequestAddress is for.
const (
	requestAddressType = "RequestAddressType"
	gatewayAddressType = "com.docker.network.gateway"
)

// allocateTimeout bounds one allocation; Docker's plugin client gives up
// after 30 s.
const allocateTimeout = 25 * time.Second

// ownerPrefix starts the IPAM owner of a pool's addresses; the pool id
// follows.
const OwnerPrefix = "docker:"

type ipamCapabilities = ipam.CapabilitiesResponse

var defaultAddressSpaces = ipam.AddressSpacesResponse{
	LocalDefaultAddressSpace:  Name + "-local",
	GlobalDefaultAddressSpace: Name + "-global",
}

// A pool id is "ID@POOL" or "ID@POOL@SUBPOOL": a random id, so that every
// RequestPool gets a pool of its own even for the same subnet, and the
// subnets, so that the plugin needs no memory of pools to serve the calls
// Docker makes after a router restart.
type pool struct {
	id     string
	subnet netip.Prefix // the network's subnet: prefix length of addresses
	alloc  netip.Prefix // where addresses come from: the subpool, or subnet
}

func (pl pool) String() string {
	if pl.alloc != pl.subnet {
		return pl.id + "@" + pl.subnet.String() + "@" + pl.alloc.String()
	}
	return pl.id + "@" + pl.subnet.String()
}

func (pl pool) owner() string { return OwnerPrefix + pl.String() }

// parsePoolID reads a pool id the plugin handed out.
func parsePoolID(s string) (subnet, alloc netip.Prefix, err error) {
	parts := strings.Split(s, "@")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" {
		return subnet, alloc, fmt.Errorf("pool id %q is not one weavemesh handed out", s)
	}
	if subnet, err = netip.ParsePrefix(parts[1]); err != nil {
		return subnet, alloc, fmt.Errorf("pool id %q: %w", s, err)
	}
	alloc = subnet
	if len(parts) == 3 {
		if alloc, err = netip.ParsePrefix(parts[2]); err != nil {
			return subnet, alloc, fmt.Errorf("pool id %q: %w", s, err)
		}
	}
	return subnet, alloc, nil
}

func parsePool(id string) (pool, error) {
	subnet, alloc, err := parsePoolID(id)
	if err != nil {
		return pool{}, err
	}
	return pool{id: strings.SplitN(id, "@", 2)[0], subnet: subnet, alloc: alloc}, nil
}

func (p *Plugin) requestPool(req ipam.RequestPoolRequest) (any, error) {
	if req.V6 {
		return nil, errors.New("weavemesh IPAM allocates IPv4 addresses only; create the network without --ipv6, or give its IPv6 subnet to another IPAM driver")
	}
	rng := p.r.Range()
	subnet := p.r.DefaultSubnet()
	if req.Pool != "" {
		s, err := netip.ParsePrefix(req.Pool)
		if err != nil {
			return nil, fmt.Errorf("subnet %q: want a CIDR such as 10.32.4.0/24: %w", req.Pool, err)
		}
		subnet = s.Masked()
	}
	if !inside(rng, subnet) || subnet.Bits() > 30 {
		return nil, fmt.Errorf("subnet %s is not inside weave's allocation range %s (or smaller than a /30); choose a --subnet inside the range, or start the router with another --ipalloc-range", subnet, rng)
	}
	alloc := subnet
	if req.SubPool != "" {
		s, err := netip.ParsePrefix(req.SubPool)
		if err != nil {
			return nil, fmt.Errorf("--ip-range %q: want a CIDR: %w", req.SubPool, err)
		}
		if alloc = s.Masked(); !inside(subnet, alloc) || alloc.Bits() > 30 {
			return nil, fmt.Errorf("--ip-range %s is not inside the subnet %s (or smaller than a /30)", alloc, subnet)
		}
	}
	pl := pool{id: randomID(), subnet: subnet, alloc: alloc}
	p.log.Info("docker pool requested", "pool", pl.String())
	return ipam.RequestPoolResponse{PoolID: pl.String(), Pool: subnet.String(), Data: map[string]string{}}, nil
}

func inside(outer, inner netip.Prefix) bool {
	return inner.Addr().Is4() && outer.Contains(inner.Addr()) && inner.Bits() >= outer.Bits()
}

func (p *Plugin) releasePool(req ipam.ReleasePoolRequest) (any, error) {
	pl, err := parsePool(req.PoolID)
	if err != nil {
		return nil, err
	}
	p.r.ReleaseAll(pl.owner())
	p.log.Info("docker pool released", "pool", req.PoolID)
	return struct{}{}, nil
}

func (p *Plugin) requestAddress(req ipam.RequestAddressRequest) (any, error) {
	pl, err := parsePool(req.PoolID)
	if err != nil {
		return nil, err
	}
	if req.Address != "" {
		a, err := parseAddr(req.Address)
		if err != nil {
			return nil, err
		}
		if !pl.subnet.Contains(a) {
			return nil, fmt.Errorf("address %s is not in the network's subnet %s", a, pl.subnet)
		}
		if err := p.r.Claim(pl.owner(), a); err != nil {
			return nil, fmt.Errorf("address %s: %w", a, err)
		}
		return ipam.RequestAddressResponse{Address: netip.PrefixFrom(a, pl.subnet.Bits()).String(), Data: map[string]string{}}, nil
	}
	// The gateway Docker asks for at network creation is allocated like
	// any address: no container gets it, and Join names no gateway.
	ctx, cancel := context.WithTimeout(context.Background(), allocateTimeout)
	defer cancel()
	got, err := p.r.Allocate(ctx, pl.owner(), pl.alloc)
	if err != nil {
		return nil, err
	}
	if req.Options[requestAddressType] == gatewayAddressType {
		p.log.Debug("docker gateway address allocated", "pool", req.PoolID, "address", got.Addr())
	}
	return ipam.RequestAddressResponse{Address: netip.PrefixFrom(got.Addr(), pl.subnet.Bits()).String(), Data: map[string]string{}}, nil
}

func (p *Plugin) releaseAddress(req ipam.ReleaseAddressRequest) (any, error) {
	pl, err := parsePool(req.PoolID)
	if err != nil {
		return nil, err
	}
	a, err := parseAddr(req.Address)
	if err != nil {
		return nil, err
	}
	p.r.Release(pl.owner(), a)
	return struct{}{}, nil
}

// parseAddr accepts an address with or without a prefix length.
func parseAddr(s string) (netip.Addr, error) {
	if pfx, err := netip.ParsePrefix(s); err == nil {
		return pfx.Addr(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		return netip.Addr{}, fmt.Errorf("address %q: want an IPv4 address", s)
	}
	return a, nil
}

func randomID() string {
	var b [4]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func randomMAC(mac net.HardwareAddr) {
	rand.Read(mac)
	mac[0] = mac[0]&^1 | 2 // unicast, locally administered
}
