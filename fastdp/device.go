package fastdp

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

var (
	// ErrNotOurs reports that a link with the device's name exists and was
	// not made by this package; Ensure and RemoveLeftover leave it alone.
	ErrNotOurs = errors.New("link exists and was not made by weave fastdp")
	// ErrClosed reports use of a Device after Close or Remove.
	ErrClosed = errors.New("fastdp: device handle closed")
)

// netlinkTimeout bounds every netlink exchange so a wedged kernel path
// surfaces as an error instead of a hung router.
const netlinkTimeout = 10 * time.Second

// in6AddrGenModeNone is IN6_ADDR_GEN_MODE_NONE from linux/if_link.h.
const in6AddrGenModeNone = 1

// Device is the VXLAN device of one host. Its methods act in the network
// namespace Ensure ran in and are safe for concurrent use.
type Device struct {
	opt Options // validated
	vni uint32
	log *slog.Logger

	// mu serialises every operation (reconciles are list-diff-apply
	// sequences on kernel state) and guards all following fields.
	mu     sync.Mutex
	h      *netlink.Handle // the namespace Ensure ran in
	ioctl  int             // AF_INET socket there, for ethtool requests
	index  int             // the device's ifindex
	mac    MAC             // the device's own address
	vnis   map[Entry]int   // per-entry VNI seen by the last List, when not the device's
	closed bool
}

