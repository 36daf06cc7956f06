package fastdp

import (
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"weavemesh.dev/weave/internal/netnstest"
)

// Test namespaces are named nsPrefix-<pid>-<seq>-<role> (netnstest.Name),
// so the leftovers of a crashed run are swept by the next.
const nsPrefix = "wvfd"

// enterHost moves the test's OS thread into a fresh namespace, which
// cleanup deletes with everything in it, and makes the bridge there.
func enterHost(t *testing.T) string {
	t.Helper()
	netnstest.NeedRoot(t)
	name := netnstest.Name(nsPrefix) + "-host"
	netnstest.Enter(t, name)
	mustBridge(t, "weave", 1376)
	return name
}

func mustBridge(t *testing.T, name string, mtu int) {
	t.Helper()
	la := netlink.NewLinkAttrs()
	la.Name, la.MTU = name, mtu
	br := &netlink.Bridge{LinkAttrs: la}
	if err := netlink.LinkAdd(br); err != nil {
		t.Fatalf("add bridge %s: %v", name, err)
	}
	if err := netlink.LinkSetUp(br); err != nil {
		t.Fatalf("bridge %s up: %v", name, err)
	}
}

func testOptions() Options {
	return Options{Bridge: "weave", MeshName: "test-mesh", MTU: 1376}
}

func mustEnsure(t *testing.T, o Options) *Device {
	t.Helper()
	d, err := Ensure(o)
	if err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// run runs a command (iproute2, ethtool) and returns its output; the
// commands check the package's work independently of its own netlink code.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func needTool(t *testing.T, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Skipf("needs %s (apt-get install -y iproute2 ethtool iputils-ping)", name)
	}
}

// vxlanLinks lists the names of the VXLAN links in the thread's namespace.
func vxlanLinks(t *testing.T) []string {
	t.Helper()
	out, err := listVXLAN()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func listVXLAN() ([]string, error) {
	ls, err := netlink.LinkList()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, l := range ls {
		if l.Type() == "vxlan" {
			out = append(out, l.Attrs().Name)
		}
	}
	return out, nil
}

// fdbShow returns `bridge fdb show dev DEV`'s lines with a destination
// ("MAC dst IP"), sorted: the table as iproute2 sees it.
func fdbShow(t *testing.T, ns, dev string) []string {
	t.Helper()
	args := []string{"fdb", "show", "dev", dev}
	if ns != "" {
		args = append([]string{"-n", ns}, args...)
	}
	var out []string
	for line := range strings.Lines(run(t, "bridge", args...)) {
		f := strings.Fields(line)
		if len(f) >= 3 && f[1] == "dst" {
			out = append(out, f[0]+" dst "+f[2])
		}
	}
	slices.Sort(out)
	return out
}
