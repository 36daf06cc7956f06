package router

import (
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"weavemesh.dev/weave/fastdp"
	"weavemesh.dev/weave/internal/netnstest"
	"weavemesh.dev/weave/mesh/macs"
	"weavemesh.dev/weave/peer"
)

// testDevice enters a throwaway namespace with a bridge "weave", an
// underlay veth holding 192.0.2.1/24 and the VXLAN device; root only.
func testDevice(t *testing.T) *fastdp.Device {
	t.Helper()
	netnstest.NeedRoot(t)
	netnstest.Enter(t, netnstest.Name("wvrt")+"-host")
	netnstest.Loopback(t)
	for _, l := range []netlink.Link{
		&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "weave", MTU: 1376}},
		&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "underlay"}, PeerName: "underlay-peer"},
	} {
		if err := netlink.LinkAdd(l); err != nil {
			t.Fatalf("add %s: %v", l.Attrs().Name, err)
		}
		if err := netlink.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
	}
	u, _ := netlink.LinkByName("underlay")
	addr, _ := netlink.ParseAddr("192.0.2.1/24")
	if err := netlink.AddrAdd(u, addr); err != nil {
		t.Fatal(err)
	}
	dev, err := fastdp.Ensure(fastdp.Options{Bridge: "weave", MeshName: "test", MTU: 1376})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dev.Remove() })
	return dev
}

// MACs the bridge learned on the VXLAN port keep their MAC table entries
// alive while their peer is on fastdp; others age as before.
func TestKeepTunnelMACs(t *testing.T) {
	dev := testDevice(t)
	fastMAC, sleeveMAC := net.HardwareAddr{2, 0, 0, 0, 1, 1}, net.HardwareAddr{2, 0, 0, 0, 2, 2}
	for _, m := range []net.HardwareAddr{fastMAC, sleeveMAC} {
		err := netlink.NeighAdd(&netlink.Neigh{LinkIndex: dev.Index(), Family: unix.AF_BRIDGE,
			Flags: netlink.NTF_MASTER, State: netlink.NUD_REACHABLE, HardwareAddr: m})
		if err != nil {
			t.Fatalf("add a learned entry: %v", err)
		}
	}
	const fastPeer, sleevePeer = peer.Name(7), peer.Name(8)
	now := time.Now()
	mt := macs.New(10*time.Minute, nil)
	old := now.Add(-9 * time.Minute).Unix()
	mt.Learn(macs.AddrFrom(fastMAC), fastPeer, old)
	mt.Learn(macs.AddrFrom(sleeveMAC), sleevePeer, old)
	if err := keepTunnelMACs(dev.Index(), mt, map[peer.Name]bool{fastPeer: true}, now); err != nil {
		t.Fatal(err)
	}
	later := now.Add(2 * time.Minute).Unix()
	if owner, ok := mt.Lookup(macs.AddrFrom(fastMAC), later); !ok || owner != fastPeer {
		t.Errorf("the fastdp peer's MAC was not kept: %v %v", owner, ok)
	}
	if _, ok := mt.Lookup(macs.AddrFrom(sleeveMAC), later); ok {
		t.Error("a sleeve peer's MAC was kept alive by the tunnel's entries")
	}
}

// The prober's socket sends full-size frames into the VXLAN device (its
// counters see each, of 14+MTU bytes), and close stops its goroutine.
// Runs as root in a throwaway namespace.
func TestProberSendsFullFramesAndStops(t *testing.T) {
	dev := testDevice(t)
	peerMAC := fastdp.MAC{2, 0, 0, 0, 0, 9}
	if _, err := dev.Reconcile(fastdp.Desired{Unicast: map[fastdp.MAC]netip.Addr{peerMAC: netip.MustParseAddr("192.0.2.9")}}); err != nil {
		t.Fatal(err)
	}

	ignore := goleak.IgnoreCurrent()
	p, err := newProber(dev, peer.Name(1), slog.New(slog.DiscardHandler),
		func(peer.Name) (fastdp.MAC, bool) { return fastdp.MAC{}, false }, func(peer.Name, time.Time) {})
	if err != nil {
		t.Fatal(err)
	}
	c0, err := dev.Counters()
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := p.request(peer.Name(9), peerMAC, time.Now()); err != nil {
			t.Fatalf("send a probe: %v", err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := dev.Counters()
		if err != nil {
			t.Fatal(err)
		}
		if n, b := c.TxPackets-c0.TxPackets, c.TxBytes-c0.TxBytes; n >= 3 {
			// The device counts what follows the Ethernet header: a
			// full frame is the MTU.
			if b != 3*1376 {
				t.Errorf("3 probes were %d bytes in the device, want 3 x 1376", b)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("device sent %d frames, want 3 probes", c.TxPackets-c0.TxPackets)
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.close()
	p.close()
	goleak.VerifyNone(t, ignore)
}
