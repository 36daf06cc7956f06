package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"weavemesh.dev/weave/test/harness"
)

// TestPathMTU: containers get MTU 1376; across a path whose underlay MTU is
// 1300, a full-size DF ping is refused with "frag needed" / "message too
// long" while smaller ones pass, and TCP adapts and completes.
func TestPathMTU(t *testing.T) {
	m := startMesh(t, harness.Options{Hosts: 3, HostMTU: map[int]int{3: 1300}}, 1)
	h1, h3 := m.cl.Host(1), m.cl.Host(3)
	c1, c2, c3 := m.ctrs[0][0], m.ctrs[1][0], m.ctrs[2][0]
	ctx := ctxFor(t, 3*time.Minute)

	for _, c := range m.all() {
		if mtu, err := c.LinkMTU(ctx, "ethwe"); err != nil || mtu != 1376 {
			t.Errorf("%s ethwe MTU = %d, %v; want 1376", c.Name, mtu, err)
		}
	}
	err := harness.PollFor(meshTimeout, "host1 to find the narrower path to host3", func(context.Context) error {
		c, err := h1.ConnectionTo(h3)
		if err != nil {
			return err
		}
		if c.MTU == 0 || c.MTU >= 1376 {
			return fmt.Errorf("path MTU to host3 is %d", c.MTU)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}

	// Full-size frames still pass where the path is wide.
	if err := ping(ctx, c1, c2.IP(), "-M", "do", "-s", "1348"); err != nil {
		t.Errorf("1376-byte DF ping host1 -> host2 (1500-byte underlay): %v", err)
	}
	if err := ping(ctx, c1, c3.IP(), "-M", "do", "-s", "1000"); err != nil {
		t.Errorf("1028-byte DF ping host1 -> host3: %v", err)
	}
	err = harness.Poll(ctx, "a full-size DF ping to host3 to be refused with an MTU error", func(ctx context.Context) error {
		r, err := c1.Ping(ctx, c3.IP(), "-M", "do", "-s", "1348", "-c", "2", "-i", "0.2")
		if err == nil && r.Received > 0 {
			return harness.Permanent(fmt.Errorf("1376-byte DF ping crossed a 1300-byte path: %s", r.Output))
		}
		if !r.FragNeeded && !r.TooLong {
			return fmt.Errorf("no frag-needed / message-too-long yet: %s", harness.Tail(r.Output, 4))
		}
		t.Logf("DF ping refused (mtu %d): frag needed %v, message too long %v", r.MTU, r.FragNeeded, r.TooLong)
		return nil
	})
	if err != nil {
		t.Error(err)
	}
	for _, p := range [][2]*harness.Container{{c1, c3}, {c3, c1}} {
		if _, err := harness.Transfer(ctx, p[0].NS, p[1].NS, p[1].IP(), 5001, 8<<20); err != nil {
			t.Errorf("TCP %s -> %s across the narrow path: %v", p[0].Name, p[1].Name, err)
		}
	}
}
