// Package netnstest owns the network namespaces that tests create: their
// names, which carry the creating process's PID so that a later run can
// sweep the leftovers of one that crashed; entering one on a locked OS
// thread and coming back; and deleting them at cleanup. It is for tests
// only and needs root; NeedRoot skips a test otherwise.
package netnstest

import (
	"errors"
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

// Dir is where named namespaces are mounted.
const Dir = "/var/run/netns"

var (
	seq   atomic.Int64
	swept sync.Map // prefix -> *sync.Once
)

// NeedRoot skips the test unless it runs as root.
func NeedRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces")
	}
}

// Name returns a new namespace name, prefix-PID-seq; callers may append
// "-role" for several namespaces of one test. prefix must not hold '-'.
// The first call for a prefix deletes the namespaces of that prefix left
// by processes that are gone.
func Name(prefix string) string {
	once, _ := swept.LoadOrStore(prefix, new(sync.Once))
	once.(*sync.Once).Do(func() { sweep(prefix) })
	return fmt.Sprintf("%s-%d-%d", prefix, os.Getpid(), seq.Add(1))
}

// sweep deletes prefix's namespaces whose creating process is dead.
func sweep(prefix string) {
	ents, err := os.ReadDir(Dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		parts := strings.SplitN(e.Name(), "-", 3)
		if len(parts) < 3 || parts[0] != prefix {
			continue
		}
		pid, err := strconv.Atoi(parts[1])
		if err != nil || pid == os.Getpid() || alive(pid) {
			continue
		}
		_ = netns.DeleteNamed(e.Name())
	}
}

func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// Enter locks the calling goroutine to its OS thread and moves the thread
// into a new namespace called name, bare as `ip netns add` makes it
// (loopback down; see Loopback). Sockets and links the goroutine creates
// live there. Cleanup moves the thread back and
// deletes the namespace. It fails the test rather than go on in the root
// namespace, where the test would change the real host's interfaces.
func Enter(t testing.TB, name string) {
	t.Helper()
	NeedRoot(t)
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("get current netns: %v", err)
	}
	_ = netns.DeleteNamed(name) // a leftover of a crashed run with a reused PID
	ns, err := netns.NewNamed(name)
	if err != nil {
		orig.Close()
		runtime.UnlockOSThread()
		t.Fatalf("create netns %s: %v", name, err)
	}
	t.Cleanup(func() {
		if err := netns.Set(orig); err != nil {
			// Keep the thread locked: the runtime then discards it when
			// the goroutine ends, instead of reusing a thread left in a
			// deleted namespace.
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
	if root, err := netns.GetFromPid(1); err == nil {
		same := root.Equal(ns)
		root.Close()
		if same {
			t.Fatal("test namespace is the root namespace; refusing to continue")
		}
	}
	if _, err := os.Stat(filepath.Join(Dir, name)); err != nil {
		t.Fatalf("netns %s not mounted: %v", name, err)
	}
}

// Loopback brings up lo in the calling thread's namespace: after Enter,
// for tests that talk over 127.0.0.1.
func Loopback(t testing.TB) {
	t.Helper()
	lo, err := netlink.LinkByName("lo")
	if err == nil {
		err = netlink.LinkSetUp(lo)
	}
	if err != nil {
		t.Fatalf("bring up lo: %v", err)
	}
}

// Add creates a namespace called name without entering it, as
// `ip netns add` does (loopback stays down), and returns its path.
// Cleanup deletes it.
func Add(t testing.TB, name string) string {
	t.Helper()
	NeedRoot(t)
	_ = netns.DeleteNamed(name)
	if err := create(name); err != nil {
		_ = netns.DeleteNamed(name)
		t.Fatalf("create netns %s: %v", name, err)
	}
	t.Cleanup(func() {
		if err := netns.DeleteNamed(name); err != nil {
			t.Errorf("delete netns %s: %v", name, err)
		}
	})
	return filepath.Join(Dir, name)
}

// create makes and mounts a namespace called name, on a thread of its
// own: creating a namespace moves the thread into it, and a thread that
// cannot come back must die with its goroutine.
func create(name string) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		ns, err := netns.NewNamed(name)
		if err != nil {
			errc <- err
			return
		}
		ns.Close()
		if err := netns.Set(orig); err != nil {
			errc <- fmt.Errorf("return from %s: %w", name, err)
			return // the thread stays locked and ends with this goroutine
		}
		runtime.UnlockOSThread()
		errc <- nil
	}()
	return <-errc
}

// Do runs fn on an OS thread inside the namespace at path and returns its
// error; the calling goroutine stays where it is. Sockets fn opens stay
// in that namespace after Do returns.
func Do(path string, fn func() error) error {
	target, err := netns.GetFromPath(path)
	if err != nil {
		return fmt.Errorf("netns %s: %w", path, err)
	}
	defer target.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		if err := netns.Set(target); err != nil {
			errc <- fmt.Errorf("enter netns %s: %w", path, err)
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("return from netns %s: %w", path, err))
			return // the thread stays locked and ends with this goroutine
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}
