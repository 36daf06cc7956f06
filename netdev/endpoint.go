package netdev

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// ErrNotAttached reports a namespace without an endpoint of this bridge.
var ErrNotAttached = errors.New("no weave endpoint in that network namespace")

// Endpoint describes one container attachment.
type Endpoint struct {
	ID        string           // EndpointID of the namespace; empty when unknown (Endpoints)
	Netns     string           // namespace path as given; empty when unknown (Endpoints)
	HostIface string           // host-side veth end, a bridge port
	Iface     string           // container-side interface name
	MAC       net.HardwareAddr // container-side MAC address
	CIDRs     []netip.Prefix   // container-side addresses, IPv6 link-local excluded
	MTU       int              // container-side MTU
}

// AttachOptions configures Bridge.Attach.
type AttachOptions struct {
	// Netns is the path of the container's network namespace file. Required.
	Netns string
	// CIDRs are the addresses to give the container, each with its prefix
	// length (10.32.1.5/12, fd00::5/64).
	CIDRs []netip.Prefix
	// MTU of both veth ends; the bridge MTU when zero.
	MTU int
	// IfName is the container-side interface name; DefaultIfName when empty.
	IfName string
}

func (o *AttachOptions) validate(bridgeMTU int) error {
	if o.Netns == "" {
		return errors.New("AttachOptions.Netns is required (a path such as /var/run/netns/NAME or /proc/PID/ns/net)")
	}
	if o.IfName == "" {
		o.IfName = DefaultIfName
	}
	if err := validIfName(o.IfName); err != nil {
		return fmt.Errorf("AttachOptions.IfName: %w", err)
	}
	if o.MTU == 0 {
		o.MTU = bridgeMTU
	}
	if o.MTU < MinMTU || o.MTU > MaxMTU {
		return fmt.Errorf("AttachOptions.MTU %d is outside %d..%d", o.MTU, MinMTU, MaxMTU)
	}
	for _, p := range o.CIDRs {
		if err := checkPrefix(p); err != nil {
			return fmt.Errorf("AttachOptions.CIDRs: %w", err)
		}
		if p.Addr().Is6() && o.MTU < MinIPv6MTU {
			return fmt.Errorf("AttachOptions.CIDRs: %s needs an MTU of at least %d, AttachOptions.MTU is %d", p, MinIPv6MTU, o.MTU)
		}
	}
	return nil
}

// target is an open container namespace.
type target struct {
	path string
	id   string
	ns   netns.NsHandle
	h    *netlink.Handle // sockets inside ns
}

func openTarget(path string) (*target, error) {
	ns, st, err := openNetns(path)
	if err != nil {
		return nil, err
	}
	h, err := newHandle(ns)
	if err != nil {
		ns.Close()
		return nil, fmt.Errorf("network namespace %s: open netlink socket: %w", path, err)
	}
	return &target{path: path, id: idFromStat(st), ns: ns, h: h}, nil
}

func (t *target) close() {
	t.h.Close()
	t.ns.Close()
}

// Attach connects the container namespace o.Netns to the bridge: a veth
// pair whose host end joins the bridge and whose other end, inside the
// namespace, gets o.IfName, o.MTU and o.CIDRs; both ends and the namespace's
// loopback come up. If the namespace already has this bridge's endpoint,
// Attach adds whichever of o.CIDRs are missing (and repairs MTU, bridge
// membership and link state) instead of failing. A failed Attach that
// created the pair deletes it again.
func (b *Bridge) Attach(o AttachOptions) (Endpoint, error) {
	if err := o.validate(b.mtu); err != nil {
		return Endpoint{}, err
	}
	t, err := openTarget(o.Netns)
	if err != nil {
		return Endpoint{}, err
	}
	defer t.close()
	if err := b.lock(); err != nil {
		return Endpoint{}, err
	}
	defer b.mu.Unlock()

	br, err := b.link()
	if err != nil {
		return Endpoint{}, err
	}
	hostName := HostIfaceName(t.id)
	host, peer, err := b.find(t, hostName)
	if err != nil {
		return Endpoint{}, err
	}
	created := false
	if host == nil {
		if host, peer, err = b.createPair(t, br, hostName, o); err != nil {
			return Endpoint{}, err
		}
		created = true
	}
	if err := b.configure(t, br, host, peer, o, created); err != nil {
		if created {
			if derr := b.h.LinkDel(host); derr != nil && !isNotFound(derr) {
				err = errors.Join(err, fmt.Errorf("remove half-made endpoint %s: %w", hostName, derr))
			}
		}
		return Endpoint{}, fmt.Errorf("attach %s: %w", o.Netns, err)
	}
	return b.describe(t, host.Attrs().Name, peer.Attrs().Index)
}

