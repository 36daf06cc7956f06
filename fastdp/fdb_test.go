package fastdp

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

func mac(s string) MAC {
	hw, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	m, _ := MACFrom(hw)
	return m
}

func ent(m, dst string) Entry { return Entry{mac(m), ip(dst)} }

const zero = "00:00:00:00:00:00"

var (
	macA = "02:00:00:00:00:0a"
	macB = "02:00:00:00:00:0b"
	macC = "02:00:00:00:00:0c"
)

// fakeFDB keeps a table with the VXLAN driver's semantics, strictly: an
// add of an existing destination, a replace of a MAC with several
// destinations and a delete of a missing one are errors, so a plan that
// relies on the kernel forgiving them fails here.
type fakeFDB struct {
	table   map[MAC][]netip.Addr
	calls   []string
	fail    map[Entry]error // injected errors, by entry
	listErr error
}

func newFake(es ...Entry) *fakeFDB {
	f := &fakeFDB{table: map[MAC][]netip.Addr{}, fail: map[Entry]error{}}
	for _, e := range es {
		f.table[e.MAC] = append(f.table[e.MAC], e.Dst)
	}
	return f
}

func (f *fakeFDB) List() ([]Entry, error) {
	if f.listErr != nil {
		return nil, f.listErr
	}
	var out []Entry
	for m, ds := range f.table {
		for _, d := range ds {
			out = append(out, Entry{m, d})
		}
	}
	return out, nil
}

func (f *fakeFDB) Add(e Entry) error {
	f.calls = append(f.calls, "add "+e.String())
	if err := f.fail[e]; err != nil {
		return err
	}
	if slices.Contains(f.table[e.MAC], e.Dst) {
		return unix.EEXIST
	}
	f.table[e.MAC] = append(f.table[e.MAC], e.Dst)
	return nil
}

func (f *fakeFDB) Replace(e Entry) error {
	f.calls = append(f.calls, "replace "+e.String())
	if err := f.fail[e]; err != nil {
		return err
	}
	if e.MAC.IsZero() || len(f.table[e.MAC]) > 1 {
		return fmt.Errorf("fake: replace of %s with %d destinations", e.MAC, len(f.table[e.MAC]))
	}
	f.table[e.MAC] = []netip.Addr{e.Dst}
	return nil
}

func (f *fakeFDB) Del(e Entry) error {
	f.calls = append(f.calls, "del "+e.String())
	if err := f.fail[e]; err != nil {
		return err
	}
	i := slices.Index(f.table[e.MAC], e.Dst)
	if i < 0 {
		return unix.ENOENT
	}
	f.table[e.MAC] = slices.Delete(f.table[e.MAC], i, i+1)
	if len(f.table[e.MAC]) == 0 {
		delete(f.table, e.MAC)
	}
	return nil
}

// sorted returns the table as sorted strings.
func (f *fakeFDB) sorted() []string {
	es, _ := f.List()
	return entryStrings(es)
}

func entryStrings(es []Entry) []string {
	out := make([]string, 0, len(es))
	for _, e := range es {
		out = append(out, e.String())
	}
	slices.Sort(out)
	return out
}

// wantStrings is the table a Desired describes.
func wantStrings(d Desired) []string {
	var es []Entry
	for _, a := range d.Flood {
		es = append(es, Entry{ZeroMAC, a.Unmap()})
	}
	for m, a := range d.Unicast {
		es = append(es, Entry{m, a.Unmap()})
	}
	return slices.Compact(entryStrings(es))
}

func uni(kv ...string) map[MAC]netip.Addr {
	m := map[MAC]netip.Addr{}
	for i := 0; i < len(kv); i += 2 {
		m[mac(kv[i])] = ip(kv[i+1])
	}
	return m
}

func flood(as ...string) []netip.Addr {
	var out []netip.Addr
	for _, a := range as {
		out = append(out, ip(a))
	}
	return out
}

