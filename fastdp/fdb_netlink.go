package fastdp

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// The kernel side of FDB: the VXLAN driver's own forwarding table of the
// device, reached with RTM_*NEIGH messages of family AF_BRIDGE, as
// `bridge fdb {show,append,replace,del} dev DEV ... self` does.

// Reconcile makes the device's forwarding table equal to want; see the
// package-level Reconcile. It serialises with the Device's other methods.
func (d *Device) Reconcile(want Desired) (Changes, error) {
	if err := d.lock(); err != nil {
		return Changes{}, err
	}
	defer d.mu.Unlock()
	if _, err := d.linkLocked(); err != nil {
		return Changes{}, err
	}
	return Reconcile(deviceFDB{d}, want)
}

// Entries lists the device's forwarding entries that Reconcile owns.
func (d *Device) Entries() ([]Entry, error) {
	if err := d.lock(); err != nil {
		return nil, err
	}
	defer d.mu.Unlock()
	return deviceFDB{d}.List()
}

// ForgetLearned deletes what the bridge learned (NTF_MASTER entries) about
// macs on the device's port, so that the bridge floods frames for them
// again until it learns where they are now. The router calls it for the
// MACs behind a peer whose pair moves from fastdp to the sleeve: otherwise
// the bridge keeps sending their frames into the tunnel, where the peer's
// entries are gone, for up to the bridge's ageing time. Entries the bridge
// does not have are not an error.
func (d *Device) ForgetLearned(macs ...MAC) error {
	if err := d.lock(); err != nil {
		return err
	}
	defer d.mu.Unlock()
	var errs []error
	for _, m := range macs {
		err := d.h.NeighDel(&netlink.Neigh{
			LinkIndex:    d.index,
			Family:       unix.AF_BRIDGE,
			Flags:        netlink.NTF_MASTER,
			HardwareAddr: m.HardwareAddr(),
		})
		if err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("%s: %w", m, err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("fastdp: forget learned MACs on %s: %w", d.opt.Name, errors.Join(errs...))
	}
	return nil
}

// deviceFDB is the FDB of a Device; its methods run with d.mu held.
type deviceFDB struct{ d *Device }

func (f deviceFDB) List() ([]Entry, error) {
	d := f.d
	var (
		ns  []netlink.Neigh
		err error
	)
	for range 5 { // a dump interrupted by a concurrent change is retried
		ns, err = d.h.NeighList(d.index, unix.AF_BRIDGE)
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", d.opt.Name, err)
	}
	out := make([]Entry, 0, len(ns))
	d.vnis = map[Entry]int{}
	for _, n := range ns {
		e, ok := ownEntry(n, d.index)
		if !ok {
			continue
		}
		out = append(out, e)
		if n.VNI != 0 && n.VNI != int(d.vni) {
			d.vnis[e] = n.VNI
		}
	}
	return out, nil
}

// ownEntry converts a neighbour of the AF_BRIDGE dump into an Entry when
// it is one Reconcile owns: the VXLAN driver's own (NTF_SELF) entry on the
// device with index, with a MAC and a destination. The bridge's entries
// for the port (NTF_MASTER: its permanent local address, MACs it learned
// from frames that came out of the tunnel) and the kernel's address-list
// entries (NTF_SELF without a destination) are not.
func ownEntry(n netlink.Neigh, index int) (Entry, bool) {
	if n.LinkIndex != index || n.Family != unix.AF_BRIDGE ||
		n.Flags&netlink.NTF_SELF == 0 || n.Flags&netlink.NTF_MASTER != 0 || n.MasterIndex != 0 {
		return Entry{}, false
	}
	m, ok := MACFrom(n.HardwareAddr)
	if !ok {
		return Entry{}, false
	}
	dst, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return Entry{}, false
	}
	return Entry{MAC: m, Dst: dst.Unmap()}, true
}

func (f deviceFDB) neigh(e Entry) *netlink.Neigh {
	return &netlink.Neigh{
		LinkIndex:    f.d.index,
		Family:       unix.AF_BRIDGE,
		State:        netlink.NUD_PERMANENT, // never aged out
		Flags:        netlink.NTF_SELF,      // the VXLAN driver's table, not the bridge's
		IP:           net.IP(e.Dst.AsSlice()),
		HardwareAddr: e.MAC.HardwareAddr(),
		VNI:          f.d.vnis[e], // 0 (the device's) unless List saw another
	}
}

func (f deviceFDB) Add(e Entry) error { return f.d.h.NeighAppend(f.neigh(e)) }

func (f deviceFDB) Replace(e Entry) error { return f.d.h.NeighSet(f.neigh(e)) }

func (f deviceFDB) Del(e Entry) error {
	err := f.d.h.NeighDel(f.neigh(e))
	if errors.Is(err, unix.ENOENT) {
		return nil // already gone: the goal is met
	}
	return err
}
