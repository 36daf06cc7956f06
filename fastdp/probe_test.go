package fastdp

import (
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"weavemesh.dev/weave/internal/netnstest"
)

func TestProbe(t *testing.T) {
	netnstest.NeedRoot(t)
	// Run from a test namespace, so that anything Probe left behind in
	// the caller's namespace would show.
	netnstest.Enter(t, netnstest.Name(nsPrefix)+"-probe")
	before, err := netlink.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	c := Probe()
	t.Logf("VXLAN: %s; ESP: %s", c.VXLAN, c.ESP)
	if !c.VXLAN.Available {
		t.Errorf("VXLAN %s; this test expects a kernel with VXLAN", c.VXLAN)
	}
	for what, cp := range map[string]Capability{"VXLAN": c.VXLAN, "ESP": c.ESP} {
		if cp.Available != (cp.String() == "available") ||
			(!cp.Available && (cp.Reason == "" || !strings.HasPrefix(cp.String(), "not available: "))) {
			t.Errorf("%s: %+v reads %q", what, cp, cp)
		}
	}
	if !c.ESP.Available && !strings.Contains(c.ESP.Reason, "rfc4106(gcm(aes))") && !strings.Contains(c.ESP.Reason, "xfrm") {
		t.Errorf("ESP reason %q does not say what was tried", c.ESP.Reason)
	}
	after, err := netlink.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(before) {
		t.Errorf("Probe changed the caller's namespace: %d links, were %d", len(after), len(before))
	}
}

func TestCapabilityString(t *testing.T) {
	if s := (Capability{Available: true}).String(); s != "available" {
		t.Error(s)
	}
	if s := (Capability{Reason: "no xfrm"}).String(); s != "not available: no xfrm" {
		t.Error(s)
	}
}
