package ipamfeature

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"

	"weavemesh.dev/weave/ipam"
)

// DefaultReclaimAfter is how long a lost peer's space waits to be
// reclaimed unless told otherwise.
const DefaultReclaimAfter = 10 * time.Minute

// DefaultRange is the range IP allocation splits among the peers unless
// told otherwise.
var DefaultRange = netip.MustParsePrefix("10.32.0.0/12")

// Options configures New. Zero values take the defaults; errors name the
// flag of the bad field.
type Options struct {
	// Range is split among the peers (default DefaultRange).
	Range netip.Prefix
	// DefaultSubnet is where attach allocates without net: (default
	// Range).
	DefaultSubnet netip.Prefix
	// Init is the bootstrap mode (see ipam.ParseInit); empty for
	// consensus among the launch peers.
	Init string
	// ReclaimAfter is how long a lost peer's space waits to be reclaimed
	// (default DefaultReclaimAfter; negative: never).
	ReclaimAfter time.Duration
	// OverlapOK allows a range overlapping the host's routes.
	OverlapOK bool

	// Peers, Port and AdvertiseAddr are the router's launch peers, gossip
	// port and advertised address: the initial split waits for the peers
	// that are not this host.
	Peers         []string
	Port          int
	AdvertiseAddr string

	// Now is the allocator's clock (reclaim, quarantine, heartbeats);
	// optional: time.Now.
	Now func() time.Time
}

// withDefaults validates o and fills in defaults.
func (o Options) withDefaults() (Options, error) {
	if !o.Range.IsValid() {
		o.Range = DefaultRange
	}
	r := o.Range
	if !r.Addr().Is4() || r.Bits() < 8 || r.Bits() > 30 {
		return o, fmt.Errorf("--ipalloc-range %s: want an IPv4 range from /8 to /30, like %s", r, DefaultRange)
	}
	o.Range = r.Masked()
	if !o.DefaultSubnet.IsValid() {
		o.DefaultSubnet = o.Range
	}
	d := o.DefaultSubnet.Masked()
	if !d.Addr().Is4() || !o.Range.Contains(d.Addr()) || d.Bits() < o.Range.Bits() || d.Bits() > 30 {
		return o, fmt.Errorf("--ipalloc-default-subnet %s: must lie inside --ipalloc-range %s and be at most a /30", o.DefaultSubnet, o.Range)
	}
	o.DefaultSubnet = d
	if o.ReclaimAfter == 0 {
		o.ReclaimAfter = DefaultReclaimAfter
	}
	if _, err := ipam.ParseInit(o.Init, len(o.Peers)+1); err != nil {
		return o, err
	}
	return o, nil
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
