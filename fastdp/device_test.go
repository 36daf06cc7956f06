package fastdp

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
)

func vxlanByName(t *testing.T, name string) *netlink.Vxlan {
	t.Helper()
	l, err := netlink.LinkByName(name)
	if err != nil {
		t.Fatalf("link %s: %v", name, err)
	}
	v, ok := l.(*netlink.Vxlan)
	if !ok {
		t.Fatalf("%s is a %s link", name, l.Type())
	}
	return v
}

func TestEnsureCreates(t *testing.T) {
	enterHost(t)
	d := mustEnsure(t, testOptions())
	v := vxlanByName(t, DefaultName)
	br, _ := netlink.LinkByName("weave")
	if v.VxlanId != int(VNIFor("test-mesh")) || d.VNI() != VNIFor("test-mesh") {
		t.Errorf("VNI = %d (device says %d), want %d", v.VxlanId, d.VNI(), VNIFor("test-mesh"))
	}
	if v.Port != DefaultPort || v.Learning || v.MTU != 1376 || v.MasterIndex != br.Attrs().Index ||
		v.Flags&net.FlagUp == 0 || v.Alias != ownerAlias || v.Index != d.Index() {
		t.Errorf("device = port %d learning %v mtu %d master %d (bridge %d) flags %v alias %q index %d (device says %d)",
			v.Port, v.Learning, v.MTU, v.MasterIndex, br.Attrs().Index, v.Flags, v.Alias, v.Index, d.Index())
	}
	if len(v.SrcAddr) != 0 && !v.SrcAddr.IsUnspecified() {
		t.Errorf("local address %v, want none", v.SrcAddr)
	}
	pi, err := netlink.LinkGetProtinfo(v)
	if err != nil {
		t.Fatal(err)
	}
	if !pi.Isolated {
		t.Error("bridge port not isolated")
	}
	if d.MAC() != [6]byte(v.HardwareAddr) {
		t.Errorf("MAC() = %v, link has %v", d.MAC(), v.HardwareAddr)
	}
	// Idempotent: a second Ensure adopts the same device.
	d2 := mustEnsure(t, testOptions())
	if d2.Index() != d.Index() {
		t.Errorf("second Ensure made a new device (%d, was %d)", d2.Index(), d.Index())
	}
	if err := d.Remove(); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if got := vxlanLinks(t); len(got) != 0 {
		t.Errorf("after Remove: %v", got)
	}
	if err := d.Remove(); !errors.Is(err, ErrClosed) {
		t.Errorf("second Remove = %v, want ErrClosed", err)
	}
	if err := d2.Remove(); err != nil { // already gone: not an error
		t.Errorf("Remove of a device already gone: %v", err)
	}
	if _, err := d.Reconcile(Desired{}); !errors.Is(err, ErrClosed) {
		t.Errorf("Reconcile after Remove = %v, want ErrClosed", err)
	}
}

func TestEnsureLocalAndNoIsolation(t *testing.T) {
	enterHost(t)
	o := testOptions()
	o.Local, o.NoPortIsolation, o.Port = netip.MustParseAddr("192.0.2.1"), true, 6799
	mustEnsure(t, o)
	v := vxlanByName(t, DefaultName)
	if !v.SrcAddr.Equal(net.IPv4(192, 0, 2, 1)) || v.Port != 6799 {
		t.Errorf("local %v port %d", v.SrcAddr, v.Port)
	}
	if pi, err := netlink.LinkGetProtinfo(v); err != nil || pi.Isolated {
		t.Errorf("isolated = %v, %v; want false", pi.Isolated, err)
	}
}

func TestEnsureAdoptsOrReplacesALeftover(t *testing.T) {
	enterHost(t)
	first := mustEnsure(t, testOptions())
	idx := first.Index()
	first.Close() // the router "crashed": the device stays

	// Same fixed settings, another MTU: adopted and fixed in place.
	o := testOptions()
	o.MTU = 1300
	d := mustEnsure(t, o)
	if d.Index() != idx || vxlanByName(t, DefaultName).MTU != 1300 {
		t.Errorf("not adopted in place: index %d (was %d), mtu %d", d.Index(), idx, vxlanByName(t, DefaultName).MTU)
	}
	// Detached from the bridge and down meanwhile: Ensure puts it back.
	v := vxlanByName(t, DefaultName)
	if err := netlink.LinkSetNoMaster(v); err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetDown(v); err != nil {
		t.Fatal(err)
	}
	d.Close()
	d = mustEnsure(t, o)
	v = vxlanByName(t, DefaultName)
	if v.MasterIndex == 0 || v.Flags&net.FlagUp == 0 || d.Index() != idx {
		t.Errorf("adopted device not reattached and up: master %d flags %v", v.MasterIndex, v.Flags)
	}
	d.Close()

	// Another port (or mesh): replaced, and still only one device.
	for _, edit := range []func(*Options){
		func(o *Options) { o.Port = 6790 },
		func(o *Options) { o.MeshName = "another-mesh" },
	} {
		o := testOptions()
		edit(&o)
		d := mustEnsure(t, o)
		v := vxlanByName(t, DefaultName)
		if d.Index() == idx || v.Port != d.Port() || v.VxlanId != int(VNIFor(o.MeshName)) {
			t.Errorf("not replaced: index %d (was %d), port %d, vni %d", d.Index(), idx, v.Port, v.VxlanId)
		}
		if got := vxlanLinks(t); !slices.Equal(got, []string{DefaultName}) {
			t.Errorf("VXLAN links = %v, want exactly %s", got, DefaultName)
		}
		idx = d.Index()
		d.Close()
	}
}

