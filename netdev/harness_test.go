package netdev

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"
)

// Test namespaces are named nsPrefix-<pid>-<seq>-<role>, so leftovers of a
// crashed run can be recognised by their dead PID and swept.
const nsPrefix = "wvnd"

var nsSeq atomic.Int64

func TestMain(m *testing.M) {
	if os.Geteuid() == 0 {
		sweepLeftovers()
	}
	os.Exit(m.Run())
}

func sweepLeftovers() {
	ents, err := os.ReadDir("/var/run/netns")
	if err != nil {
		return
	}
	for _, e := range ents {
		parts := strings.SplitN(e.Name(), "-", 3)
		if len(parts) < 3 || parts[0] != nsPrefix {
			continue
		}
		pid, err := strconv.Atoi(parts[1])
		if err != nil || pid == os.Getpid() || processAlive(pid) {
			continue
		}
		_ = netns.DeleteNamed(e.Name())
	}
}

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces, bridges and veth pairs")
	}
}

func needPing(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("ping"); err != nil {
		t.Skip("needs ping (apt-get install -y iputils-ping) to prove traffic crosses the bridge")
	}
}

// env is one test's private "host" namespace, which the test goroutine's OS
// thread is moved into until cleanup, plus any "container" namespaces.
type env struct {
	t    *testing.T
	base string // nsPrefix-<pid>-<seq>
	host string // name of the host namespace
}

func newEnv(t *testing.T) *env {
	t.Helper()
	needRoot(t)
	e := &env{t: t, base: fmt.Sprintf("%s-%d-%d", nsPrefix, os.Getpid(), nsSeq.Add(1))}
	e.host = e.base + "-host"

	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("get current netns: %v", err)
	}
	_ = netns.DeleteNamed(e.host)     // leftover of a crashed run with a reused PID
	ns, err := netns.NewNamed(e.host) // moves this thread into the new namespace
	if err != nil {
		orig.Close()
		runtime.UnlockOSThread()
		t.Fatalf("create host netns %s: %v", e.host, err)
	}
	t.Cleanup(func() {
		if err := netns.Set(orig); err != nil {
			// Keep the thread locked: the runtime then discards it when the
			// test goroutine ends, instead of reusing a thread in a dead netns.
			t.Errorf("restore netns: %v", err)
		} else {
			runtime.UnlockOSThread()
		}
		ns.Close()
		orig.Close()
		if err := netns.DeleteNamed(e.host); err != nil {
			t.Errorf("delete netns %s: %v", e.host, err)
		}
	})
	// Belt and braces: everything below changes interfaces, which must never
	// happen in the real host namespace.
	root, err := netns.GetFromPid(1)
	if err == nil {
		defer root.Close()
		if root.Equal(ns) {
			t.Fatal("test namespace is the root namespace; refusing to continue")
		}
	}
	return e
}

// container creates a named namespace with lo up and returns its path.
func (e *env) container(role string) string {
	e.t.Helper()
	name := e.base + "-" + role
	_ = netns.DeleteNamed(name)
	run(e.t, "ip", "netns", "add", name)
	e.t.Cleanup(func() {
		if err := netns.DeleteNamed(name); err != nil {
			e.t.Errorf("delete netns %s: %v", name, err)
		}
	})
	return "/var/run/netns/" + name
}

func nsName(path string) string { return strings.TrimPrefix(path, "/var/run/netns/") }

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// inNS runs a command inside the named namespace.
func inNS(t *testing.T, ns string, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...).CombinedOutput()
	return string(out), err
}

// eventuallyPing pings dst from namespace ns until a reply arrives or the
// deadline passes: the first probe may be lost to neighbour resolution or a
// port still being enabled.
func eventuallyPing(t *testing.T, ns, dst string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var out string
	var err error
	for time.Now().Before(deadline) {
		if out, err = inNS(t, ns, "ping", "-n", "-c1", "-W1", dst); err == nil {
			return
		}
	}
	t.Fatalf("ping %s from %s: %v\n%s", dst, ns, err, out)
}

// neverPing checks that a single probe gets no answer.
func neverPing(t *testing.T, ns, dst string) {
	t.Helper()
	if out, err := inNS(t, ns, "ping", "-n", "-c1", "-W1", dst); err == nil {
		t.Fatalf("ping %s from %s unexpectedly succeeded:\n%s", dst, ns, out)
	}
}
