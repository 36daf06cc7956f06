package router

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"weavemesh.dev/weave/fastdp"
	"weavemesh.dev/weave/gossip"
	"weavemesh.dev/weave/mesh/macs"
	"weavemesh.dev/weave/peer"
	"weavemesh.dev/weave/sleeve"
)

// Timings of the per-pair datapath choice.
const (
	// probeEvery is how often each candidate pair is probed through the
	// VXLAN device.
	probeEvery = time.Second
	// probeTimeout: a pair stays on fastdp while a reply came within this
	// long; it returns to fastdp at the first reply after the path heals,
	// within probeEvery and a round trip.
	probeTimeout = 3500 * time.Millisecond
	// reconcileEvery bounds how long a forwarding table changed behind
	// the router's back (or a failed update) goes unrepaired.
	reconcileEvery = 10 * time.Second
	// keepMACsEvery is how often the MACs the bridge saw arrive through
	// the tunnel are refreshed in the MAC table (whose entries live
	// macs.DefaultTTL, 10 minutes), and tunnelSeenWithin how recent that
	// must have been.
	keepMACsEvery    = 30 * time.Second
	tunnelSeenWithin = time.Minute
)

// Datapath names, as the API shows them.
const datapathFastdp = "fastdp"

// pairs is the datapath choice of every pair this router is an end of.
// Both ends probe and decide alone; each needs replies to its own requests,
// which cross the path both ways, so they agree but for the moment one has
// seen a change and the other not yet.
type pairs struct {
	k     *kernelDP
	probe *prober

	// candidates are the peers this router probes, with their device
	// MACs; read by the prober's goroutine.
	candidates atomic.Pointer[map[peer.Name]fastdp.MAC]

	repliesMu sync.Mutex
	replies   map[peer.Name]time.Time // when the last reply arrived

	// The rest is the router loop's.
	lastProbe     time.Time
	lastReconcile time.Time
	lastKeepMACs  time.Time
	lastWant      fastdp.Desired
	lastErr       string
	fast          map[peer.Name]bool // the pairs on fastdp now

	viewMu sync.Mutex // guards view
	view   map[peer.Name]pairView
}

// pairView is one pair's datapath for status.
type pairView struct {
	datapath string
	reason   string
}

// startPairs opens the prober; poke is called when a reply makes a pair
// fit for fastdp again, so the change does not wait for the next tick.
func (k *kernelDP) startPairs(self peer.Name, poke func()) error {
	ps := &pairs{k: k, replies: map[peer.Name]time.Time{}, fast: map[peer.Name]bool{}, view: map[peer.Name]pairView{}}
	empty := map[peer.Name]fastdp.MAC{}
	ps.candidates.Store(&empty)
	var err error
	ps.probe, err = newProber(k.dev, self, k.log, func(n peer.Name) (fastdp.MAC, bool) {
		m, ok := (*ps.candidates.Load())[n]
		return m, ok
	}, func(from peer.Name, _ time.Time) {
		ps.repliesMu.Lock()
		last := ps.replies[from]
		now := time.Now()
		ps.replies[from] = now
		ps.repliesMu.Unlock()
		if now.Sub(last) > probeTimeout {
			poke()
		}
	})
	if err != nil {
		return err
	}
	k.pairs = ps
	return nil
}

// gossipMeta is what this router publishes of its kernel datapath.
func (k *kernelDP) gossipMeta() gossip.Fastdp {
	if k == nil || k.dev == nil {
		return gossip.Fastdp{}
	}
	return gossip.Fastdp{MAC: k.dev.MAC(), Port: uint16(k.dev.Port()), VNI: k.dev.VNI()}
}

// datapathOf is the datapath of the pair with p and why, for status.
func (k *kernelDP) datapathOf(p peer.Name) (string, string) {
	if k == nil || k.dev == nil || k.pairs == nil {
		reason := "no fastdp on this host"
		if k != nil && k.reason != "" {
			reason += ": " + k.reason
		}
		return datapathSleeve, reason
	}
	k.pairs.viewMu.Lock()
	defer k.pairs.viewMu.Unlock()
	v, ok := k.pairs.view[p]
	if !ok {
		return datapathSleeve, "not probed yet"
	}
	return v.datapath, v.reason
}

