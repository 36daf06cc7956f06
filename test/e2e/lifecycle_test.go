package e2e

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"weavemesh.dev/weave/api"
	"weavemesh.dev/weave/test/harness"
)

// hostLinks lists the interface names in h's namespace.
func hostLinks(ctx context.Context, t *testing.T, h *harness.Host) []string {
	t.Helper()
	out, err := h.Output(ctx, "ip", "-o", "link", "show")
	if err != nil {
		t.Fatalf("%s: ip link: %v", h.Name, err)
	}
	var names []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
		names = append(names, name)
	}
	return names
}

// clusterNetns lists the named network namespaces of the cluster.
func clusterNetns(t *testing.T, cl *harness.Cluster) []string {
	t.Helper()
	entries, err := os.ReadDir("/var/run/netns")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), cl.Prefix) {
			out = append(out, e.Name())
		}
	}
	return out
}

// lifecycleHost is host2 of TestLifecycle with what its router made.
type lifecycleHost struct {
	*harness.Host
	apiSock, pluginSock string
	netns               []string // the cluster's namespaces while it runs
}

// checkGone checks what a router leaves once it has stopped: no
// process in the host's namespace, no TAP, no VXLAN device, neither its
// API socket nor its plugin socket, no namespace the harness did not
// make; the bridge only when bridge is true.
func (h *lifecycleHost) checkGone(ctx context.Context, t *testing.T, cl *harness.Cluster, when string, bridge bool) {
	t.Helper()
	if pids, err := h.PIDs(); err != nil || len(pids) > 0 {
		t.Errorf("%s: processes left in %s: %v %v", when, h.Name, pids, err)
	}
	links := hostLinks(ctx, t, h.Host)
	t.Logf("%s: %s has %v", when, h.Name, links)
	for _, dev := range []string{"weave-tap", "weave-vxlan"} {
		if slices.Contains(links, dev) {
			t.Errorf("%s: %s still has %s (links %v)", when, h.Name, dev, links)
		}
	}
	if has := slices.Contains(links, "weave"); has != bridge {
		t.Errorf("%s: bridge weave present %v, want %v (links %v)", when, has, bridge, links)
	}
	for _, s := range []string{h.apiSock, h.pluginSock} {
		if _, err := os.Lstat(s); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: socket %s left (%v)", when, s, err)
		}
	}
	if now := clusterNetns(t, cl); !slices.Equal(now, h.netns) {
		t.Errorf("%s: network namespaces %v, want the harness's %v", when, now, h.netns)
	}
}