// Ensure makes the VXLAN device in the calling thread's network namespace
// and returns it configured: VNI VNIFor(o.MeshName), UDP port o.Port,
// learning off, MTU o.MTU, a port of o.Bridge (isolated unless
// o.NoPortIsolation), IPv6 autoconfiguration off, checksum offload per
// o.TxChecksumOff, up.
//
// It is idempotent. A device of that name left by an earlier run (a
// crashed router) is adopted when its fixed settings (VNI, port, local
// address, learning) match, and deleted and made anew when they do not;
// either way its MTU, bridge, isolation, offloads and state are set again.
// Its old forwarding entries stay until the caller's first Reconcile,
// which removes those it does not want. A link of that name that this
// package did not make is an error wrapping ErrNotOurs and is not touched.
//
// Release the Device with Remove (the device goes) or Close (it stays).
func Ensure(o Options) (*Device, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	h, err := netlink.NewHandleAt(netns.None(), unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("fastdp: open netlink socket: %w", err)
	}
	if err := h.SetSocketTimeout(netlinkTimeout); err != nil {
		h.Close()
		return nil, fmt.Errorf("fastdp: netlink socket timeout: %w", err)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("fastdp: open socket for ethtool requests: %w", err)
	}
	d := &Device{opt: o, vni: VNIFor(o.MeshName), log: o.Logger, h: h, ioctl: fd}
	if err := d.ensure(); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

// wantLink is the device as Ensure creates it.
func (d *Device) wantLink() *netlink.Vxlan {
	la := netlink.NewLinkAttrs()
	la.Name = d.opt.Name
	la.MTU = d.opt.MTU
	la.Alias = ownerAlias
	v := &netlink.Vxlan{LinkAttrs: la, VxlanId: int(d.vni), Port: d.opt.Port, Learning: false}
	if d.opt.Local.IsValid() {
		v.SrcAddr = net.IP(d.opt.Local.AsSlice())
	}
	return v
}

// mismatch says why an existing VXLAN device cannot be adopted, or "" when
// it can. Only settings that need a new device count; the rest Ensure sets
// in place.
func (d *Device) mismatch(v *netlink.Vxlan) string {
	var local netip.Addr
	if a, ok := netip.AddrFromSlice(v.SrcAddr); ok {
		local = a.Unmap()
	}
	switch {
	case v.VxlanId != int(d.vni):
		return fmt.Sprintf("VNI %d, want %d", v.VxlanId, d.vni)
	case v.Port != d.opt.Port:
		return fmt.Sprintf("port %d, want %d", v.Port, d.opt.Port)
	case local != d.opt.Local && !(local.IsUnspecified() && !d.opt.Local.IsValid()):
		return fmt.Sprintf("local address %v, want %v", local, d.opt.Local)
	case v.Learning:
		return "learning on"
	case v.FlowBased:
		return "external (flow-based) mode"
	case len(v.Group) > 0 && !v.Group.IsUnspecified():
		return fmt.Sprintf("group/remote %s", v.Group)
	case v.VtepDevIndex != 0:
		return "bound to an underlay device"
	}
	return ""
}

func (d *Device) ensure() error {
	name := d.opt.Name
	br, err := d.h.LinkByName(d.opt.Bridge)
	switch {
	case isNotFound(err):
		return fmt.Errorf("fastdp: bridge %s not found; create the bridge before the VXLAN device", d.opt.Bridge)
	case err != nil:
		return fmt.Errorf("fastdp: look up bridge %s: %w", d.opt.Bridge, err)
	case br.Type() != "bridge":
		return fmt.Errorf("fastdp: Options.Bridge %s is a %s link, not a bridge", d.opt.Bridge, br.Type())
	}

	link, err := d.h.LinkByName(name)
	switch {
	case isNotFound(err):
		link = nil
	case err != nil:
		return fmt.Errorf("fastdp: look up %s: %w", name, err)
	default:
		if !owned(link) {
			return fmt.Errorf("fastdp: %s: %w (a %s link, alias %q); delete it (ip link del %s) or set another device name",
				name, ErrNotOurs, link.Type(), link.Attrs().Alias, name)
		}
		if why := d.mismatch(link.(*netlink.Vxlan)); why != "" {
			d.log.Info("fastdp: replacing leftover VXLAN device with other settings", "iface", name, "reason", why)
			if err := d.h.LinkDel(link); err != nil && !isNotFound(err) {
				return fmt.Errorf("fastdp: delete leftover %s (%s): %w", name, why, err)
			}
			link = nil
		} else {
			d.log.Info("fastdp: adopting leftover VXLAN device", "iface", name)
		}
	}

	created := false
	if link == nil {
		if err := d.h.LinkAdd(d.wantLink()); err != nil {
			if errors.Is(err, syscall.EEXIST) {
				return fmt.Errorf("fastdp: create %s: %w: another VXLAN device may already use VNI %d on UDP port %d (ip -d link show type vxlan), or a link %s appeared meanwhile",
					name, err, d.vni, d.opt.Port, name)
			}
			return fmt.Errorf("fastdp: create VXLAN device %s (VNI %d, port %d): %w", name, d.vni, d.opt.Port, err)
		}
		created = true
		if link, err = d.h.LinkByName(name); err != nil {
			return fmt.Errorf("fastdp: look up %s after creating it: %w", name, err)
		}
		if link.Attrs().Alias != ownerAlias { // kernels that ignore IFLA_IFALIAS on create
			if err := d.h.LinkSetAlias(link, ownerAlias); err != nil {
				d.h.LinkDel(link)
				return fmt.Errorf("fastdp: mark %s as ours (alias): %w", name, err)
			}
		}
	}
	if err := d.configure(link, br, created); err != nil {
		if created {
			d.h.LinkDel(link)
		}
		return err
	}
	return nil
}

// configure sets what an adopted device may have lost, and a new one
// still lacks.
func (d *Device) configure(link, br netlink.Link, created bool) error {
	name := d.opt.Name
	a := link.Attrs()
	if a.Flags&net.FlagUp == 0 {
		// Before "up", or the kernel assigns a link-local address to a
		// bridge port. Best effort: IPv6 may be off.
		if err := d.h.LinkSetIP6AddrGenMode(link, in6AddrGenModeNone); err != nil && created &&
			!errors.Is(err, unix.EAFNOSUPPORT) && !errors.Is(err, unix.EOPNOTSUPP) {
			d.log.Warn("fastdp: could not turn off IPv6 autoconfiguration", "iface", name, "err", err)
		}
	}
	if a.MTU != d.opt.MTU {
		if err := d.h.LinkSetMTU(link, d.opt.MTU); err != nil {
			return fmt.Errorf("fastdp: %s: set MTU %d: %w", name, d.opt.MTU, err)
		}
	}
	if a.MasterIndex != br.Attrs().Index {
		if err := d.h.LinkSetMaster(link, br); err != nil {
			return fmt.Errorf("fastdp: %s: attach to bridge %s: %w", name, d.opt.Bridge, err)
		}
	}
	if err := d.h.LinkSetIsolated(link, !d.opt.NoPortIsolation); err != nil {
		return fmt.Errorf("fastdp: %s: set bridge port isolation %v: %w", name, !d.opt.NoPortIsolation, err)
	}
	if err := setFeature(d.ioctl, name, featTxChecksumIPGeneric, !d.opt.TxChecksumOff); err != nil {
		if d.opt.TxChecksumOff {
			return fmt.Errorf("fastdp: %s: turn %s off (Options.TxChecksumOff): %w", name, featTxChecksumIPGeneric, err)
		}
		// Putting the kernel's default back on an adopted device is best
		// effort: a kernel that cannot have it on does without.
		d.log.Warn("fastdp: could not turn "+featTxChecksumIPGeneric+" back on", "iface", name, "err", err)
	}
	if err := d.h.LinkSetUp(link); err != nil {
		return fmt.Errorf("fastdp: %s: bring up (is UDP port %d free?): %w", name, d.opt.Port, err)
	}
	d.index = a.Index
	if m, ok := MACFrom(a.HardwareAddr); ok {
		d.mac = m
	}
	return nil
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// owned reports whether link was made by this package.
func owned(link netlink.Link) bool {
	_, ok := link.(*netlink.Vxlan)
	return ok && link.Attrs().Alias == ownerAlias
}

// Name returns the device's interface name.
func (d *Device) Name() string { return d.opt.Name }

// VNI returns the device's VXLAN network identifier.
func (d *Device) VNI() uint32 { return d.vni }

// Port returns the device's UDP port.
func (d *Device) Port() int { return d.opt.Port }

// MTU returns the device's MTU.
func (d *Device) MTU() int { return d.opt.MTU }

// Index returns the device's interface index.
func (d *Device) Index() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.index
}

// MAC returns the device's own Ethernet address. Frames sent to it through
// a peer's device end at this host's bridge (it is the port's local
// address) and reach no container: the target for probe frames.
func (d *Device) MAC() MAC {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.mac
}

// lock takes mu and fails if the Device is closed.
func (d *Device) lock() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return ErrClosed
	}
	return nil
}

