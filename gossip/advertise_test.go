package gossip

import (
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"weavemesh.dev/weave/internal/netnstest"
)

// TestPublicOnlyHost: on a host whose only IPv4 address is public, a node
// without an advertise address fails saying which flag to give and which
// addresses the host has; with the address given it starts.
func TestPublicOnlyHost(t *testing.T) {
	netnstest.Enter(t, netnstest.Name("wvgpub"))
	netnstest.Loopback(t)
	la := netlink.NewLinkAttrs()
	la.Name = "wvpub0"
	veth := &netlink.Veth{LinkAttrs: la, PeerName: "wvpub1"}
	if err := netlink.LinkAdd(veth); err != nil {
		t.Fatal(err)
	}
	addr, _ := netlink.ParseAddr("203.0.113.5/24") // documentation range, inside this namespace only
	if err := netlink.AddrAdd(veth, addr); err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetUp(veth); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, "pub")
	cfg.BindAddr = "0.0.0.0"
	cfg.Port = 17946
	_, err := New(cfg)
	if err == nil || !strings.Contains(err.Error(), "--advertise-addr") || !strings.Contains(err.Error(), "203.0.113.5") {
		t.Fatalf("without an advertise address: %v; want advice naming --advertise-addr and the host's address", err)
	}
	cfg.AdvertiseAddr = "203.0.113.5"
	n, err := New(cfg)
	if err != nil {
		t.Fatalf("with --advertise-addr: %v", err)
	}
	if err := n.Shutdown(); err != nil {
		t.Fatal(err)
	}
}
