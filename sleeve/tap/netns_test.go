package tap

import (
	"fmt"
	"os"
	"testing"

	"github.com/vishvananda/netns"

	"weavemesh.dev/weave/internal/netnstest"
)

// enterNewNS locks the test goroutine to its OS thread and moves that
// thread into a fresh namespace with loopback up and IPv6 off, and returns
// its name and a handle on it; cleanup moves the thread back and deletes
// the namespace. Sockets opened by the test goroutine live there. It skips
// the test unless it runs as root.
func enterNewNS(t testing.TB) (string, netns.NsHandle) {
	t.Helper()
	name := netnstest.Name("wvtap")
	netnstest.Enter(t, name)
	ns, err := netns.Get()
	if err != nil {
		t.Fatalf("get netns %s: %v", name, err)
	}
	t.Cleanup(func() { ns.Close() })
	setupNS(t)
	return name, ns
}

// inNS runs fn with the (locked) test thread in ns, then returns it to
// home. Sockets and links created by fn belong to ns.
func inNS(t testing.TB, ns, home netns.NsHandle, fn func()) {
	t.Helper()
	if err := netns.Set(ns); err != nil {
		t.Fatalf("enter netns: %v", err)
	}
	defer func() {
		if err := netns.Set(home); err != nil {
			panic(fmt.Sprintf("cannot return to the test namespace: %v", err))
		}
	}()
	fn()
}

// newPeerNS creates another namespace named after the test's (so the
// sweep finds leftovers), with loopback up and IPv6 off, and leaves the
// thread in home.
func newPeerNS(t testing.TB, name string, home netns.NsHandle) netns.NsHandle {
	t.Helper()
	h, err := netns.NewNamed(name)
	if err != nil {
		t.Fatalf("create netns %s: %v", name, err)
	}
	t.Cleanup(func() {
		h.Close()
		if err := netns.DeleteNamed(name); err != nil {
			t.Errorf("delete netns %s: %v", name, err)
		}
	})
	// NewNamed moved the thread into the new namespace.
	func() {
		defer func() {
			if err := netns.Set(home); err != nil {
				panic(fmt.Sprintf("cannot return to the test namespace: %v", err))
			}
		}()
		setupNS(t)
	}()
	return h
}

// setupNS brings loopback up and turns IPv6 off in the current namespace,
// so the only frames on the wire are the ones a test causes.
func setupNS(t testing.TB) {
	t.Helper()
	netnstest.Loopback(t)
	for _, c := range []string{"all", "default"} {
		if err := os.WriteFile("/proc/sys/net/ipv6/conf/"+c+"/disable_ipv6", []byte("1"), 0o644); err != nil {
			t.Logf("disable IPv6: %v", err)
		}
	}
}