func TestPlan(t *testing.T) {
	for _, tc := range []struct {
		name string
		have []Entry
		want Desired
		ops  []string
	}{
		{name: "empty", ops: nil},
		{
			name: "fresh table",
			want: Desired{Flood: flood("10.0.0.3", "10.0.0.2"), Unicast: uni(macB, "10.0.0.3", macA, "10.0.0.2")},
			ops: []string{
				"add " + zero + " dst 10.0.0.2",
				"add " + zero + " dst 10.0.0.3",
				"add " + macA + " dst 10.0.0.2",
				"add " + macB + " dst 10.0.0.3",
			},
		},
		{
			name: "steady state",
			have: []Entry{ent(zero, "10.0.0.2"), ent(macA, "10.0.0.2")},
			want: Desired{Flood: flood("10.0.0.2"), Unicast: uni(macA, "10.0.0.2")},
		},
		{
			name: "duplicate flood peers and mapped addresses change nothing",
			have: []Entry{ent(zero, "10.0.0.2"), ent(macA, "10.0.0.2")},
			want: Desired{Flood: flood("10.0.0.2", "::ffff:10.0.0.2"), Unicast: uni(macA, "::ffff:10.0.0.2")},
		},
		{
			name: "MAC moved to another peer",
			have: []Entry{ent(zero, "10.0.0.2"), ent(zero, "10.0.0.3"), ent(macA, "10.0.0.2")},
			want: Desired{Flood: flood("10.0.0.2", "10.0.0.3"), Unicast: uni(macA, "10.0.0.3")},
			ops:  []string{"replace " + macA + " dst 10.0.0.3"},
		},
		{
			name: "peer changed its underlay address",
			have: []Entry{ent(zero, "10.0.0.2"), ent(macA, "10.0.0.2"), ent(macB, "10.0.0.2")},
			want: Desired{Flood: flood("10.0.0.9"), Unicast: uni(macA, "10.0.0.9", macB, "10.0.0.9")},
			ops: []string{
				"replace " + macA + " dst 10.0.0.9",
				"replace " + macB + " dst 10.0.0.9",
				"add " + zero + " dst 10.0.0.9",
				"del " + zero + " dst 10.0.0.2",
			},
		},
		{
			name: "peer left",
			have: []Entry{ent(zero, "10.0.0.2"), ent(zero, "10.0.0.3"), ent(macA, "10.0.0.2"), ent(macB, "10.0.0.3")},
			want: Desired{Flood: flood("10.0.0.2"), Unicast: uni(macA, "10.0.0.2")},
			ops: []string{
				"del " + zero + " dst 10.0.0.3",
				"del " + macB + " dst 10.0.0.3",
			},
		},
		{
			name: "everything stale after a crash",
			have: []Entry{ent(zero, "10.0.0.7"), ent(macC, "10.0.0.7"), ent("01:00:5e:00:00:01", "10.0.0.7")},
			want: Desired{},
			ops: []string{
				"del " + zero + " dst 10.0.0.7",
				"del 01:00:5e:00:00:01 dst 10.0.0.7",
				"del " + macC + " dst 10.0.0.7",
			},
		},
		{
			name: "unicast MAC with an extra destination",
			have: []Entry{ent(macA, "10.0.0.2"), ent(macA, "10.0.0.3")},
			want: Desired{Unicast: uni(macA, "10.0.0.3")},
			ops:  []string{"del " + macA + " dst 10.0.0.2"},
		},
		{
			name: "unicast MAC with two wrong destinations",
			have: []Entry{ent(macA, "10.0.0.2"), ent(macA, "10.0.0.3")},
			want: Desired{Unicast: uni(macA, "10.0.0.4")},
			ops: []string{
				"add " + macA + " dst 10.0.0.4",
				"del " + macA + " dst 10.0.0.2",
				"del " + macA + " dst 10.0.0.3",
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, op := range Plan(tc.have, tc.want) {
				got = append(got, op.String())
			}
			if !slices.Equal(got, tc.ops) {
				t.Errorf("Plan:\n got %q\nwant %q", got, tc.ops)
			}
			// Applied to a strict fake, the plan yields exactly want.
			f := newFake(tc.have...)
			if _, err := Reconcile(f, tc.want); err != nil {
				t.Fatalf("Reconcile: %v", err)
			}
			if got, want := f.sorted(), wantStrings(tc.want); !slices.Equal(got, want) {
				t.Errorf("table after Reconcile:\n got %q\nwant %q", got, want)
			}
			// And a second pass has nothing to do.
			f.calls = nil
			ch, err := Reconcile(f, tc.want)
			if err != nil || !ch.Empty() || len(f.calls) != 0 {
				t.Errorf("second Reconcile: %v, %v, calls %q", ch, err, f.calls)
			}
		})
	}
}

