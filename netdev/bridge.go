package netdev

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"weavemesh.dev/weave/internal/ifname"
)

// Names used on the host.
const (
	DefaultBridge   = "weave" // bridge name unless BridgeOptions.Name says otherwise
	DefaultIfName   = "ethwe" // container-side interface name unless AttachOptions.IfName says otherwise
	HostIfacePrefix = "vwe"   // host-side veth ends are HostIfacePrefix + 8 hex characters
)

// MTU limits accepted by the options structs: the IPv4 minimum and the
// largest value the netlink attribute can carry on Ethernet-like links.
const (
	MinMTU = 68
	MaxMTU = 65535
	// MinIPv6MTU is the smallest MTU on which IPv6 works at all.
	MinIPv6MTU = 1280
)

var (
	// ErrNotBridge reports that a link with the bridge's name exists and is
	// something else.
	ErrNotBridge = errors.New("link exists and is not a bridge")
	// ErrClosed reports use of a Bridge after Close or Delete.
	ErrClosed = errors.New("netdev: bridge handle closed")
)

// BridgeOptions configures EnsureBridge.
type BridgeOptions struct {
	// Name of the bridge; DefaultBridge when empty.
	Name string
	// MTU of the bridge and of every port added to it. Required.
	MTU int
	// Logger receives notes about best-effort settings that could not be
	// applied; nil discards them.
	Logger *slog.Logger
}

