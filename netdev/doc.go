// Package netdev owns the host side of the overlay's layer-2 plumbing: the
// `weave` Linux bridge, the ports attached to it (the sleeve TAP and one veth
// pair per container endpoint), and the host's own addresses on the overlay.
//
// Everything goes through netlink (github.com/vishvananda/netlink); nothing
// shells out to `ip`.
//
// # Namespaces
//
// The router runs in the host's network namespace. EnsureBridge captures the
// namespace of the calling thread: the returned Bridge keeps netlink sockets
// opened there, so its methods act on that namespace whichever goroutine or
// OS thread calls them. Containers are other network namespaces, named by a
// path to a namespace file (/var/run/netns/NAME, /proc/PID/ns/net or any bind
// mount of one). The package reaches into them with netlink sockets opened
// inside the namespace (netlink.NewHandleAt), never by moving the calling
// thread, so callers need not lock OS threads.
//
// # Bridge settings
//
//   - STP off: the bridge is a leaf of the overlay, there are no loops to
//     break, and STP's listening/learning delay would blackhole new ports.
//   - Multicast snooping off: the overlay carries multicast like a hub; with
//     snooping and no querier on the segment the bridge would stop forwarding
//     group traffic once its membership timers expire.
//   - Ageing time: the kernel default (300 s).
//   - MAC address pinned: a bridge without an explicitly set address takes the
//     lowest address of its ports, so it would change whenever a container
//     comes or goes and break neighbour caches pointing at an exposed host
//     address. EnsureBridge sets the address to its current value, which makes
//     the kernel keep it.
//   - IPv6 stays enabled so the host can expose IPv6 addresses, but a newly
//     created bridge gets addr_gen_mode "none" (no link-local address, so no
//     router solicitations, DAD or MLD chatter from the host onto the overlay
//     until an address is exposed), and accept_ra is set to 0 so the host never
//     takes routes or addresses from router advertisements sent by containers.
//     Host-side veth ends and ports added while still down get addr_gen_mode
//     "none" too: they
//     are bridge ports and carry no addresses.
//
// # Endpoints
//
// An endpoint is a veth pair: the host end "vwe"+8 hex characters of the
// endpoint ID (see EndpointID) is a port of the bridge, the other end (named
// "ethwe" unless told otherwise) lives in the container namespace and carries
// the container's overlay addresses. IPv6 addresses are added without
// duplicate address detection: the overlay's address allocation already
// guarantees uniqueness, and DAD would keep a fresh address unusable for a
// second or more. arp_notify is enabled on the container interface so the
// kernel announces addresses with gratuitous ARP when the interface comes up
// (best effort: neighbours also learn addresses on first use); Announce
// sends the same announcement on demand, for endpoints a restarted router
// re-adopts.
package netdev
