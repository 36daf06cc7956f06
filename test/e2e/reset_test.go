package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"weavemesh.dev/weave/api"
	"weavemesh.dev/weave/test/harness"
)

// TestReset: weave reset on one of three hosts detaches its containers,
// hands its address space to the others at once (no reclaim timeout),
// stops the router and leaves no bridge, VXLAN device or data behind.
func TestReset(t *testing.T) {
	cl := startIPAM(t, 3)
	h1, h2, h3 := cl.Host(1), cl.Host(2), cl.Host(3)
	c, err := h3.AddContainer("rs1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := attachAuto(c); err != nil {
		t.Fatal(err)
	}
	gone := selfName(t, h3)
	out, err := h3.Weave("reset", "--data-dir", h3.DataDir())
	if err != nil {
		t.Fatalf("weave reset: %v\n%s", err, out)
	}
	if !strings.Contains(out, "detached 1 endpoints") || !strings.Contains(out, "handed ") {
		t.Errorf("weave reset printed:\n%s", out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := h3.WaitExit(ctx); err != nil {
		t.Fatal(err)
	}
	// Well before the default reclaim timeout of 10 minutes, the others own
	// the whole range.
	waitIPAMSettled(t, []*harness.Host{h1, h2}, 20*time.Second, "host3's space handed over", func(h *harness.Host, st api.IPAMStatus) error {
		var total uint64
		for _, p := range st.Peers {
			if p.Name == gone && p.Addresses > 0 {
				return fmt.Errorf("host3 still owns %d addresses", p.Addresses)
			}
			total += uint64(p.Addresses)
		}
		if total != 1<<20 {
			return fmt.Errorf("owners hold %d of %d addresses", total, 1<<20)
		}
		return nil
	})
	for _, link := range []string{"weave", "weave-vxlan"} {
		if out, err := h3.Output(ctx, "ip", "link", "show", link); err == nil {
			t.Errorf("%s still has %s:\n%s", h3.Name, link, out)
		}
	}
	if out, _ := c.NS.Output(ctx, "ip", "-o", "link"); strings.Count(out, "\n") > 1 {
		t.Errorf("the container still has interfaces besides lo:\n%s", out)
	}
	left, _ := filepath.Glob(filepath.Join(h3.DataDir(), "*"))
	if _, err := os.Stat(h3.DataDir()); err == nil && len(left) > 0 {
		t.Errorf("data left in %s: %v", h3.DataDir(), left)
	}
	// The others allocate on.
	if _, err := attachNew(t, h1, "after"); err != nil {
		t.Fatal(err)
	}
}