// createPair makes the veth pair with the peer end created directly inside
// the target namespace, so no half-moved interface can be left in the host
// namespace.
func (b *Bridge) createPair(t *target, br netlink.Link, hostName string, o AttachOptions) (netlink.Link, netlink.Link, error) {
	if _, err := t.h.LinkByName(o.IfName); err == nil {
		return nil, nil, fmt.Errorf("attach %s: the namespace already has an interface %s that is not a weave endpoint; remove it or choose another interface name",
			t.path, o.IfName)
	} else if !isNotFound(err) {
		return nil, nil, fmt.Errorf("attach %s: look up %s: %w", t.path, o.IfName, err)
	}
	la := netlink.NewLinkAttrs()
	la.Name = hostName
	la.MTU = o.MTU
	la.MasterIndex = br.Attrs().Index
	veth := &netlink.Veth{
		LinkAttrs:     la,
		PeerName:      o.IfName,
		PeerMTU:       uint32(o.MTU),
		PeerNamespace: netlink.NsFd(t.ns),
	}
	if err := b.h.LinkAdd(veth); err != nil {
		if isExist(err) {
			return nil, nil, fmt.Errorf("attach %s: create veth pair %s/%s: an interface of that name appeared meanwhile: %w", t.path, hostName, o.IfName, err)
		}
		return nil, nil, fmt.Errorf("attach %s: create veth pair %s/%s: %w", t.path, hostName, o.IfName, err)
	}
	host, peer, err := b.find(t, hostName)
	if err == nil && host == nil {
		err = errors.New("veth pair vanished right after creation")
	}
	if err != nil {
		if derr := b.h.LinkDel(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: hostName}}); derr != nil && !isNotFound(derr) {
			err = errors.Join(err, derr)
		}
		return nil, nil, fmt.Errorf("attach %s: %w", t.path, err)
	}
	return host, peer, nil
}

// configure brings an endpoint to the state o asks for. The order matters:
// addresses and arp_notify before the container end comes up, so the kernel
// announces the addresses then; host end up (and forwarding) before the
// container end, so that announcement can cross the bridge.
func (b *Bridge) configure(t *target, br, host, peer netlink.Link, o AttachOptions, created bool) error {
	if created {
		b.bestEffort("disable IPv6 address autoconfiguration on "+host.Attrs().Name,
			b.h.LinkSetIP6AddrGenMode(host, in6AddrGenModeNone))
	}
	if host.Attrs().MTU != o.MTU {
		if err := b.h.LinkSetMTU(host, o.MTU); err != nil {
			return fmt.Errorf("set MTU of %s: %w", host.Attrs().Name, err)
		}
	}
	if peer.Attrs().MTU != o.MTU {
		if err := t.h.LinkSetMTU(peer, o.MTU); err != nil {
			return fmt.Errorf("set MTU of %s: %w", peer.Attrs().Name, err)
		}
	}
	have, err := listAddrs(t.h, peer)
	if err != nil {
		return err
	}
	for _, p := range o.CIDRs {
		if slices.Contains(have, p) {
			continue
		}
		if err := t.h.AddrAdd(peer, prefixToAddr(p)); err != nil {
			if isExist(err) {
				return fmt.Errorf("add %s to %s: the address is already there with another prefix length; detach first", p, peer.Attrs().Name)
			}
			return fmt.Errorf("add %s to %s: %w", p, peer.Attrs().Name, err)
		}
		have = append(have, p)
	}
	if created {
		sh, err := newRawSocket(t.ns)
		if err == nil {
			err = setInetConf(sh, peer.Attrs().Index, ipv4DevconfArpNotify, 1)
			sh.Close()
		}
		b.bestEffort("enable arp_notify on "+peer.Attrs().Name+" in "+t.path, err)
	}
	if host.Attrs().MasterIndex != br.Attrs().Index {
		if err := b.h.LinkSetMaster(host, br); err != nil {
			return fmt.Errorf("add %s to bridge %s: %w", host.Attrs().Name, b.name, err)
		}
	}
	if err := b.h.LinkSetUp(host); err != nil {
		return fmt.Errorf("bring up %s: %w", host.Attrs().Name, err)
	}
	lo, err := t.h.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("find loopback: %w", err)
	}
	if err := t.h.LinkSetUp(lo); err != nil {
		return fmt.Errorf("bring up loopback: %w", err)
	}
	if err := t.h.LinkSetUp(peer); err != nil {
		return fmt.Errorf("bring up %s: %w", peer.Attrs().Name, err)
	}
	return nil
}

