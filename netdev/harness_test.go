package netdev

import (
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"weavemesh.dev/weave/internal/netnstest"
)

// Test namespaces are named nsPrefix-<pid>-<seq>-<role> (netnstest.Name),
// so leftovers of a crashed run can be recognised by their dead PID and
// swept.
const nsPrefix = "wvnd"

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
	e := &env{t: t, base: netnstest.Name(nsPrefix)}
	e.host = e.base + "-host"
	netnstest.Enter(t, e.host)
	return e
}

// container creates a named namespace and returns its path.
func (e *env) container(role string) string {
	e.t.Helper()
	return netnstest.Add(e.t, e.base+"-"+role)
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