func TestEnsureLeavesForeignLinksAlone(t *testing.T) {
	enterHost(t)
	needTool(t, "ip")
	// A VXLAN link of our name that someone else made.
	run(t, "ip", "link", "add", DefaultName, "type", "vxlan", "id", "5", "dstport", "4789")
	_, err := Ensure(testOptions())
	if !errors.Is(err, ErrNotOurs) || !strings.Contains(err.Error(), "ip link del "+DefaultName) {
		t.Fatalf("Ensure over a foreign link = %v, want ErrNotOurs with the fix", err)
	}
	if removed, err := RemoveLeftover(""); removed || !errors.Is(err, ErrNotOurs) {
		t.Fatalf("RemoveLeftover = %v, %v; want ErrNotOurs", removed, err)
	}
	if v := vxlanByName(t, DefaultName); v.VxlanId != 5 {
		t.Fatalf("foreign link changed: VNI %d", v.VxlanId)
	}
	// Ours under another name beside a foreign one: Remove takes only ours.
	o := testOptions()
	o.Name = "wv-fastdp"
	d := mustEnsure(t, o)
	if err := d.Remove(); err != nil {
		t.Fatal(err)
	}
	if got := vxlanLinks(t); !slices.Equal(got, []string{DefaultName}) {
		t.Errorf("VXLAN links after Remove = %v, want only the foreign %s", got, DefaultName)
	}
	// A bridge that is not one.
	o = testOptions()
	o.Bridge = "nosuchbridge"
	if _, err := Ensure(o); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("Ensure without the bridge = %v", err)
	}
}

func TestRemoveLeftover(t *testing.T) {
	enterHost(t)
	d := mustEnsure(t, testOptions())
	d.Close()
	if removed, err := RemoveLeftover(""); !removed || err != nil {
		t.Fatalf("RemoveLeftover = %v, %v", removed, err)
	}
	if got := vxlanLinks(t); len(got) != 0 {
		t.Errorf("left: %v", got)
	}
	if removed, err := RemoveLeftover(""); removed || err != nil {
		t.Fatalf("RemoveLeftover with nothing left = %v, %v", removed, err)
	}
}

func TestTxChecksumSwitch(t *testing.T) {
	enterHost(t)
	o := testOptions()
	o.TxChecksumOff = true
	d := mustEnsure(t, o)
	if on, err := d.TxChecksum(); err != nil || on {
		t.Fatalf("TxChecksum = %v, %v; want off", on, err)
	}
	if _, err := exec.LookPath("ethtool"); err == nil {
		if out := run(t, "ethtool", "-k", DefaultName); !strings.Contains(out, featTxChecksumIPGeneric+": off") {
			t.Errorf("ethtool -k says:\n%s", out)
		}
	}
	d.Close()
	// Without the switch, an adopted device gets the kernel's default back.
	d = mustEnsure(t, testOptions())
	if on, err := d.TxChecksum(); err != nil || !on {
		t.Fatalf("TxChecksum = %v, %v; want on", on, err)
	}
}

func TestReconcileKernel(t *testing.T) {
	enterHost(t)
	needTool(t, "bridge")
	d := mustEnsure(t, testOptions())
	want := Desired{Flood: flood("10.0.0.2", "10.0.0.3"), Unicast: uni(macA, "10.0.0.2", macB, "10.0.0.3")}
	ch, err := d.Reconcile(want)
	if err != nil || ch != (Changes{Added: 4}) {
		t.Fatalf("Reconcile = %v, %v", ch, err)
	}
	check := func(want Desired) {
		t.Helper()
		if got, w := fdbShow(t, "", DefaultName), wantStrings(want); !slices.Equal(got, w) {
			t.Errorf("bridge fdb show:\n got %q\nwant %q", got, w)
		}
		es, err := d.Entries()
		if err != nil {
			t.Fatal(err)
		}
		if got, w := entryStrings(es), wantStrings(want); !slices.Equal(got, w) {
			t.Errorf("Entries:\n got %q\nwant %q", got, w)
		}
	}
	check(want)
	if ch, err := d.Reconcile(want); err != nil || !ch.Empty() {
		t.Errorf("second Reconcile = %v, %v; want no change", ch, err)
	}

	// Someone adds entries behind our back; the bridge has its own entry
	// for the port, which must survive.
	run(t, "bridge", "fdb", "append", zero, "dev", DefaultName, "dst", "10.0.0.66")
	run(t, "bridge", "fdb", "add", macC, "dev", DefaultName, "dst", "10.0.0.66")
	portMAC := d.MAC().String()

	// MAC A moves to .3, peer .2 changes address to .9, B's peer leaves.
	want = Desired{Flood: flood("10.0.0.3", "10.0.0.9"), Unicast: uni(macA, "10.0.0.3")}
	ch, err = d.Reconcile(want)
	if err != nil || ch != (Changes{Added: 1, Replaced: 1, Deleted: 4}) {
		t.Fatalf("Reconcile = %v, %v", ch, err)
	}
	check(want)
	if out := run(t, "bridge", "fdb", "show", "dev", DefaultName); !strings.Contains(out, portMAC+" master weave permanent") {
		t.Errorf("the bridge's own entry for the port is gone:\n%s", out)
	}
	if ch, err := d.Reconcile(Desired{}); err != nil || ch.Deleted != 3 {
		t.Errorf("emptying Reconcile = %v, %v", ch, err)
	}
	check(Desired{})
}