// TestLifecycle: a router stopped with SIGTERM and one stopped with weave
// stop leave nothing running and no TAP, VXLAN device or socket behind,
// keep the bridge for the attached container, and start again with the
// same peer name and the same allocations. A router killed with SIGKILL
// leaves its sockets and starts again over them. weave reset leaves
// nothing at all, and the other host's weave status ipam shows it owning
// the whole range at once.
func TestLifecycle(t *testing.T) {
	cl := newCluster(t, harness.Options{Hosts: 2})
	h1 := cl.Host(1)
	h2 := &lifecycleHost{Host: cl.Host(2),
		apiSock: filepath.Join(cl.Dir, "host2-api.sock"), pluginSock: pluginSocket(cl, cl.Host(2))}
	split := "--ipalloc-init=consensus=2"
	if err := h1.StartRouter(split); err != nil {
		t.Fatal(err)
	}
	args := []string{split, "--http-addr", api.UnixScheme + h2.apiSock, "--plugin-socket", h2.pluginSock, h1.IP.String()}
	if err := h2.StartRouter(args...); err != nil {
		t.Fatal(err)
	}
	waitMesh(t, cl)
	waitIPAMReady(t, cl.Hosts, 2)
	c, err := h2.AddContainer("lc1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := attachAuto(c); err != nil {
		t.Fatal(err)
	}
	c1, err := h1.AddContainer("lc0")
	if err != nil {
		t.Fatal(err)
	}
	a1, err := attachAuto(c1)
	if err != nil {
		t.Fatal(err)
	}
	peerIP := a1[0].Addr().String()
	h2.netns = clusterNetns(t, cl)
	name := selfName(t, h2.Host)
	before, err := ipamStatus(h2.Host)
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxFor(t, 4*time.Minute)
	for _, s := range []string{h2.apiSock, h2.pluginSock} {
		if _, err := os.Lstat(s); err != nil {
			t.Fatalf("the running router has no %s: %v", s, err)
		}
	}

	// restarted checks that the router came back as the same peer with
	// the same allocations, and that the container's traffic flows.
	restarted := func(when string) {
		t.Helper()
		if err := h2.StartRouter(args...); err != nil {
			t.Fatalf("%s: start again: %v\n%s", when, err, harness.Tail(h2.RouterLog(), 20))
		}
		if got := selfName(t, h2.Host); got != name {
			t.Errorf("%s: the router came back as %s, was %s", when, got, name)
		}
		waitMesh(t, cl)
		after, err := ipamStatus(h2.Host)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(after.Allocations) != fmt.Sprint(before.Allocations) || after.RingID != before.RingID {
			t.Errorf("%s: IPAM data changed:\nbefore %+v %s\nafter  %+v %s", when, before.Allocations, before.RingID, after.Allocations, after.RingID)
		}
		if err := ping(ctxFor(t, pingTimeout), c, peerIP); err != nil {
			t.Errorf("%s: the container on host2 cannot reach the one on host1: %v", when, err)
		}
	}

	// The devices checkGone looks for are there while the router runs.
	if links := hostLinks(ctx, t, h2.Host); !slices.Contains(links, "weave-tap") || !slices.Contains(links, "weave") {
		t.Fatalf("the running router has no TAP or bridge: %v", links)
	} else {
		t.Logf("running: host2 has %v", links)
	}

	// SIGTERM.
	if err := h2.Stop(); err != nil {
		t.Fatal(err)
	}
	h2.checkGone(ctx, t, cl, "after SIGTERM", true)
	for _, f := range []string{"peer-name", "ipam.db"} {
		if _, err := os.Stat(filepath.Join(h2.DataDir(), f)); err != nil {
			t.Errorf("after SIGTERM: %s lost: %v", f, err)
		}
	}
	restarted("after SIGTERM")

	// weave stop.
	if out, err := h2.Weave("stop"); err != nil {
		t.Fatalf("weave stop: %v %s", err, out)
	}
	if err := h2.WaitExit(ctx); err != nil {
		t.Fatal(err)
	}
	h2.checkGone(ctx, t, cl, "after weave stop", true)
	restarted("after weave stop")

	// SIGKILL leaves both sockets; the next start replaces them.
	if err := h2.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := h2.WaitExit(ctx); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{h2.apiSock, h2.pluginSock} {
		if _, err := os.Lstat(s); err != nil {
			t.Errorf("a killed router left no %s (%v); the restart below proves less", s, err)
		}
	}
	restarted("after SIGKILL")

	// weave reset: nothing left, and host1 owns the whole range now.
	if out, err := h2.Weave("reset", "--data-dir", h2.DataDir()); err != nil {
		t.Fatalf("weave reset: %v %s", err, out)
	}
	if err := h2.WaitExit(ctx); err != nil {
		t.Fatal(err)
	}
	h2.checkGone(ctx, t, cl, "after weave reset", false)
	if left, _ := filepath.Glob(filepath.Join(h2.DataDir(), "*")); len(left) > 0 {
		t.Errorf("after weave reset: data left: %v", left)
	}
	err = harness.PollFor(20*time.Second, "host1 to own the range", func(context.Context) error {
		out, err := h1.Weave("status", "ipam")
		if err != nil {
			return err
		}
		for _, line := range strings.Split(out, "\n") {
			f := strings.Fields(line)
			if len(f) >= 4 && f[0] == name && f[3] != "0" {
				return fmt.Errorf("host2 (%s) still owns %s addresses:\n%s", name, f[3], out)
			}
		}
		if !strings.Contains(out, "Status: ready") || !strings.Contains(out, "1048576") {
			return fmt.Errorf("weave status ipam on host1 does not show it owning all 1048576 addresses:\n%s", out)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
}