// find returns the host and container ends of this bridge's endpoint in t,
// or nils when there is none. It follows the host end's peer reference
// (ifindex plus namespace id) rather than trusting names: a stale or foreign
// interface that merely has the expected name is reported, not adopted.
func (b *Bridge) find(t *target, hostName string) (host, peer netlink.Link, err error) {
	host, err = b.h.LinkByName(hostName)
	if isNotFound(err) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("look up %s: %w", hostName, err)
	}
	if host.Type() != "veth" {
		return nil, nil, fmt.Errorf("host interface %s exists and is a %s, not a veth; delete it (ip link del %s)",
			hostName, host.Type(), hostName)
	}
	nsid, err := b.h.GetNetNsIdByFd(int(t.ns))
	if err != nil {
		return nil, nil, fmt.Errorf("network namespace %s: query namespace id: %w", t.path, err)
	}
	if nsid < 0 || host.Attrs().NetNsID != nsid {
		return nil, nil, fmt.Errorf("host interface %s already connects another network namespace (endpoint id %s clashes); detach that namespace first",
			hostName, t.id)
	}
	peer, err = t.h.LinkByIndex(host.Attrs().ParentIndex)
	if err != nil || peer.Type() != "veth" || peer.Attrs().ParentIndex != host.Attrs().Index {
		return nil, nil, fmt.Errorf("host interface %s: cannot find its peer in %s: %v", hostName, t.path, err)
	}
	return host, peer, nil
}

// describe reads the endpoint back from the kernel.
func (b *Bridge) describe(t *target, hostName string, peerIndex int) (Endpoint, error) {
	peer, err := t.h.LinkByIndex(peerIndex)
	if err != nil {
		return Endpoint{}, fmt.Errorf("read endpoint in %s: %w", t.path, err)
	}
	addrs, err := listAddrs(t.h, peer)
	if err != nil {
		return Endpoint{}, err
	}
	return Endpoint{
		ID:        t.id,
		Netns:     t.path,
		HostIface: hostName,
		Iface:     peer.Attrs().Name,
		MAC:       peer.Attrs().HardwareAddr,
		CIDRs:     addrs,
		MTU:       peer.Attrs().MTU,
	}, nil
}

// Inspect returns the current state of this bridge's endpoint in the
// namespace at path, or an error wrapping ErrNotAttached.
func (b *Bridge) Inspect(path string) (Endpoint, error) {
	t, err := openTarget(path)
	if err != nil {
		return Endpoint{}, err
	}
	defer t.close()
	if err := b.lock(); err != nil {
		return Endpoint{}, err
	}
	defer b.mu.Unlock()
	host, peer, err := b.find(t, HostIfaceName(t.id))
	if err != nil {
		return Endpoint{}, err
	}
	if host == nil {
		return Endpoint{}, fmt.Errorf("%s: %w", path, ErrNotAttached)
	}
	return b.describe(t, host.Attrs().Name, peer.Attrs().Index)
}

