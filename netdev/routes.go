package netdev

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// HostRoutesOverlapping describes, one line each, the routes and addresses
// in the calling thread's network namespace that overlap p, so the router
// can refuse (or warn about) an overlay range the host already uses.
// Interfaces named in exclude are ignored; with no exclude given, the
// default bridge (DefaultBridge) is, since its addresses are the overlay's own.
// Default routes are ignored (they overlap everything), as are the prefix
// routes the kernel derives from addresses (the addresses are listed
// instead).
func HostRoutesOverlapping(p netip.Prefix, exclude ...string) ([]string, error) {
	if !p.IsValid() {
		return nil, fmt.Errorf("invalid prefix %v", p)
	}
	p = p.Masked()
	if len(exclude) == 0 {
		exclude = []string{DefaultBridge}
	}
	family := netlink.FAMILY_V4
	if p.Addr().Is6() {
		family = netlink.FAMILY_V6
	}
	links, err := retryDump(netlink.LinkList)
	if err != nil {
		return nil, fmt.Errorf("list interfaces: %w", err)
	}
	names := make(map[int]string, len(links))
	for _, l := range links {
		names[l.Attrs().Index] = l.Attrs().Name
	}
	skip := func(index int) bool { return slices.Contains(exclude, names[index]) }

	var out []string
	addrs, err := retryDump(func() ([]netlink.Addr, error) { return netlink.AddrList(nil, family) })
	if err != nil {
		return nil, fmt.Errorf("list addresses: %w", err)
	}
	for _, a := range addrs {
		q, ok := addrToPrefix(a)
		if !ok || skip(a.LinkIndex) || !q.Overlaps(p) {
			continue
		}
		out = append(out, fmt.Sprintf("address %s on %s", q, names[a.LinkIndex]))
	}
	routes, err := retryDump(func() ([]netlink.Route, error) {
		return netlink.RouteListFiltered(family, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	})
	if err != nil {
		return nil, fmt.Errorf("list routes: %w", err)
	}
	for _, r := range routes {
		if r.Dst == nil || r.Protocol == unix.RTPROT_KERNEL {
			continue
		}
		ones, _ := r.Dst.Mask.Size()
		q, ok := prefixOf(r.Dst.IP, ones)
		if !ok || q.Bits() == 0 || !q.Overlaps(p) {
			continue
		}
		line := "route " + q.String()
		if r.Gw != nil {
			line += " via " + r.Gw.String()
		}
		if r.LinkIndex > 0 {
			if skip(r.LinkIndex) {
				continue
			}
			line += " dev " + names[r.LinkIndex]
		}
		out = append(out, line)
	}
	return out, nil
}
