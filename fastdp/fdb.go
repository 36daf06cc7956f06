package fastdp

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
)

// MAC is an Ethernet address.
type MAC [6]byte

// ZeroMAC is the all-zero address. A VXLAN forwarding entry for it is a
// default destination: the kernel sends a copy of every broadcast,
// multicast and unknown-unicast frame to each such destination (head-end
// replication).
var ZeroMAC MAC

// MACFrom converts a 6-byte hardware address; ok is false for any other
// length.
func MACFrom(hw net.HardwareAddr) (m MAC, ok bool) {
	if len(hw) != 6 {
		return m, false
	}
	copy(m[:], hw)
	return m, true
}

// MACFromUint64 unpacks an address kept in the low 48 bits of v, most
// significant byte first (the layout of mesh/macs.Addr).
func MACFromUint64(v uint64) MAC {
	var m MAC
	for i := 5; i >= 0; i-- {
		m[i] = byte(v)
		v >>= 8
	}
	return m
}

// HardwareAddr returns m as a net.HardwareAddr.
func (m MAC) HardwareAddr() net.HardwareAddr { return net.HardwareAddr(m[:]) }

func (m MAC) String() string { return m.HardwareAddr().String() }

// IsZero reports whether m is ZeroMAC.
func (m MAC) IsZero() bool { return m == ZeroMAC }

// IsMulticast reports whether the group bit is set (broadcast included).
func (m MAC) IsMulticast() bool { return m[0]&1 != 0 }

// Entry is one destination in the device's forwarding table: frames for
// MAC are encapsulated and sent to the VXLAN endpoint at Dst, a peer's
// underlay address. The table holds at most one Entry per unicast MAC and
// any number for ZeroMAC.
type Entry struct {
	MAC MAC
	Dst netip.Addr
}

func (e Entry) String() string { return e.MAC.String() + " dst " + e.Dst.String() }

func (e Entry) compare(f Entry) int {
	if c := slices.Compare(e.MAC[:], f.MAC[:]); c != 0 {
		return c
	}
	return e.Dst.Compare(f.Dst)
}

// Desired is the forwarding table the caller wants, built from what the
// router knows.
type Desired struct {
	// Flood lists the underlay addresses of the peers this host reaches by
	// fastdp: each gets a ZeroMAC entry, so broadcast and unknown unicast
	// reach every one of them once.
	Flood []netip.Addr
	// Unicast maps each container MAC that lives behind a fastdp peer to
	// that peer's underlay address. MACs of local containers and of
	// containers behind sleeve peers do not belong here.
	Unicast map[MAC]netip.Addr
}

func (d Desired) validate() error {
	var errs []error
	for _, a := range d.Flood {
		if err := validDst(a); err != nil {
			errs = append(errs, fmt.Errorf("Desired.Flood: %w", err))
		}
	}
	for m, a := range d.Unicast {
		switch {
		case m.IsZero():
			errs = append(errs, errors.New("Desired.Unicast: the all-zero MAC is the flood entry; list its peers in Desired.Flood"))
		case m.IsMulticast():
			errs = append(errs, fmt.Errorf("Desired.Unicast: %s is a multicast address; group frames are flooded (Desired.Flood)", m))
		default:
			if err := validDst(a); err != nil {
				errs = append(errs, fmt.Errorf("Desired.Unicast[%s]: %w", m, err))
			}
		}
	}
	return errors.Join(errs...)
}

func validDst(a netip.Addr) error {
	switch {
	case !a.IsValid():
		return errors.New("missing underlay address")
	case !a.Unmap().Is4():
		return fmt.Errorf("%s: the underlay is IPv4", a)
	case a.Unmap().IsUnspecified() || a.Unmap().IsMulticast() || a.Unmap().IsLoopback():
		return fmt.Errorf("%s is not a peer's unicast address", a)
	}
	return nil
}

// FDB is the forwarding table of one VXLAN device, as Reconcile sees it.
// The netlink implementation is the kernel's table of the device (Device.FDB);
// tests give a fake.
type FDB interface {
	// List returns every entry the reconciler owns: the device's own
	// (NTF_SELF) entries with a destination, not the bridge's entries for
	// the port nor the kernel's permanent address entries.
	List() ([]Entry, error)
	// Add adds a destination: one more replication target for ZeroMAC, or
	// the first and only destination of a unicast MAC.
	Add(Entry) error
	// Replace points a unicast MAC that has one destination at e.Dst in
	// one step, so frames for it are never flooded meanwhile.
	Replace(Entry) error
	// Del removes the destination e.Dst of e.MAC.
	Del(Entry) error
}

// OpKind says what an Op does to the table.
type OpKind int