// linkLocked returns the device, checking it is still the one Ensure made.
func (d *Device) linkLocked() (netlink.Link, error) {
	l, err := d.h.LinkByIndex(d.index)
	if isNotFound(err) || (err == nil && (l.Attrs().Name != d.opt.Name || !owned(l))) {
		return nil, fmt.Errorf("fastdp: device %s is gone; Ensure again to recreate it", d.opt.Name)
	}
	if err != nil {
		return nil, fmt.Errorf("fastdp: look up %s: %w", d.opt.Name, err)
	}
	return l, nil
}

// Counters are the device's kernel counters: Tx counts frames the bridge
// handed the device (sent encapsulated), Rx frames that arrived
// encapsulated from peers.
type Counters struct {
	RxPackets, RxBytes, RxErrors, RxDropped uint64
	TxPackets, TxBytes, TxErrors, TxDropped uint64
}

// Counters reads the device's counters.
func (d *Device) Counters() (Counters, error) {
	if err := d.lock(); err != nil {
		return Counters{}, err
	}
	defer d.mu.Unlock()
	l, err := d.linkLocked()
	if err != nil {
		return Counters{}, err
	}
	s := l.Attrs().Statistics
	if s == nil {
		return Counters{}, fmt.Errorf("fastdp: %s: the kernel reported no statistics", d.opt.Name)
	}
	return Counters{
		RxPackets: s.RxPackets, RxBytes: s.RxBytes, RxErrors: s.RxErrors, RxDropped: s.RxDropped,
		TxPackets: s.TxPackets, TxBytes: s.TxBytes, TxErrors: s.TxErrors, TxDropped: s.TxDropped,
	}, nil
}

// TxChecksum reports whether tx-checksum-ip-generic is active on the
// device.
func (d *Device) TxChecksum() (bool, error) {
	if err := d.lock(); err != nil {
		return false, err
	}
	defer d.mu.Unlock()
	on, err := getFeature(d.ioctl, d.opt.Name, featTxChecksumIPGeneric)
	if err != nil {
		return false, fmt.Errorf("fastdp: %s: read %s: %w", d.opt.Name, featTxChecksumIPGeneric, err)
	}
	return on, nil
}

// Remove deletes the device, and with it every forwarding entry on it, and
// closes d. It deletes only the device Ensure made: a device already gone,
// or replaced by a link this package did not make, is left alone and is
// not an error.
func (d *Device) Remove() error {
	if err := d.lock(); err != nil {
		return err
	}
	defer d.mu.Unlock()
	var err error
	if l, lerr := d.linkLocked(); lerr == nil {
		if err = d.h.LinkDel(l); isNotFound(err) {
			err = nil
		} else if err != nil {
			err = fmt.Errorf("fastdp: delete %s: %w", d.opt.Name, err)
		}
	}
	d.closeLocked()
	return err
}

// Close releases the sockets; the device and its forwarding entries stay
// (a router that restarts adopts them). Idempotent.
func (d *Device) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closeLocked()
	return nil
}

func (d *Device) closeLocked() {
	if d.closed {
		return
	}
	d.closed = true
	d.h.Close()
	unix.Close(d.ioctl)
}

// RemoveLeftover deletes the device called name (DefaultName when empty)
// in the calling thread's network namespace if this package made it: what
// `weave reset` or `weave stop` call when no router holds a Device. It
// reports whether a device was deleted; a link of that name that is not
// ours is an error wrapping ErrNotOurs and stays.
func RemoveLeftover(name string) (bool, error) {
	if name == "" {
		name = DefaultName
	}
	if err := validIfName(name); err != nil {
		return false, fmt.Errorf("fastdp: RemoveLeftover: %w", err)
	}
	h, err := netlink.NewHandleAt(netns.None(), unix.NETLINK_ROUTE)
	if err != nil {
		return false, fmt.Errorf("fastdp: open netlink socket: %w", err)
	}
	defer h.Close()
	if err := h.SetSocketTimeout(netlinkTimeout); err != nil {
		return false, fmt.Errorf("fastdp: netlink socket timeout: %w", err)
	}
	l, err := h.LinkByName(name)
	switch {
	case isNotFound(err):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("fastdp: look up %s: %w", name, err)
	case !owned(l):
		return false, fmt.Errorf("fastdp: %s: %w (a %s link, alias %q); not deleting it", name, ErrNotOurs, l.Type(), l.Attrs().Alias)
	}
	if err := h.LinkDel(l); err != nil && !isNotFound(err) {
		return false, fmt.Errorf("fastdp: delete %s: %w", name, err)
	}
	return true, nil
}

func isNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf) || errors.Is(err, unix.ENODEV)
}