func (o *BridgeOptions) validate() error {
	if o.Name == "" {
		o.Name = DefaultBridge
	}
	if err := validIfName(o.Name); err != nil {
		return fmt.Errorf("BridgeOptions.Name: %w", err)
	}
	if o.MTU == 0 {
		return errors.New("BridgeOptions.MTU is required (the overlay MTU, e.g. 1376)")
	}
	if o.MTU < MinMTU || o.MTU > MaxMTU {
		return fmt.Errorf("BridgeOptions.MTU %d is outside %d..%d", o.MTU, MinMTU, MaxMTU)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// validIfName checks an interface name (internal/ifname).
func validIfName(name string) error { return ifname.Valid(name) }

// Bridge is the overlay bridge of one host. Its methods act in the network
// namespace EnsureBridge ran in and are safe for concurrent use.
type Bridge struct {
	name string
	mtu  int
	log  *slog.Logger

	// mu serialises every operation: endpoint changes are read-check-modify
	// sequences on shared kernel state, and Close must not pull the sockets
	// from under a running call. It guards h, raw and closed.
	mu     sync.Mutex
	h      *netlink.Handle  // host namespace, for everything the library covers
	raw    *nl.SocketHandle // host namespace, strict checking, for raw requests
	closed bool
}

// EnsureBridge creates the bridge in the calling thread's network namespace,
// or adopts an existing bridge of that name, and configures it: MTU, STP and
// multicast snooping off, MAC address pinned, IPv6 router advertisements
// ignored, up. It is idempotent, so a restarting router calls it again and
// keeps its bridge (and the containers attached to it). Release the returned
// Bridge with Close.
func EnsureBridge(o BridgeOptions) (*Bridge, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	h, err := newHandle(netns.None())
	if err != nil {
		return nil, fmt.Errorf("open netlink socket: %w", err)
	}
	raw, err := newRawSocket(netns.None())
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("open netlink socket: %w", err)
	}
	b := &Bridge{name: o.Name, mtu: o.MTU, log: o.Logger, h: h, raw: raw}
	if err := b.ensure(); err != nil {
		b.Close()
		return nil, err
	}
	return b, nil
}

func (b *Bridge) ensure() error {
	link, err := b.h.LinkByName(b.name)
	created := false
	switch {
	case err == nil:
		if link.Type() != "bridge" {
			return fmt.Errorf("bridge %s: %w: it is a %s link; delete it (ip link del %s) or choose another bridge name",
				b.name, ErrNotBridge, link.Type(), b.name)
		}
	case isNotFound(err):
		off := false
		la := netlink.NewLinkAttrs()
		la.Name = b.name
		la.MTU = b.mtu
		err := b.h.LinkAdd(&netlink.Bridge{LinkAttrs: la, MulticastSnooping: &off})
		if err != nil && !isExist(err) { // EEXIST: another process won the race
			return fmt.Errorf("create bridge %s: %w", b.name, err)
		}
		created = err == nil
		if link, err = b.h.LinkByName(b.name); err != nil {
			return fmt.Errorf("bridge %s: %w", b.name, err)
		}
		if link.Type() != "bridge" {
			return fmt.Errorf("bridge %s: %w: it is a %s link", b.name, ErrNotBridge, link.Type())
		}
	default:
		return fmt.Errorf("look up bridge %s: %w", b.name, err)
	}
	attrs := link.Attrs()
	if created {
		// Before the first "up", or the kernel assigns a link-local address.
		b.bestEffort("disable IPv6 address autoconfiguration on "+b.name,
			b.h.LinkSetIP6AddrGenMode(link, in6AddrGenModeNone))
	}
	if err := setBridgeParams(b.raw, attrs.Index); err != nil {
		return fmt.Errorf("bridge %s: turn off STP and multicast snooping: %w", b.name, err)
	}
	if len(attrs.HardwareAddr) == 6 {
		if err := b.h.LinkSetHardwareAddr(link, attrs.HardwareAddr); err != nil {
			return fmt.Errorf("bridge %s: pin MAC address: %w", b.name, err)
		}
	}
	b.bestEffort("ignore IPv6 router advertisements on "+b.name,
		writeSysctl("net/ipv6/conf/"+b.name+"/accept_ra", "0"))
	if attrs.MTU != b.mtu {
		if err := b.h.LinkSetMTU(link, b.mtu); err != nil {
			return fmt.Errorf("bridge %s: set MTU %d: %w", b.name, b.mtu, err)
		}
	}
	if err := b.h.LinkSetUp(link); err != nil {
		return fmt.Errorf("bridge %s: bring up: %w", b.name, err)
	}
	return nil
}

// writeSysctl writes a /proc/sys value. /proc/sys/net resolves against the
// network namespace of the calling thread, which is why only EnsureBridge,
// running in the namespace it adopts, uses it. A missing file (IPv6 compiled
// out or disabled) is not an error.
func writeSysctl(key, val string) error {
	err := os.WriteFile("/proc/sys/"+key, []byte(val), 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

func (b *Bridge) bestEffort(what string, err error) {
	if err != nil && !errors.Is(err, unix.EAFNOSUPPORT) && !errors.Is(err, unix.EOPNOTSUPP) {
		b.log.Warn("netdev: could not "+what, "err", err)
	}
}

// Name returns the bridge's interface name.
func (b *Bridge) Name() string { return b.name }

// MTU returns the MTU the bridge and its ports are set to.
func (b *Bridge) MTU() int { return b.mtu }

// lock takes mu and fails if the Bridge is closed.
func (b *Bridge) lock() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return ErrClosed
	}
	return nil
}

// link returns the bridge link, checking it is still there and still a bridge.
// Called with mu held.
func (b *Bridge) link() (netlink.Link, error) {
	l, err := b.h.LinkByName(b.name)
	if isNotFound(err) {
		return nil, fmt.Errorf("bridge %s is gone; restart the router to recreate it", b.name)
	}
	if err != nil {
		return nil, fmt.Errorf("look up bridge %s: %w", b.name, err)
	}
	if l.Type() != "bridge" {
		return nil, fmt.Errorf("bridge %s: %w: it is a %s link", b.name, ErrNotBridge, l.Type())
	}
	return l, nil
}

// AddPort makes the existing interface ifname (for example the sleeve TAP)
// a port of the bridge with the bridge's MTU, and brings it up. Idempotent.
func (b *Bridge) AddPort(ifname string) error {
	if err := validIfName(ifname); err != nil {
		return fmt.Errorf("port: %w", err)
	}
	if err := b.lock(); err != nil {
		return err
	}
	defer b.mu.Unlock()
	br, err := b.link()
	if err != nil {
		return err
	}
	port, err := b.h.LinkByName(ifname)
	if isNotFound(err) {
		return fmt.Errorf("add port %s to bridge %s: no such interface", ifname, b.name)
	}
	if err != nil {
		return fmt.Errorf("add port %s to bridge %s: %w", ifname, b.name, err)
	}
	pa := port.Attrs()
	if pa.Index == br.Attrs().Index {
		return fmt.Errorf("add port %s to bridge %s: a bridge cannot be its own port", ifname, b.name)
	}
	if pa.Flags&net.FlagUp == 0 { // not up yet: no link-local address assigned so far
		b.bestEffort("disable IPv6 address autoconfiguration on "+ifname,
			b.h.LinkSetIP6AddrGenMode(port, in6AddrGenModeNone))
	}
	if pa.MTU != b.mtu {
		if err := b.h.LinkSetMTU(port, b.mtu); err != nil {
			return fmt.Errorf("add port %s to bridge %s: set MTU %d: %w", ifname, b.name, b.mtu, err)
		}
	}
	if pa.MasterIndex != br.Attrs().Index {
		if err := b.h.LinkSetMaster(port, br); err != nil {
			return fmt.Errorf("add port %s to bridge %s: %w", ifname, b.name, err)
		}
	}
	if err := b.h.LinkSetUp(port); err != nil {
		return fmt.Errorf("add port %s to bridge %s: bring up: %w", ifname, b.name, err)
	}
	return nil
}

// Delete removes the bridge (its veth ports, and so the endpoints, stay; they
// only lose their bridge) and closes b. Deleting a bridge that is already gone
// is not an error.
func (b *Bridge) Delete() error {
	if err := b.lock(); err != nil {
		return err
	}
	l, err := b.h.LinkByName(b.name)
	switch {
	case isNotFound(err):
		err = nil
	case err != nil:
		err = fmt.Errorf("look up bridge %s: %w", b.name, err)
	case l.Type() != "bridge":
		err = fmt.Errorf("delete bridge %s: %w", b.name, ErrNotBridge)
	default:
		if err = b.h.LinkDel(l); err != nil {
			err = fmt.Errorf("delete bridge %s: %w", b.name, err)
		}
	}
	b.closeLocked()
	b.mu.Unlock()
	return err
}

// Close releases the netlink sockets; the bridge itself stays. Idempotent.
func (b *Bridge) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closeLocked()
	return nil
}