// refresh decides each pair's datapath, probes the candidates, brings the
// forwarding table and the sleeve in line and logs every change. It runs
// on the router loop only.
func (ps *pairs) refresh(alive map[peer.Name]gossip.Member, sl *sleeve.Engine, mt *macs.Table, mtu int, now time.Time) {
	k := ps.k
	links := map[peer.Name]sleeve.Link{}
	for _, l := range sl.Links() {
		links[l.Peer] = l
	}
	ps.repliesMu.Lock()
	replies := maps.Clone(ps.replies)
	for n := range ps.replies {
		if _, ok := alive[n]; !ok {
			delete(ps.replies, n)
		}
	}
	ps.repliesMu.Unlock()

	cands := map[peer.Name]fastdp.MAC{}
	addrs := map[peer.Name]netip.Addr{}
	fast := map[peer.Name]bool{}
	view := make(map[peer.Name]pairView, len(alive))
	for n, m := range alive {
		addr := m.DataAddr.Addr().Unmap()
		l, hasLink := links[n]
		reason := pairUnfit(m, addr, l, hasLink, sl.Encrypted(n), mtu, k.dev.Port(), k.dev.VNI())
		if reason == "" {
			cands[n] = m.Fastdp.MAC
			addrs[n] = addr
			last, ok := replies[n]
			switch {
			case ok && now.Sub(last) <= probeTimeout:
				fast[n] = true
			case !ok:
				reason = fmt.Sprintf("probing the VXLAN path (udp %d)", k.dev.Port())
			default:
				reason = fmt.Sprintf("no answer to fastdp probes for %s (is udp %d blocked between the hosts, or the path too small for %d-byte frames?)",
					now.Sub(last).Round(time.Second), k.dev.Port(), mtu+fastdp.Overhead)
			}
		}
		if fast[n] {
			view[n] = pairView{datapath: datapathFastdp}
		} else {
			view[n] = pairView{datapath: datapathSleeve, reason: reason}
		}
	}
	ps.candidates.Store(&cands)

	if now.Sub(ps.lastProbe) >= probeEvery-50*time.Millisecond {
		ps.lastProbe = now
		for n, mac := range cands {
			if err := ps.probe.request(n, mac, now); err != nil {
				k.log.Debug("send a fastdp probe", "peer", n, "err", err)
			}
		}
	}

	want := fastdp.Desired{Unicast: map[fastdp.MAC]netip.Addr{}}
	for n, mac := range cands {
		want.Unicast[mac] = addrs[n]
	}
	for n := range fast {
		want.Flood = append(want.Flood, addrs[n])
	}
	slices.SortFunc(want.Flood, func(a, b netip.Addr) int { return a.Compare(b) })
	var leaving, entered []fastdp.MAC
	for _, e := range mt.Entries() {
		mac := fastdp.MACFromUint64(uint64(e.Addr))
		if mac.IsZero() || mac.IsMulticast() {
			continue
		}
		switch {
		case fast[e.Owner]:
			want.Unicast[mac] = addrs[e.Owner]
			if !ps.fast[e.Owner] {
				entered = append(entered, mac)
			}
		case ps.fast[e.Owner]:
			leaving = append(leaving, mac)
		}
	}

	// Into fastdp: table first, then the sleeve stops. Out of it: the
	// sleeve resumes first, then the table and the bridge forget.
	entering := false
	for n := range fast {
		if !ps.fast[n] {
			entering = true
		}
	}
	if !entering {
		sl.SetKernelPeers(slices.Collect(maps.Keys(fast)))
	}
	if len(ps.fast) > 0 && now.Sub(ps.lastKeepMACs) >= keepMACsEvery {
		ps.lastKeepMACs = now
		if err := keepTunnelMACs(k.dev.Index(), mt, ps.fast, now); err != nil {
			k.log.Debug("cannot read what the bridge learned through the tunnel", "err", err)
		}
	}
	if !desiredEqual(want, ps.lastWant) || now.Sub(ps.lastReconcile) >= reconcileEvery {
		ps.reconcile(want, now)
	}
	if entering {
		sl.SetKernelPeers(slices.Collect(maps.Keys(fast)))
		if err := forgetOnPort(TAPName, entered); err != nil {
			k.log.Warn("cannot make the bridge forget MACs of peers now on fastdp; they relearn with their next frame", "err", err)
		}
	}
	if len(leaving) > 0 {
		if err := k.dev.ForgetLearned(leaving...); err != nil {
			k.log.Warn("cannot make the bridge forget MACs of peers that left fastdp; they relearn within 300s", "err", err)
		}
	}
	for n := range ps.fast {
		if _, ok := alive[n]; !ok {
			k.log.Info("pair no longer on fastdp: the peer is gone", "peer", n)
		}
	}
	for n := range alive {
		if fast[n] != ps.fast[n] {
			if fast[n] {
				k.log.Info("pair now on fastdp", "peer", n, "nickname", alive[n].Nickname)
			} else {
				k.log.Info("pair now on the sleeve", "peer", n, "nickname", alive[n].Nickname, "reason", view[n].reason)
			}
		}
	}
	ps.fast = fast
	ps.viewMu.Lock()
	ps.view = view
	ps.viewMu.Unlock()
}

