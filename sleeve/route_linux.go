package sleeve

import (
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
)

// ipUDPHeaders is the IPv4 and UDP header overhead of a datagram.
const ipUDPHeaders = 28

// RouteMTU returns the largest UDP payload the routing table allows towards
// addr: the route's MTU if it has one, else its device's, less IPv4 and UDP
// headers. It assumes 1500 when the route cannot be read.
func RouteMTU(addr netip.Addr) int {
	const fallback = 1500 - ipUDPHeaders
	rs, err := netlink.RouteGet(net.IP(addr.AsSlice()))
	if err != nil || len(rs) == 0 {
		return fallback
	}
	mtu := rs[0].MTU
	if mtu == 0 {
		l, err := netlink.LinkByIndex(rs[0].LinkIndex)
		if err != nil {
			return fallback
		}
		mtu = l.Attrs().MTU
	}
	if mtu <= ipUDPHeaders {
		return fallback
	}
	return mtu - ipUDPHeaders
}
