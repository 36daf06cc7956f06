package e2e

import (
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"weavemesh.dev/weave/test/harness"
)

var peerNameRE = regexp.MustCompile(`^[0-9a-f]{2}(:[0-9a-f]{2}){5}$`)

// TestLaunchTwice: `weave launch` prints the peer name; a second launch
// fails saying a router is already running; `weave stop` ends it.
func TestLaunchTwice(t *testing.T) {
	cl := newCluster(t, harness.Options{Hosts: 1})
	h := cl.Host(1)
	name, err := h.Launch()
	if err != nil {
		t.Fatal(err)
	}
	if !peerNameRE.MatchString(name) {
		t.Errorf("weave launch printed %q; want the peer name like aa:bb:cc:dd:ee:ff", name)
	}
	st, err := h.Status()
	if err != nil {
		t.Fatal(err)
	}
	if st.Name != name || !st.Ready {
		t.Errorf("status: name %s ready %v; launch printed %s", st.Name, st.Ready, name)
	}
	pid := h.RouterPID()

	_, err = h.Launch()
	var ee *harness.ExecError
	if !errors.As(err, &ee) || !strings.Contains(ee.Output, "already running") {
		t.Errorf("second weave launch: %v; want it to fail saying a router is already running", err)
	}
	if h.RouterPID() != pid {
		t.Errorf("router pid changed from %d to %d", pid, h.RouterPID())
	}
	if out, err := h.Weave("stop"); err != nil {
		t.Fatalf("weave stop: %v (%s)", err, out)
	}
	if err := h.WaitExit(ctxFor(t, 30*time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Weave("status"); err == nil {
		t.Error("weave status succeeded after weave stop")
	}
}