func TestReconcileCounts(t *testing.T) {
	f := newFake(ent(zero, "10.0.0.2"), ent(macA, "10.0.0.2"), ent(macC, "10.0.0.9"))
	ch, err := Reconcile(f, Desired{Flood: flood("10.0.0.2", "10.0.0.3"), Unicast: uni(macA, "10.0.0.3", macB, "10.0.0.3")})
	if err != nil {
		t.Fatal(err)
	}
	if want := (Changes{Added: 2, Replaced: 1, Deleted: 1}); ch != want {
		t.Errorf("Changes = %v, want %v", ch, want)
	}
}

func TestReconcileKeepsGoingAfterAFailure(t *testing.T) {
	f := newFake(ent(macC, "10.0.0.9"))
	bad := Entry{ZeroMAC, ip("10.0.0.2")}
	f.fail[bad] = unix.ENOBUFS
	want := Desired{Flood: flood("10.0.0.2", "10.0.0.3"), Unicast: uni(macA, "10.0.0.3")}
	ch, err := Reconcile(f, want)
	if !errors.Is(err, unix.ENOBUFS) || !strings.Contains(err.Error(), "add "+bad.String()) {
		t.Fatalf("err = %v, want ENOBUFS naming %s", err, bad)
	}
	if want := (Changes{Added: 2, Deleted: 1}); ch != want {
		t.Errorf("Changes = %v, want %v", ch, want)
	}
	// Once the kernel recovers, the next pass finishes the job.
	delete(f.fail, bad)
	if ch, err := Reconcile(f, want); err != nil || ch != (Changes{Added: 1}) {
		t.Fatalf("retry: %v, %v", ch, err)
	}
	if got, w := f.sorted(), wantStrings(want); !slices.Equal(got, w) {
		t.Errorf("table %q, want %q", got, w)
	}
}

func TestReconcileListError(t *testing.T) {
	f := newFake()
	f.listErr = unix.EBUSY
	if _, err := Reconcile(f, Desired{}); !errors.Is(err, unix.EBUSY) {
		t.Fatalf("err = %v, want EBUSY", err)
	}
}

func TestReconcileRejectsInvalidDesired(t *testing.T) {
	for _, tc := range []struct {
		name string
		want Desired
		msg  string
	}{
		{"zero MAC as unicast", Desired{Unicast: uni(zero, "10.0.0.2")}, "Desired.Flood"},
		{"multicast MAC", Desired{Unicast: uni("01:00:5e:00:00:01", "10.0.0.2")}, "multicast"},
		{"broadcast MAC", Desired{Unicast: uni("ff:ff:ff:ff:ff:ff", "10.0.0.2")}, "multicast"},
		{"IPv6 destination", Desired{Unicast: uni(macA, "fd00::1")}, "IPv4"},
		{"unspecified flood", Desired{Flood: flood("0.0.0.0")}, "Desired.Flood"},
		{"missing address", Desired{Unicast: map[MAC]netip.Addr{mac(macA): {}}}, "missing"},
		{"multicast destination", Desired{Flood: flood("239.1.1.1")}, "unicast"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(ent(macC, "10.0.0.9"))
			_, err := Reconcile(f, tc.want)
			if err == nil || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("err = %v, want one mentioning %q", err, tc.msg)
			}
			if len(f.calls) != 0 {
				t.Errorf("an invalid want changed the table: %q", f.calls)
			}
		})
	}
}

func TestMAC(t *testing.T) {
	if got := MACFromUint64(0x0200000000ab); got != mac("02:00:00:00:00:ab") {
		t.Errorf("MACFromUint64 = %v", got)
	}
	if _, ok := MACFrom(net.HardwareAddr{1, 2, 3}); ok {
		t.Error("MACFrom accepted 3 bytes")
	}
	if !mac("ff:ff:ff:ff:ff:ff").IsMulticast() || mac(macA).IsMulticast() || !ZeroMAC.IsZero() {
		t.Error("IsMulticast/IsZero")
	}
}