func TestEnsureNoIPv6OnThePort(t *testing.T) {
	enterHost(t)
	mustEnsure(t, testOptions())
	v := vxlanByName(t, DefaultName)
	addrs, err := netlink.AddrList(v, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	if len(addrs) != 0 {
		t.Errorf("the bridge port has addresses %v; it should carry none", addrs)
	}
	if b, err := os.ReadFile("/proc/sys/net/ipv6/conf/" + DefaultName + "/addr_gen_mode"); err == nil && strings.TrimSpace(string(b)) != "1" {
		t.Errorf("addr_gen_mode = %q, want 1 (none)", b)
	}
}

func TestEnsureFailureLeavesNothing(t *testing.T) {
	enterHost(t)
	// The port is taken by an ordinary UDP socket: bringing the device up
	// fails, and Ensure takes back the device it made.
	c, err := net.ListenUDP("udp4", &net.UDPAddr{Port: DefaultPort})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = Ensure(testOptions())
	if err == nil || !strings.Contains(err.Error(), "port 6786") {
		t.Fatalf("Ensure with the port taken = %v, want an error naming the port", err)
	}
	t.Log(err)
	if got := vxlanLinks(t); len(got) != 0 {
		t.Errorf("a failed Ensure left %v", got)
	}
}

func TestDeviceGoneUnderneath(t *testing.T) {
	enterHost(t)
	d := mustEnsure(t, testOptions())
	if err := netlink.LinkDel(vxlanByName(t, DefaultName)); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Reconcile(Desired{}); err == nil || !strings.Contains(err.Error(), "Ensure again") {
		t.Errorf("Reconcile on a deleted device = %v", err)
	}
	if _, err := d.Counters(); err == nil {
		t.Error("Counters on a deleted device succeeded")
	}
	if err := d.Remove(); err != nil {
		t.Errorf("Remove of a device already gone = %v", err)
	}
}

// Reconciles from several goroutines serialise on the Device: the table
// ends as the last one wanted, with nothing left of the others.
func TestConcurrentReconcile(t *testing.T) {
	enterHost(t)
	d := mustEnsure(t, testOptions())
	wants := []Desired{
		{Flood: flood("10.0.0.2"), Unicast: uni(macA, "10.0.0.2")},
		{Flood: flood("10.0.0.3", "10.0.0.4"), Unicast: uni(macA, "10.0.0.3", macB, "10.0.0.4")},
		{Unicast: uni(macC, "10.0.0.5")},
	}
	errc := make(chan error, 30)
	for i := range 30 {
		go func() {
			_, err := d.Reconcile(wants[i%len(wants)])
			errc <- err
		}()
	}
	for range 30 {
		if err := <-errc; err != nil {
			t.Error(err)
		}
	}
	final := wants[1]
	if _, err := d.Reconcile(final); err != nil {
		t.Fatal(err)
	}
	es, err := d.Entries()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := entryStrings(es), wantStrings(final); !slices.Equal(got, want) {
		t.Errorf("table %q, want %q", got, want)
	}
}

func TestEnsureVNIAndPortTaken(t *testing.T) {
	enterHost(t)
	needTool(t, "ip")
	// Another device already serves this mesh's VNI on the same port.
	run(t, "ip", "link", "add", "other-vx", "type", "vxlan", "id", strconv.Itoa(int(VNIFor("test-mesh"))), "dstport", strconv.Itoa(DefaultPort))
	_, err := Ensure(testOptions())
	if err == nil || !strings.Contains(err.Error(), "another VXLAN device may already use VNI") {
		t.Fatalf("Ensure = %v, want the VNI clash explained", err)
	}
	if got := vxlanLinks(t); !slices.Equal(got, []string{"other-vx"}) {
		t.Errorf("VXLAN links = %v, want only other-vx", got)
	}
}
