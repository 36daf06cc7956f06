package e2e

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"weavemesh.dev/weave/test/harness"
)

// TestRouterKillRestart: a router killed with SIGKILL and started again with
// the same data dir and arguments rejoins, re-adopts the endpoints of its
// containers (no re-attach), and their traffic flows again.
func TestRouterKillRestart(t *testing.T) {
	m := startMesh(t, harness.Options{Hosts: 3}, 2)
	h2 := m.cl.Host(2)
	st, err := h2.Status()
	if err != nil {
		t.Fatal(err)
	}
	pingAll(t, m.all(), pingTimeout)

	if err := h2.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := h2.Restart(); err != nil {
		t.Fatal(err)
	}
	st2, err := h2.Status()
	if err != nil {
		t.Fatal(err)
	}
	if st2.Name != st.Name {
		t.Errorf("restarted router is %s, was %s; the data dir must keep the peer name", st2.Name, st.Name)
	}
	waitMesh(t, m.cl)
	eps, err := h2.Endpoints()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range m.ctrs[1] {
		found := false
		for _, e := range eps {
			if strings.Contains(e.Netns, c.NS.Name) {
				found = true
			}
		}
		if !found {
			t.Errorf("after restart, weave ps lacks %s (%s): %+v", c.Name, c.NS.Name, eps)
		}
	}
	pingAll(t, m.all(), pingTimeout)
	ctx := ctxFor(t, time.Minute)
	if _, err := harness.Transfer(ctx, m.ctrs[0][0].NS, m.ctrs[1][0].NS, m.ctrs[1][0].IP(), 5001, 4<<20); err != nil {
		t.Errorf("TCP to the restarted host: %v", err)
	}
}

// TestStopAndForget: `weave stop` ends the router, after which the CLI says
// none is running and the other peers see it as left. A peer that comes back
// at a known address is rejoined by the others; once they `weave forget` its
// address, they no longer rejoin it.
func TestStopAndForget(t *testing.T) {
	m := startMesh(t, harness.Options{Hosts: 3}, 0)
	h1, h2, h3 := m.cl.Host(1), m.cl.Host(2), m.cl.Host(3)

	if out, err := h3.Weave("stop"); err != nil {
		t.Fatalf("weave stop: %v (%s)", err, out)
	}
	if err := h3.WaitExit(ctxFor(t, 30*time.Second)); err != nil {
		t.Fatal(err)
	}
	_, err := h3.Weave("status")
	var ee *harness.ExecError
	if !errors.As(err, &ee) || !strings.Contains(ee.Output, "no router is running") {
		t.Errorf("weave status after stop: %v; want an error saying no router is running", err)
	}
	for _, h := range []*harness.Host{h1, h2} {
		err := harness.PollFor(meshTimeout, h.Name+" to see host3 left", func(context.Context) error {
			ps, err := peersByNick(h, h3.Name)
			if err != nil {
				return err
			}
			for _, p := range ps {
				if p.State == "left" {
					return nil
				}
			}
			return fmt.Errorf("host3 entries: %+v", ps)
		})
		if err != nil {
			t.Error(err)
		}
	}

	// Control: host3 comes back as a new peer with no peers of its own; the
	// others, which know its address, rejoin it.
	if err := h3.ResetDataDir(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := h3.StartRouter(); err != nil {
		t.Fatal(err)
	}
	err = harness.PollFor(2*meshTimeout, "host1 and host2 to rejoin host3", func(context.Context) error {
		st, err := h3.Status()
		if err != nil {
			return err
		}
		if st.Peers != 3 {
			return fmt.Errorf("host3 knows %d peers", st.Peers)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	rejoin := time.Since(start)
	t.Logf("host3 rejoined after %s", rejoin.Round(time.Millisecond))

	// Now forget it.
	if err := h3.Stop(); err != nil {
		t.Fatal(err)
	}
	for _, h := range []*harness.Host{h1, h2} {
		if out, err := h.Weave("forget", h3.IP.String()); err != nil {
			t.Fatalf("%s: weave forget: %v (%s)", h.Name, err, out)
		}
	}
	if err := h3.ResetDataDir(); err != nil {
		t.Fatal(err)
	}
	if err := h3.StartRouter(); err != nil {
		t.Fatal(err)
	}
	// Watch for well over the time the rejoin took above.
	window := min(max(10*time.Second, 2*rejoin+5*time.Second), 60*time.Second)
	deadline := time.Now().Add(window)
	err = harness.PollFor(window+30*time.Second, "the forgotten host3 to stay alone", func(context.Context) error {
		st, err := h3.Status()
		if err != nil {
			return harness.Permanent(err)
		}
		if st.Peers != 1 {
			return harness.Permanent(fmt.Errorf("host3 was rejoined: it knows %d peers", st.Peers))
		}
		for _, h := range []*harness.Host{h1, h2} {
			if alive, err := seesAlive(h, h3.Name); err != nil || alive {
				return harness.Permanent(fmt.Errorf("%s sees host3 alive again (err %v)", h.Name, err))
			}
		}
		if time.Now().Before(deadline) {
			return errors.New("still watching")
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
}
