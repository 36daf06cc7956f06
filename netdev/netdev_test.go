package netdev

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
)

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func mustBridge(t *testing.T, mtu int) *Bridge {
	t.Helper()
	b, err := EnsureBridge(BridgeOptions{MTU: mtu})
	if err != nil {
		t.Fatalf("EnsureBridge: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func mustAttach(t *testing.T, b *Bridge, o AttachOptions) Endpoint {
	t.Helper()
	ep, err := b.Attach(o)
	if err != nil {
		t.Fatalf("Attach(%s): %v", o.Netns, err)
	}
	return ep
}

func hostLink(t *testing.T, name string) netlink.Link {
	t.Helper()
	l, err := netlink.LinkByName(name)
	if err != nil {
		t.Fatalf("host link %s: %v", name, err)
	}
	return l
}

func TestAttachPing(t *testing.T) {
	e := newEnv(t)
	needPing(t)
	b := mustBridge(t, 1400)
	c1, c2 := e.container("c1"), e.container("c2")

	ep1 := mustAttach(t, b, AttachOptions{Netns: c1, CIDRs: []netip.Prefix{pfx("10.99.1.1/24"), pfx("fd99::1/64")}})
	ep2 := mustAttach(t, b, AttachOptions{Netns: c2, CIDRs: []netip.Prefix{pfx("10.99.1.2/24"), pfx("fd99::2/64")}, MTU: 1300})

	for _, tc := range []struct {
		ep    Endpoint
		ns    string
		mtu   int
		cidrs []netip.Prefix
	}{
		{ep1, c1, 1400, []netip.Prefix{pfx("10.99.1.1/24"), pfx("fd99::1/64")}},
		{ep2, c2, 1300, []netip.Prefix{pfx("10.99.1.2/24"), pfx("fd99::2/64")}},
	} {
		id, err := EndpointID(tc.ns)
		if err != nil {
			t.Fatal(err)
		}
		want := Endpoint{ID: id, Netns: tc.ns, HostIface: "vwe" + id[:8], Iface: "ethwe", MTU: tc.mtu}
		got := tc.ep
		if got.ID != want.ID || got.Netns != want.Netns || got.HostIface != want.HostIface || got.Iface != want.Iface || got.MTU != want.MTU {
			t.Errorf("endpoint = %+v, want %+v", got, want)
		}
		if len(got.MAC) != 6 {
			t.Errorf("endpoint MAC = %v", got.MAC)
		}
		if !sameSet(got.CIDRs, tc.cidrs) {
			t.Errorf("endpoint CIDRs = %v, want %v", got.CIDRs, tc.cidrs)
		}
		hl := hostLink(t, got.HostIface)
		if hl.Attrs().MTU != tc.mtu {
			t.Errorf("host end %s MTU = %d, want %d", got.HostIface, hl.Attrs().MTU, tc.mtu)
		}
		if br := hostLink(t, "weave"); hl.Attrs().MasterIndex != br.Attrs().Index {
			t.Errorf("host end %s not on bridge", got.HostIface)
		}
		out, err := inNS(t, nsName(tc.ns), "cat", "/sys/class/net/ethwe/mtu", "/proc/sys/net/ipv4/conf/ethwe/arp_notify")
		if err != nil {
			t.Fatalf("read container settings: %v\n%s", err, out)
		}
		if f := strings.Fields(out); len(f) != 2 || f[0] != itoa(tc.mtu) || f[1] != "1" {
			t.Errorf("container mtu, arp_notify = %q, want [%d 1]", f, tc.mtu)
		}
		out, _ = inNS(t, nsName(tc.ns), "ip", "-o", "link", "show", "lo")
		if !strings.Contains(out, "UP") {
			t.Errorf("lo not up in %s: %s", tc.ns, out)
		}
	}

	eventuallyPing(t, nsName(c1), "10.99.1.2")
	eventuallyPing(t, nsName(c2), "10.99.1.1")
	eventuallyPing(t, nsName(c1), "fd99::2")

	insp, err := b.Inspect(c1)
	if err != nil {
		t.Fatal(err)
	}
	if insp.HostIface != ep1.HostIface || insp.MAC.String() != ep1.MAC.String() || !sameSet(insp.CIDRs, ep1.CIDRs) {
		t.Errorf("Inspect = %+v, want %+v", insp, ep1)
	}

	eps, err := b.Endpoints()
	if err != nil {
		t.Fatal(err)
	}
	if len(eps) != 2 {
		t.Fatalf("Endpoints = %+v, want 2", eps)
	}
	for _, want := range []Endpoint{ep1, ep2} {
		i := slices.IndexFunc(eps, func(ep Endpoint) bool { return ep.HostIface == want.HostIface })
		if i < 0 {
			t.Fatalf("Endpoints lacks %s: %+v", want.HostIface, eps)
		}
		got := eps[i]
		if got.Iface != want.Iface || got.MAC.String() != want.MAC.String() || got.MTU != want.MTU || !sameSet(got.CIDRs, want.CIDRs) {
			t.Errorf("Endpoints entry = %+v, want %+v", got, want)
		}
	}
}

func TestAttachIdempotent(t *testing.T) {
	e := newEnv(t)
	b := mustBridge(t, 1400)
	c := e.container("c")

	ep1 := mustAttach(t, b, AttachOptions{Netns: c, CIDRs: []netip.Prefix{pfx("10.99.2.1/24")}})
	ep2 := mustAttach(t, b, AttachOptions{Netns: c, CIDRs: []netip.Prefix{pfx("10.99.2.1/24"), pfx("10.99.3.1/24")}})
	ep3 := mustAttach(t, b, AttachOptions{Netns: c, CIDRs: []netip.Prefix{pfx("10.99.3.1/24")}})
	if ep1.HostIface != ep3.HostIface || ep1.MAC.String() != ep3.MAC.String() {
		t.Errorf("re-attach made a new endpoint: %+v then %+v", ep1, ep3)
	}
	want := []netip.Prefix{pfx("10.99.2.1/24"), pfx("10.99.3.1/24")}
	if !sameSet(ep2.CIDRs, want) || !sameSet(ep3.CIDRs, want) {
		t.Errorf("CIDRs after re-attach = %v / %v, want %v", ep2.CIDRs, ep3.CIDRs, want)
	}

	// A router restart: a fresh Bridge on the same kernel bridge sees the
	// endpoint and keeps it.
	b2, err := EnsureBridge(BridgeOptions{MTU: 1400})
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	if got, err := b2.Inspect(c); err != nil || got.HostIface != ep1.HostIface {
		t.Errorf("after restart Inspect = %+v, %v", got, err)
	}
	// The same namespace through another path is the same endpoint.
	cmd := exec.Command("ip", "netns", "exec", nsName(c), "sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	procPath := "/proc/" + strconv.Itoa(cmd.Process.Pid) + "/ns/net"
	wantID, _ := EndpointID(c)
	deadline := time.Now().Add(5 * time.Second)
	for id, _ := EndpointID(procPath); id != wantID; id, _ = EndpointID(procPath) {
		if time.Now().After(deadline) {
			t.Fatalf("process %d never entered %s", cmd.Process.Pid, c)
		}
		runtime.Gosched()
	}
	if got, err := b.Inspect(procPath); err != nil || got.HostIface != ep1.HostIface || got.Netns != procPath {
		t.Errorf("Inspect via %s = %+v, %v", procPath, got, err)
	}
}

func TestDetach(t *testing.T) {
	e := newEnv(t)
	b := mustBridge(t, 1400)
	c := e.container("c")
	ep := mustAttach(t, b, AttachOptions{Netns: c, CIDRs: []netip.Prefix{pfx("10.99.4.1/24")}, IfName: "eth7"})
	if ep.Iface != "eth7" {
		t.Errorf("Iface = %q, want eth7", ep.Iface)
	}
	got, err := b.Detach(c)
	if err != nil {
		t.Fatal(err)
	}
	if got.HostIface != ep.HostIface || !sameSet(got.CIDRs, ep.CIDRs) {
		t.Errorf("Detach returned %+v, want %+v", got, ep)
	}
	if _, err := netlink.LinkByName(ep.HostIface); err == nil {
		t.Errorf("host end %s still exists", ep.HostIface)
	}
	if out, err := inNS(t, nsName(c), "ip", "link", "show", "eth7"); err == nil {
		t.Errorf("container end still exists: %s", out)
	}
	if _, err := b.Inspect(c); !errors.Is(err, ErrNotAttached) {
		t.Errorf("Inspect after Detach: %v, want ErrNotAttached", err)
	}
	if _, err := b.Detach(c); !errors.Is(err, ErrNotAttached) {
		t.Errorf("second Detach: %v, want ErrNotAttached", err)
	}
	if eps, err := b.Endpoints(); err != nil || len(eps) != 0 {
		t.Errorf("Endpoints after Detach = %v, %v", eps, err)
	}
	// And attach again works.
	mustAttach(t, b, AttachOptions{Netns: c, CIDRs: []netip.Prefix{pfx("10.99.4.1/24")}})
}

func TestRemoveAddrs(t *testing.T) {
	e := newEnv(t)
	b := mustBridge(t, 1400)
	c := e.container("c")
	if err := b.RemoveAddrs(c, []netip.Prefix{pfx("10.99.6.1/24")}); !errors.Is(err, ErrNotAttached) {
		t.Errorf("RemoveAddrs without an endpoint: %v, want ErrNotAttached", err)
	}
	mustAttach(t, b, AttachOptions{Netns: c, CIDRs: []netip.Prefix{pfx("10.99.6.1/24")}})
	mustAttach(t, b, AttachOptions{Netns: c, CIDRs: []netip.Prefix{pfx("10.99.6.2/24"), pfx("fd99::6:2/64")}})
	if err := b.RemoveAddrs(c, []netip.Prefix{pfx("10.99.6.2/24"), pfx("fd99::6:2/64"), pfx("10.99.6.9/24")}); err != nil {
		t.Fatal(err)
	}
	got, err := b.Inspect(c)
	if err != nil {
		t.Fatal(err)
	}
	if !sameSet(got.CIDRs, []netip.Prefix{pfx("10.99.6.1/24")}) {
		t.Errorf("CIDRs after RemoveAddrs = %v, want only 10.99.6.1/24", got.CIDRs)
	}
}

func TestExpose(t *testing.T) {
	e := newEnv(t)
	needPing(t)
	b := mustBridge(t, 1400)
	c := e.container("c")
	mustAttach(t, b, AttachOptions{Netns: c, CIDRs: []netip.Prefix{pfx("10.99.5.1/24"), pfx("fd99:5::1/64")}})

	neverPing(t, e.host, "10.99.5.1")
	for _, p := range []netip.Prefix{pfx("10.99.5.254/24"), pfx("fd99:5::fe/64")} {
		for range 2 { // idempotent
			if err := b.Expose(p); err != nil {
				t.Fatalf("Expose(%s): %v", p, err)
			}
		}
	}
	addrs, err := b.Addrs()
	if err != nil {
		t.Fatal(err)
	}
	if !sameSet(addrs, []netip.Prefix{pfx("10.99.5.254/24"), pfx("fd99:5::fe/64")}) {
		t.Errorf("Addrs = %v", addrs)
	}
	eventuallyPing(t, e.host, "10.99.5.1")
	eventuallyPing(t, e.host, "fd99:5::1")
	eventuallyPing(t, nsName(c), "10.99.5.254")

	if err := b.Expose(pfx("10.99.5.254/16")); err == nil {
		t.Error("Expose of the same address with another prefix succeeded")
	}
	for range 2 {
		if err := b.Hide(pfx("10.99.5.254/24")); err != nil {
			t.Fatalf("Hide: %v", err)
		}
	}
	addrs, err = b.Addrs()
	if err != nil {
		t.Fatal(err)
	}
	if !sameSet(addrs, []netip.Prefix{pfx("fd99:5::fe/64")}) {
		t.Errorf("Addrs after Hide = %v", addrs)
	}
	neverPing(t, e.host, "10.99.5.1")
}

func TestEnsureBridge(t *testing.T) {
	e := newEnv(t)
	b := mustBridge(t, 1400)
	br := hostLink(t, "weave")
	if br.Type() != "bridge" || br.Attrs().MTU != 1400 || br.Attrs().Flags&1 == 0 {
		t.Fatalf("bridge = %s mtu %d flags %v", br.Type(), br.Attrs().MTU, br.Attrs().Flags)
	}
	mac := br.Attrs().HardwareAddr.String()
	for _, f := range []struct{ file, want string }{
		{"/sys/class/net/weave/bridge/stp_state", "0"},
		{"/sys/class/net/weave/bridge/multicast_snooping", "0"},
		{"/proc/sys/net/ipv6/conf/weave/accept_ra", "0"},
		{"/proc/sys/net/ipv6/conf/weave/addr_gen_mode", "1"},
	} {
		got, err := inNS(t, e.host, "cat", f.file)
		if err != nil {
			t.Fatalf("read %s: %v\n%s", f.file, err, got)
		}
		if got = strings.TrimSpace(got); got != f.want {
			t.Errorf("%s = %q, want %q", f.file, got, f.want)
		}
	}

	// A port with a lower MAC must not change the bridge's MAC.
	la := netlink.NewLinkAttrs()
	la.Name = "wvtport0"
	la.HardwareAddr = mustMAC("02:00:00:00:00:01")
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: "wvtport1"}); err != nil {
		t.Fatal(err)
	}
	if err := b.AddPort("wvtport0"); err != nil {
		t.Fatal(err)
	}
	if err := b.AddPort("wvtport0"); err != nil {
		t.Fatalf("AddPort again: %v", err)
	}
	port := hostLink(t, "wvtport0")
	if port.Attrs().MasterIndex != br.Attrs().Index || port.Attrs().MTU != 1400 || port.Attrs().Flags&1 == 0 {
		t.Errorf("port master %d mtu %d flags %v", port.Attrs().MasterIndex, port.Attrs().MTU, port.Attrs().Flags)
	}
	if got := hostLink(t, "weave").Attrs().HardwareAddr.String(); got != mac {
		t.Errorf("bridge MAC changed from %s to %s after adding a port", mac, got)
	}

	// Restart with another MTU: same bridge, new MTU, same MAC.
	b2, err := EnsureBridge(BridgeOptions{Name: "weave", MTU: 1376})
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	br2 := hostLink(t, "weave")
	if br2.Attrs().Index != br.Attrs().Index || br2.Attrs().MTU != 1376 || br2.Attrs().HardwareAddr.String() != mac {
		t.Errorf("after re-ensure: index %d mtu %d mac %s", br2.Attrs().Index, br2.Attrs().MTU, br2.Attrs().HardwareAddr)
	}

	if err := b2.Delete(); err != nil {
		t.Fatal(err)
	}
	if _, err := netlink.LinkByName("weave"); err == nil {
		t.Error("bridge still exists after Delete")
	}
	if err := b2.AddPort("wvtport0"); !errors.Is(err, ErrClosed) {
		t.Errorf("AddPort after Delete: %v, want ErrClosed", err)
	}
	if err := b2.Close(); err != nil {
		t.Errorf("Close after Delete: %v", err)
	}
	if _, err := b.Addrs(); err == nil || !strings.Contains(err.Error(), "gone") {
		t.Errorf("Addrs on deleted bridge: %v", err)
	}
}

func TestHostRoutesOverlapping(t *testing.T) {
	newEnv(t)
	b := mustBridge(t, 1400)
	if err := b.Expose(pfx("10.99.0.1/16")); err != nil {
		t.Fatal(err)
	}
	la := netlink.NewLinkAttrs()
	la.Name = "wvtr0"
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: "wvtr1"}); err != nil {
		t.Fatal(err)
	}
	l := hostLink(t, "wvtr0")
	if err := netlink.AddrAdd(l, prefixToAddr(pfx("10.98.0.1/16"))); err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetUp(l); err != nil {
		t.Fatal(err)
	}
	if err := netlink.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Dst: prefixToAddr(pfx("172.30.0.0/16")).IPNet}); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		p    string
		want []string
	}{
		{"10.98.5.0/24", []string{"address 10.98.0.1/16 on wvtr0"}},
		{"10.0.0.0/8", []string{"address 10.98.0.1/16 on wvtr0"}},
		{"10.97.0.0/16", nil},
		{"10.99.0.0/16", nil}, // the bridge's own
		{"172.30.1.0/24", []string{"route 172.30.0.0/16 dev wvtr0"}},
		{"0.0.0.0/0", []string{"address 10.98.0.1/16 on wvtr0", "route 172.30.0.0/16 dev wvtr0"}},
	} {
		got, err := HostRoutesOverlapping(pfx(tc.p))
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("HostRoutesOverlapping(%s) = %q, want %q", tc.p, got, tc.want)
		}
	}
	got, err := HostRoutesOverlapping(pfx("10.99.0.0/16"), "wvtr0")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, []string{"address 10.99.0.1/16 on weave"}) {
		t.Errorf("with explicit exclude: %q", got)
	}
}