func (b *Bridge) closeLocked() {
	if b.closed {
		return
	}
	b.closed = true
	b.h.Close()
	b.raw.Close()
}

// Expose adds p (an address with its prefix, e.g. 10.32.0.1/12) to the
// bridge, giving the host an address on the overlay and a route to it.
// Adding an address that is already there is not an error.
func (b *Bridge) Expose(p netip.Prefix) error {
	if err := checkPrefix(p); err != nil {
		return fmt.Errorf("expose: %w", err)
	}
	if err := b.lock(); err != nil {
		return err
	}
	defer b.mu.Unlock()
	br, err := b.link()
	if err != nil {
		return err
	}
	have, err := b.addrs(br)
	if err != nil {
		return err
	}
	for _, q := range have {
		if q == p {
			return nil
		}
		if q.Addr() == p.Addr() {
			return fmt.Errorf("expose %s: bridge %s already has %s; hide that first", p, b.name, q)
		}
	}
	if err := b.h.AddrAdd(br, prefixToAddr(p)); err != nil {
		return fmt.Errorf("expose %s on bridge %s: %w", p, b.name, err)
	}
	return nil
}

// Hide removes p from the bridge. Removing an address that is not there is
// not an error.
func (b *Bridge) Hide(p netip.Prefix) error {
	if err := checkPrefix(p); err != nil {
		return fmt.Errorf("hide: %w", err)
	}
	if err := b.lock(); err != nil {
		return err
	}
	defer b.mu.Unlock()
	br, err := b.link()
	if err != nil {
		return err
	}
	have, err := b.addrs(br)
	if err != nil {
		return err
	}
	for _, q := range have {
		if q == p {
			if err := b.h.AddrDel(br, prefixToAddr(p)); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
				return fmt.Errorf("hide %s on bridge %s: %w", p, b.name, err)
			}
			return nil
		}
	}
	return nil
}

// Addrs lists the bridge's addresses, IPv6 link-local ones excluded.
func (b *Bridge) Addrs() ([]netip.Prefix, error) {
	if err := b.lock(); err != nil {
		return nil, err
	}
	defer b.mu.Unlock()
	br, err := b.link()
	if err != nil {
		return nil, err
	}
	return b.addrs(br)
}

func (b *Bridge) addrs(l netlink.Link) ([]netip.Prefix, error) {
	return listAddrs(b.h, l)
}

func listAddrs(h *netlink.Handle, l netlink.Link) ([]netip.Prefix, error) {
	as, err := retryDump(func() ([]netlink.Addr, error) { return h.AddrList(l, netlink.FAMILY_ALL) })
	if err != nil {
		return nil, fmt.Errorf("list addresses of %s: %w", l.Attrs().Name, err)
	}
	var out []netip.Prefix
	for _, a := range as {
		if p, ok := addrToPrefix(a); ok && !p.Addr().IsLinkLocalUnicast() {
			out = append(out, p)
		}
	}
	return out, nil
}

// checkPrefix rejects prefixes the kernel would refuse or misread.
func checkPrefix(p netip.Prefix) error {
	switch {
	case !p.IsValid():
		return fmt.Errorf("invalid address/prefix %v", p)
	case p.Addr().Is4In6():
		return fmt.Errorf("%v: write IPv4-mapped addresses in plain IPv4 form", p)
	case p.Addr().Zone() != "":
		return fmt.Errorf("%v: addresses with a zone are not supported", p)
	case p.Addr().IsUnspecified() || p.Addr().IsMulticast() || p.Addr().IsLoopback():
		return fmt.Errorf("%v is not a unicast address", p.Addr())
	}
	return nil
}

// DeleteBridgeByName removes the bridge called name if there is one, for
// weave reset after the router stopped: its ports go with it. It reports
// whether there was one, and refuses a link of that name that is not a
// bridge.
func DeleteBridgeByName(name string) (bool, error) {
	l, err := netlink.LinkByName(name)
	switch {
	case isNotFound(err):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("look up bridge %s: %w", name, err)
	case l.Type() != "bridge":
		return false, fmt.Errorf("delete bridge %s: %w", name, ErrNotBridge)
	}
	if err := netlink.LinkDel(l); err != nil {
		return false, fmt.Errorf("delete bridge %s: %w", name, err)
	}
	return true, nil
}
