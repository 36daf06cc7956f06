package router

import (
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"go.uber.org/goleak"

	"weavemesh.dev/weave/fastdp"
	"weavemesh.dev/weave/internal/netnstest"
	"weavemesh.dev/weave/peer"
)

// The prober's socket sends full-size frames into the VXLAN device (its
// counters see each, of 14+MTU bytes), and close stops its goroutine.
// Runs as root in a throwaway namespace.
func TestProberSendsFullFramesAndStops(t *testing.T) {
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