// pairUnfit says why the pair with m cannot use fastdp whatever the
// probes say, or "". l is the sleeve's direct link to m, if it has one;
// port and vni are this host's device's.
func pairUnfit(m gossip.Member, addr netip.Addr, l sleeve.Link, hasLink, encrypted bool, mtu, port int, vni uint32) string {
	f := m.Fastdp
	switch {
	case f.IsZero():
		return "the peer offers no fastdp (--datapath sleeve, no VXLAN in its kernel, or an older version)"
	case int(f.Port) != port || f.VNI != vni:
		return fmt.Sprintf("the peer's fastdp uses udp %d VNI %d, this one udp %d VNI %d (give both the same --fastdp-port and --mesh-name)",
			f.Port, f.VNI, port, vni)
	case !addr.Is4():
		return "the peer's underlay address is not IPv4"
	case !hasLink || l.State == sleeve.LinkConnecting:
		return "the direct link is not up yet"
	case l.State != sleeve.LinkUp:
		return "no direct link (relayed pairs stay on the sleeve)"
	case encrypted:
		return "encrypted: fastdp is plain, and the two ends do not both trust each other's subnet (--trusted-subnets)"
	case l.PMTU+udpIPHeaders < mtu+fastdp.Overhead:
		return fmt.Sprintf("the underlay path MTU %d is less than the overlay MTU %d + %d for VXLAN", l.PMTU+udpIPHeaders, mtu, fastdp.Overhead)
	}
	return ""
}

// udpIPHeaders turn the sleeve's path MTU (UDP payload) into the
// underlay's (IP packet).
const udpIPHeaders = 28

// reconcile applies want, logging each distinct failure once.
func (ps *pairs) reconcile(want fastdp.Desired, now time.Time) {
	ps.lastReconcile = now
	ch, err := ps.k.dev.Reconcile(want)
	if err != nil {
		if msg := err.Error(); msg != ps.lastErr {
			ps.k.log.Warn("cannot update the VXLAN forwarding table; retrying", "err", err)
			ps.lastErr = msg
		}
		ps.lastWant = fastdp.Desired{} // retry at the next refresh
		return
	}
	ps.lastErr = ""
	ps.lastWant = want
	if !ch.Empty() {
		ps.k.log.Debug("VXLAN forwarding table updated", "changes", ch.String())
	}
}

func desiredEqual(a, b fastdp.Desired) bool {
	return slices.Equal(a.Flood, b.Flood) && maps.Equal(a.Unicast, b.Unicast)
}

// keepTunnelMACs refreshes, in the MAC table, each MAC behind a fastdp
// peer that the bridge saw arrive through the tunnel (port index) within
// tunnelSeenWithin. The router learns where MACs live from the sleeve,
// which unicast on fastdp no longer crosses; without this a MAC that sends
// no broadcast would expire from the table, and so from the forwarding
// table, and its frames would go to every fastdp peer.
func keepTunnelMACs(index int, mt *macs.Table, fast map[peer.Name]bool, now time.Time) error {
	ns, err := netlink.NeighList(index, unix.AF_BRIDGE)
	if err != nil {
		return fmt.Errorf("list the bridge's entries on the VXLAN port: %w", err)
	}
	const userHZ = 100 // the unit of NDA_CACHEINFO's ages
	within := uint32(tunnelSeenWithin / time.Second * userHZ)
	sec := now.Unix()
	for _, n := range ns {
		// The bridge's entries (a master, no NTF_SELF), learned (not
		// permanent, not static).
		learned := n.MasterIndex != 0 && n.Flags&netlink.NTF_SELF == 0 &&
			n.State&(netlink.NUD_PERMANENT|netlink.NUD_NOARP) == 0
		if !learned || len(n.HardwareAddr) != 6 || n.Updated > within || (n.LinkIndex != 0 && n.LinkIndex != index) {
			continue
		}
		a := macs.AddrFrom(n.HardwareAddr)
		if owner, ok := mt.Lookup(a, sec); ok && fast[owner] {
			mt.Learn(a, owner, sec)
		}
	}
	return nil
}

// close stops the prober.
func (ps *pairs) close() {
	if ps != nil && ps.probe != nil {
		ps.probe.close()
	}
}