// The operations, in the order Plan returns them.
const (
	OpReplace OpKind = iota // a MAC moved, or its peer changed address
	OpAdd                   // a MAC or flood destination is new
	OpDel                   // an entry is stale
)

func (k OpKind) String() string {
	switch k {
	case OpReplace:
		return "replace"
	case OpAdd:
		return "add"
	case OpDel:
		return "del"
	}
	return fmt.Sprintf("OpKind(%d)", int(k))
}

// Op is one change to the table.
type Op struct {
	Kind  OpKind
	Entry Entry
}

func (o Op) String() string { return o.Kind.String() + " " + o.Entry.String() }

// Plan returns the changes that turn the table current into want: replaces
// first (moves keep working without a flood window), then adds, then
// deletes (a peer that changed address has its new flood entry before the
// old one goes), each group sorted by MAC and destination. It is pure:
// Reconcile applies it.
func Plan(current []Entry, want Desired) []Op {
	have := map[MAC][]netip.Addr{}
	for _, e := range current {
		have[e.MAC] = append(have[e.MAC], e.Dst)
	}
	var ops []Op
	// Flood destinations: a set each side.
	wantFlood := map[netip.Addr]bool{}
	for _, a := range want.Flood {
		wantFlood[a.Unmap()] = true
	}
	haveFlood := map[netip.Addr]bool{}
	for _, a := range have[ZeroMAC] {
		haveFlood[a] = true
		if !wantFlood[a] {
			ops = append(ops, Op{OpDel, Entry{ZeroMAC, a}})
		}
	}
	for a := range wantFlood {
		if !haveFlood[a] {
			ops = append(ops, Op{OpAdd, Entry{ZeroMAC, a}})
		}
	}
	// Unicast MACs: exactly one destination each.
	for m, dst := range want.Unicast {
		dst = dst.Unmap()
		cur := have[m]
		switch {
		case len(cur) == 0:
			ops = append(ops, Op{OpAdd, Entry{m, dst}})
		case len(cur) == 1 && cur[0] == dst:
		case len(cur) == 1:
			ops = append(ops, Op{OpReplace, Entry{m, dst}})
		case slices.Contains(cur, dst):
			for _, a := range cur {
				if a != dst {
					ops = append(ops, Op{OpDel, Entry{m, a}})
				}
			}
		default: // several destinations, none right: start afresh
			for _, a := range cur {
				ops = append(ops, Op{OpDel, Entry{m, a}})
			}
			ops = append(ops, Op{OpAdd, Entry{m, dst}})
		}
	}
	// Everything else is stale.
	for m, cur := range have {
		if m.IsZero() {
			continue
		}
		if _, ok := want.Unicast[m]; ok {
			continue
		}
		for _, a := range cur {
			ops = append(ops, Op{OpDel, Entry{m, a}})
		}
	}
	slices.SortFunc(ops, func(a, b Op) int {
		if c := cmp.Compare(a.Kind, b.Kind); c != 0 {
			return c
		}
		return a.Entry.compare(b.Entry)
	})
	return slices.Compact(ops)
}

// Changes counts what Reconcile changed.
type Changes struct {
	Added, Replaced, Deleted int
}

// Empty reports whether nothing changed.
func (c Changes) Empty() bool { return c == Changes{} }

func (c Changes) String() string {
	return fmt.Sprintf("%d added, %d replaced, %d deleted", c.Added, c.Replaced, c.Deleted)
}

// Reconcile makes the table of fdb equal to want: it lists the table,
// plans the difference and applies it. An invalid want changes nothing and
// returns an error naming every bad entry. Otherwise every operation is
// tried; the error, if any, joins those that failed, and Changes counts
// those that succeeded. Reconcile is idempotent: a second call with the
// same want and an undisturbed table changes nothing.
func Reconcile(fdb FDB, want Desired) (Changes, error) {
	var ch Changes
	if err := want.validate(); err != nil {
		return ch, fmt.Errorf("fastdp: reconcile: invalid desired table: %w", err)
	}
	cur, err := fdb.List()
	if err != nil {
		return ch, fmt.Errorf("fastdp: reconcile: list forwarding entries: %w", err)
	}
	var errs []error
	for _, op := range Plan(cur, want) {
		var err error
		switch op.Kind {
		case OpAdd:
			if err = fdb.Add(op.Entry); err == nil {
				ch.Added++
			}
		case OpReplace:
			if err = fdb.Replace(op.Entry); err == nil {
				ch.Replaced++
			}
		case OpDel:
			if err = fdb.Del(op.Entry); err == nil {
				ch.Deleted++
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", op, err))
		}
	}
	if len(errs) > 0 {
		return ch, fmt.Errorf("fastdp: reconcile: %d of the changes failed (the next Reconcile retries them): %w", len(errs), errors.Join(errs...))
	}
	return ch, nil
}