func TestEndpointID(t *testing.T) {
	e := newEnv(t)
	c1, c2 := e.container("c1"), e.container("c2")
	id1, err := EndpointID(c1)
	if err != nil {
		t.Fatal(err)
	}
	id2, _ := EndpointID(c2)
	idHost, _ := EndpointID("/var/run/netns/" + e.host)
	idSelf, err := EndpointID("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	if len(id1) != 16 || strings.Trim(id1, "0123456789abcdef") != "" {
		t.Errorf("id %q is not 16 hex characters", id1)
	}
	if id1 == id2 {
		t.Errorf("two namespaces share id %s", id1)
	}
	if idHost != idSelf {
		t.Errorf("same namespace, two paths: %s != %s", idHost, idSelf)
	}
	if again, _ := EndpointID(c1); again != id1 {
		t.Errorf("id not stable: %s then %s", id1, again)
	}
}

func TestErrors(t *testing.T) {
	e := newEnv(t)
	regular := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(regular, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	// A non-bridge link squatting on a bridge name.
	la := netlink.NewLinkAttrs()
	la.Name = "wvtsquat"
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: "wvtsquat1"}); err != nil {
		t.Fatal(err)
	}
	b := mustBridge(t, 1400)
	c := e.container("c")
	// A namespace that already has an unrelated "ethwe".
	busy := e.container("busy")
	run(t, "ip", "-n", nsName(busy), "link", "add", "ethwe", "type", "veth", "peer", "name", "other")

	for _, tc := range []struct {
		name    string
		do      func() error
		is      error  // errors.Is target, if any
		mention string // substring the message must contain
	}{
		{"bridge without MTU", func() error { _, err := EnsureBridge(BridgeOptions{}); return err }, nil, "BridgeOptions.MTU"},
		{"bridge MTU too small", func() error { _, err := EnsureBridge(BridgeOptions{MTU: 10}); return err }, nil, "BridgeOptions.MTU"},
		{"bridge name too long", func() error {
			_, err := EnsureBridge(BridgeOptions{Name: "weave-much-too-long", MTU: 1400})
			return err
		}, nil, "BridgeOptions.Name"},
		{"bridge name clash", func() error { _, err := EnsureBridge(BridgeOptions{Name: "wvtsquat", MTU: 1400}); return err }, ErrNotBridge, "ip link del wvtsquat"},
		{"netns missing", func() error {
			_, err := b.Attach(AttachOptions{Netns: "/var/run/netns/wvnd-does-not-exist"})
			return err
		}, os.ErrNotExist, "wvnd-does-not-exist"},
		{"netns empty", func() error { _, err := b.Attach(AttachOptions{}); return err }, nil, "AttachOptions.Netns"},
		{"netns regular file", func() error { _, err := b.Attach(AttachOptions{Netns: regular}); return err }, ErrNotNetns, regular},
		{"netns of another type", func() error { _, err := b.Attach(AttachOptions{Netns: "/proc/self/ns/mnt"}); return err }, ErrNotNetns, "another kind"},
		{"id of regular file", func() error { _, err := EndpointID(regular); return err }, ErrNotNetns, ""},
		{"bad CIDR", func() error {
			_, err := b.Attach(AttachOptions{Netns: c, CIDRs: []netip.Prefix{{}}})
			return err
		}, nil, "AttachOptions.CIDRs"},
		{"multicast CIDR", func() error {
			_, err := b.Attach(AttachOptions{Netns: c, CIDRs: []netip.Prefix{pfx("224.0.0.1/24")}})
			return err
		}, nil, "not a unicast"},
		{"IPv6 with small MTU", func() error {
			_, err := b.Attach(AttachOptions{Netns: c, CIDRs: []netip.Prefix{pfx("fd00::1/64")}, MTU: 1200})
			return err
		}, nil, "1280"},
		{"one IPv6 address with two prefixes", func() error {
			_, err := b.Attach(AttachOptions{Netns: c, CIDRs: []netip.Prefix{pfx("10.99.6.1/24"), pfx("10.99.6.1/24"), pfx("fd00::1/64"), pfx("fd00::1/48")}})
			return err
		}, nil, "another prefix length"},
		{"ifname too long", func() error {
			_, err := b.Attach(AttachOptions{Netns: c, IfName: "abcdefghijklmnop"})
			return err
		}, nil, "AttachOptions.IfName"},
		{"ifname taken", func() error { _, err := b.Attach(AttachOptions{Netns: busy}); return err }, nil, "already has an interface ethwe"},
		{"detach unattached", func() error { _, err := b.Detach(c); return err }, ErrNotAttached, c},
		{"inspect unattached", func() error { _, err := b.Inspect(c); return err }, ErrNotAttached, ""},
		{"add missing port", func() error { return b.AddPort("wvtnothere") }, nil, "no such interface"},
		{"bridge as own port", func() error { return b.AddPort("weave") }, nil, "own port"},
		{"expose invalid", func() error { return b.Expose(netip.Prefix{}) }, nil, "invalid"},
	} {
		// No t.Run: a subtest runs on another goroutine, hence another OS
		// thread, outside this test's namespace.
		err := tc.do()
		if err == nil {
			t.Errorf("%s: no error", tc.name)
			continue
		}
		if tc.is != nil && !errors.Is(err, tc.is) {
			t.Errorf("%s: error %q is not %v", tc.name, err, tc.is)
		}
		if !strings.Contains(err.Error(), tc.mention) {
			t.Errorf("%s: error %q does not mention %q", tc.name, err, tc.mention)
		}
	}
	// Nothing half-made was left behind by the failures.
	if eps, err := b.Endpoints(); err != nil || len(eps) != 0 {
		t.Errorf("Endpoints after failed attaches = %v, %v", eps, err)
	}
	if out, err := inNS(t, nsName(c), "ip", "-o", "link", "show", "ethwe"); err == nil {
		t.Errorf("half-made container end left in %s: %s", c, out)
	}
	links, _ := netlink.LinkList()
	for _, l := range links {
		if strings.HasPrefix(l.Attrs().Name, HostIfacePrefix) {
			t.Errorf("leftover %s", l.Attrs().Name)
		}
	}
}

