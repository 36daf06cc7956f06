package router

import (
	"log/slog"
	"net/netip"
	"time"

	"weavemesh.dev/weave/netdev"
)

// announceAfter are the delays after adoption at which a restarted router
// announces the addresses of the endpoints it re-adopted (gratuitous ARP
// from each container). The announcement a container made when it was
// attached can die with a router killed right after: a peer that cached
// the address for the MAC of its earlier holder (addresses are handed out
// again after a detach) would send into the void until its ARP entry
// expires, 30 s or more. The first comes once links have had a moment to
// come up, the later ones for peers that take longer to reconnect.
var announceAfter = []time.Duration{time.Second, 4 * time.Second, 10 * time.Second}

// announcer holds the re-adopted endpoints and when to announce them.
// Only the router's loop uses it.
type announcer struct {
	eps  []netdev.Endpoint
	next []time.Time
}

func newAnnouncer(eps []netdev.Endpoint, now time.Time) *announcer {
	a := &announcer{eps: eps}
	if len(eps) == 0 {
		return a
	}
	for _, d := range announceAfter {
		a.next = append(a.next, now.Add(d))
	}
	return a
}

// due reports whether an announcement is due at now, and consumes it (and
// any others due by then: a late loop announces once).
func (a *announcer) due(now time.Time) bool {
	n := 0
	for n < len(a.next) && !now.Before(a.next[n]) {
		n++
	}
	a.next = a.next[n:]
	return n > 0
}

// run announces the endpoints if an announcement is due. Failures are
// logged at debug: the endpoint may have gone since, and neighbours also
// learn addresses when their entries expire.
func (a *announcer) run(now time.Time, log *slog.Logger) {
	if a == nil || !a.due(now) {
		return
	}
	for _, ep := range a.eps {
		var addrs []netip.Addr
		for _, p := range ep.CIDRs {
			addrs = append(addrs, p.Addr())
		}
		if err := netdev.Announce(ep.Netns, ep.Iface, addrs); err != nil {
			log.Debug("announce re-adopted endpoint", "netns", ep.Netns, "err", err)
		}
	}
}