// Detach deletes the endpoint in the namespace at path (the veth pair, and
// with it the container's overlay addresses) and returns what it was. It
// fails with an error wrapping ErrNotAttached if there is none.
func (b *Bridge) Detach(path string) (Endpoint, error) {
	t, err := openTarget(path)
	if err != nil {
		return Endpoint{}, err
	}
	defer t.close()
	if err := b.lock(); err != nil {
		return Endpoint{}, err
	}
	defer b.mu.Unlock()
	host, peer, err := b.find(t, HostIfaceName(t.id))
	if err != nil {
		return Endpoint{}, err
	}
	if host == nil {
		return Endpoint{}, fmt.Errorf("detach %s: %w", path, ErrNotAttached)
	}
	ep, err := b.describe(t, host.Attrs().Name, peer.Attrs().Index)
	if err != nil {
		return Endpoint{}, err
	}
	if err := b.h.LinkDel(host); err != nil && !isNotFound(err) {
		return Endpoint{}, fmt.Errorf("detach %s: delete %s: %w", path, host.Attrs().Name, err)
	}
	return ep, nil
}

// RemoveAddrs removes cidrs from the container end of the endpoint in the
// namespace at path, undoing an Attach that added them to an endpoint
// that was there before; addresses it does not hold are skipped. It fails
// with an error wrapping ErrNotAttached if there is no endpoint.
func (b *Bridge) RemoveAddrs(path string, cidrs []netip.Prefix) error {
	t, err := openTarget(path)
	if err != nil {
		return err
	}
	defer t.close()
	if err := b.lock(); err != nil {
		return err
	}
	defer b.mu.Unlock()
	host, peer, err := b.find(t, HostIfaceName(t.id))
	if err != nil {
		return err
	}
	if host == nil {
		return fmt.Errorf("remove addresses in %s: %w", path, ErrNotAttached)
	}
	have, err := listAddrs(t.h, peer)
	if err != nil {
		return err
	}
	for _, p := range cidrs {
		if !slices.Contains(have, p) {
			continue
		}
		if err := t.h.AddrDel(peer, prefixToAddr(p)); err != nil && !isNotFound(err) {
			return fmt.Errorf("remove %s from %s: %w", p, peer.Attrs().Name, err)
		}
	}
	return nil
}

// Endpoints lists the bridge's endpoint ports: veths on the bridge whose
// names start with HostIfacePrefix. The host side cannot name the container
// namespace, so ID and Netns are empty; the container side (Iface, MAC,
// CIDRs, MTU) is read through the kernel's namespace ids and left empty when
// that fails (MTU then is the host end's).
func (b *Bridge) Endpoints() ([]Endpoint, error) {
	if err := b.lock(); err != nil {
		return nil, err
	}
	defer b.mu.Unlock()
	br, err := b.link()
	if err != nil {
		return nil, err
	}
	links, err := retryDump(b.h.LinkList)
	if err != nil {
		return nil, fmt.Errorf("list interfaces: %w", err)
	}
	var out []Endpoint
	for _, l := range links {
		a := l.Attrs()
		if l.Type() != "veth" || a.MasterIndex != br.Attrs().Index || !strings.HasPrefix(a.Name, HostIfacePrefix) {
			continue
		}
		ep := Endpoint{HostIface: a.Name, MTU: a.MTU}
		if a.NetNsID >= 0 {
			if p, err := peerLink(b.raw, a.NetNsID, a.ParentIndex); err == nil {
				pa := p.Attrs()
				ep.Iface, ep.MAC, ep.MTU = pa.Name, pa.HardwareAddr, pa.MTU
				if cidrs, err := peerAddrs(b.raw, a.NetNsID, a.ParentIndex); err == nil {
					ep.CIDRs = cidrs
				} else {
					b.log.Debug("netdev: read endpoint addresses", "iface", a.Name, "err", err)
				}
			} else {
				b.log.Debug("netdev: read endpoint peer", "iface", a.Name, "err", err)
			}
		}
		out = append(out, ep)
	}
	return out, nil
}