func TestValidationWithoutRoot(t *testing.T) {
	// These fail before touching the kernel, so they run unprivileged too.
	if _, err := EnsureBridge(BridgeOptions{Name: "a/b", MTU: 1400}); err == nil || !strings.Contains(err.Error(), "BridgeOptions.Name") {
		t.Errorf("EnsureBridge(a/b) = %v", err)
	}
	if _, err := EnsureBridge(BridgeOptions{MTU: 70000}); err == nil || !strings.Contains(err.Error(), "BridgeOptions.MTU") {
		t.Errorf("EnsureBridge(MTU 70000) = %v", err)
	}
	if got := HostIfaceName("0123456789abcdef"); got != "vwe01234567" {
		t.Errorf("HostIfaceName = %q", got)
	}
}

func sameSet(a, b []netip.Prefix) bool {
	if len(a) != len(b) {
		return false
	}
	for _, p := range a {
		if !slices.Contains(b, p) {
			return false
		}
	}
	return true
}

func itoa(n int) string { return strconv.Itoa(n) }

func mustMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

// TestConcurrentAnyThread drives one Bridge from goroutines that are not on
// the test's namespace thread: the Bridge must act in the namespace it was
// made in, whatever thread calls it.
func TestConcurrentAnyThread(t *testing.T) {
	e := newEnv(t)
	b := mustBridge(t, 1400)
	const n = 4
	paths := make([]string, n)
	for i := range paths {
		paths[i] = e.container("c" + strconv.Itoa(i))
	}
	errs := make(chan error, n)
	for i, p := range paths {
		go func() {
			cidr := pfx("10.99.7." + strconv.Itoa(i+1) + "/24")
			if _, err := b.Attach(AttachOptions{Netns: p, CIDRs: []netip.Prefix{cidr}}); err != nil {
				errs <- err
				return
			}
			ep, err := b.Inspect(p)
			if err == nil && !slices.Contains(ep.CIDRs, cidr) {
				err = errors.New("missing address " + cidr.String())
			}
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	eps, err := b.Endpoints()
	if err != nil || len(eps) != n {
		t.Fatalf("Endpoints = %d entries, %v; want %d", len(eps), err, n)
	}
	for _, p := range paths {
		go func() { _, err := b.Detach(p); errs <- err }()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if eps, err := b.Endpoints(); err != nil || len(eps) != 0 {
		t.Fatalf("Endpoints after detach = %v, %v", eps, err)
	}
}
