package tap

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

const nsPrefix = "wvtap-"

var (
	sweepOnce sync.Once
	nsSeq     atomic.Int64
)

// sweepNamespaces deletes namespaces left by earlier runs whose process is
// gone.
func sweepNamespaces() {
	entries, _ := os.ReadDir("/var/run/netns")
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), nsPrefix)
		if !ok {
			continue
		}
		pidStr, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); err == syscall.ESRCH {
			netns.DeleteNamed(e.Name())
		}
	}
}

func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates a network namespace")
	}
}

// enterNewNS locks the test goroutine to its OS thread and moves that
// thread into a fresh namespace with loopback up; cleanup moves it back and
// deletes the namespace. Sockets opened by the test goroutine live there.
func enterNewNS(t testing.TB) (string, netns.NsHandle) {
	t.Helper()
	needRoot(t)
	sweepOnce.Do(sweepNamespaces)
	name := fmt.Sprintf("%s%d-%d", nsPrefix, os.Getpid(), nsSeq.Add(1))
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("get current netns: %v", err)
	}
	ns, err := netns.NewNamed(name)
	if err != nil {
		orig.Close()
		runtime.UnlockOSThread()
		t.Fatalf("create netns %s: %v", name, err)
	}
	t.Cleanup(func() {
		if err := netns.Set(orig); err != nil {
			// Leave the thread locked: it dies with the goroutine
			// instead of serving others from the wrong namespace.
			t.Errorf("restore netns: %v", err)
		} else {
			runtime.UnlockOSThread()
		}
		ns.Close()
		orig.Close()
		if err := netns.DeleteNamed(name); err != nil {
			t.Errorf("delete netns %s: %v", name, err)
		}
	})
	if _, err := os.Stat(filepath.Join("/var/run/netns", name)); err != nil {
		t.Fatalf("netns %s not mounted: %v", name, err)
	}
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
	lo, err := netlink.LinkByName("lo")
	if err == nil {
		err = netlink.LinkSetUp(lo)
	}
	if err != nil {
		t.Fatalf("bring up lo: %v", err)
	}
	for _, c := range []string{"all", "default"} {
		if err := os.WriteFile("/proc/sys/net/ipv6/conf/"+c+"/disable_ipv6", []byte("1"), 0o644); err != nil {
			t.Logf("disable IPv6: %v", err)
		}
	}
}
