package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"weavemesh.dev/weave/test/harness"
)

// buildWithProtocol builds the weave binary with the sleeve protocol
// range lo..hi and the version string ver into dir.
func buildWithProtocol(t *testing.T, dir, ver string, lo, hi int) string {
	t.Helper()
	root, err := harness.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		gobin = "/usr/local/go/bin/go"
	}
	out := filepath.Join(dir, fmt.Sprintf("weave-proto%d-%d", lo, hi))
	ldflags := fmt.Sprintf("-X weavemesh.dev/weave/router.protocolRange=%d..%d -X main.version=%s", lo, hi, ver)
	cmd := exec.Command(gobin, "build", "-ldflags", ldflags, "-o", out, "./cmd/weave")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build weave with protocol %d..%d: %v\n%s", lo, hi, err, b)
	}
	return out
}

// startOtherBuild runs bin as host h's router, joined to host1, and
// waits until its API answers. It is stopped (SIGTERM) at cleanup.
func startOtherBuild(t *testing.T, cl *harness.Cluster, h *harness.Host, bin, logPath string) *harness.Proc {
	t.Helper()
	if err := os.MkdirAll(h.DataDir(), 0o755); err != nil {
		t.Fatal(err)
	}
	p, err := h.NS.Start(logPath, bin, "router", "--data-dir", h.DataDir(), "--nickname", h.Name,
		"--no-plugin=true", cl.Host(1).IP.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop(15 * time.Second) })
	err = harness.PollFor(meshTimeout, h.Name+"'s router of the other build to answer", func(context.Context) error {
		if p.Exited() {
			return harness.Permanent(fmt.Errorf("it exited: %v\n%s", p.Err(), harness.Tail(p.Log(), 20)))
		}
		st, err := h.Status()
		if err == nil && !st.Ready {
			err = errors.New("not ready")
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestUpgradeProtocolRanges runs two builds side by side. A build that
// speaks protocol 3..4 next to one that speaks 2..2 is refused on both
// sides: each router logs the refusal with both ranges, and each one's
// weave status connections shows the other failed with that reason. A
// build of 2..3 and another version string connects, and weave status
// warns that the mesh runs mixed versions.
func TestUpgradeProtocolRanges(t *testing.T) {
	cl := newCluster(t, harness.Options{Hosts: 2})
	h1, h2 := cl.Host(1), cl.Host(2)
	newer := buildWithProtocol(t, cl.Dir, "next-incompatible", 3, 4)
	overlapping := buildWithProtocol(t, cl.Dir, "next-compatible", 2, 3)
	if err := h1.StartRouter(); err != nil {
		t.Fatal(err)
	}
	logB := filepath.Join(cl.Dir, "host2-other-build.log")
	p := startOtherBuild(t, cl, h2, newer, logB)

	refused := func(h, other *harness.Host, theirs, ours string) error {
		c, err := h.ConnectionTo(other)
		if err != nil {
			return err
		}
		want := fmt.Sprintf("peer speaks protocol %s, we speak %s", theirs, ours)
		if c.State != "failed" || !strings.Contains(c.Reason, want) {
			return fmt.Errorf("%s -> %s: %s %q, want failed with %q", h.Name, other.Name, c.State, c.Reason, want)
		}
		out, err := h.Weave("status", "connections")
		if err != nil || !strings.Contains(out, want) {
			return fmt.Errorf("%s: weave status connections lacks %q (%v):\n%s", h.Name, want, err, out)
		}
		return nil
	}
	err := harness.PollFor(meshTimeout, "both sides to refuse the other", func(context.Context) error {
		if err := refused(h1, h2, "3..4", "2..2"); err != nil {
			return err
		}
		return refused(h2, h1, "2..2", "3..4")
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range []struct{ who, log, want string }{
		{h1.Name, h1.RouterLog(), "peer speaks protocol 3..4, we speak 2..2"},
		{h2.Name, p.Log(), "peer speaks protocol 2..2, we speak 3..4"},
	} {
		if !strings.Contains(l.log, "refusing a peer") || !strings.Contains(l.log, l.want) {
			t.Errorf("%s's log lacks the refusal with %q:\n%s", l.who, l.want, harness.Tail(l.log, 30))
		}
	}
	if out, err := h1.Weave("status"); err != nil || !strings.Contains(out, "Warning: the peers speak different protocol ranges (2..2 on 1, 3..4 on 1)") {
		t.Errorf("weave status next to a refused peer (%v):\n%s", err, out)
	}
	if n := strings.Count(h1.RouterLog(), "refusing a peer"); n != 1 {
		t.Errorf("host1 logged the refusal %d times, want once (per change, not per refresh)", n)
	}

	// The overlapping build, same peer name (same data dir).
	if err := p.Stop(15 * time.Second); err != nil {
		t.Fatal(err)
	}
	startOtherBuild(t, cl, h2, overlapping, logB)
	waitMesh(t, cl)
	out, err := h1.Weave("status")
	if err != nil || !strings.Contains(out, "Warning: the mesh runs mixed versions") || !strings.Contains(out, "next-compatible on 1") ||
		!strings.Contains(out, "different protocol ranges (2..2 on 1, 2..3 on 1)") {
		t.Errorf("weave status on a mixed mesh (%v):\n%s", err, out)
	}
	if log := h1.RouterLog(); !strings.Contains(log, "no longer refusing a peer") {
		t.Errorf("host1 did not log the end of the refusal:\n%s", harness.Tail(log, 20))
	}
}
