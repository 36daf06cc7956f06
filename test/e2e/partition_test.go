package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"weavemesh.dev/weave/test/harness"
)

// TestPartialConnectivityRelay: with the underlay path between hosts 2 and 3
// cut, their containers still reach each other through host1, and host2
// reports host3 as relayed via host1. After healing, the connection is
// direct again and host1 stops carrying their traffic.
func TestPartialConnectivityRelay(t *testing.T) {
	m := startMesh(t, harness.Options{Hosts: 3}, 1)
	cl := m.cl
	h1, h2, h3 := cl.Host(1), cl.Host(2), cl.Host(3)
	c2, c3 := m.ctrs[1][0], m.ctrs[2][0]
	st1, err := h1.Status()
	if err != nil {
		t.Fatal(err)
	}

	if err := cl.Cut(h2, h3); err != nil {
		t.Fatal(err)
	}
	err = harness.PollFor(meshTimeout, "host2 to see host3 relayed via host1", func(ctx context.Context) error {
		c, err := h2.ConnectionTo(h3)
		if err != nil {
			return err
		}
		// Via names the relay by peer name (possibly followed by its
		// nickname) or by nickname.
		if c.State != "relayed" || (!strings.HasPrefix(c.Via, st1.Name) && c.Via != h1.Name) {
			return fmt.Errorf("connection to host3: state %q via %q (%s); want relayed via %s (%s)",
				c.State, c.Via, c.Reason, h1.Name, st1.Name)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxFor(t, 3*time.Minute)
	if err := ping(ctx, c2, c3.IP()); err != nil {
		t.Fatalf("host2 -> host3 across the cut: %v", err)
	}
	if err := ping(ctx, c3, c2.IP()); err != nil {
		t.Fatalf("host3 -> host2 across the cut: %v", err)
	}
	n, err := relayedPackets(ctx, h1, c2, c3.IP(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Error("host1's underlay carried none of host2 -> host3's pings while their path was cut")
	}
	t.Logf("while cut, host1's underlay carried %d packets of 3 pings from host2 to host3", n)
	// Bulk traffic survives relaying too.
	if _, err := harness.Transfer(ctx, c2.NS, c3.NS, c3.IP(), 5001, 4<<20); err != nil {
		t.Errorf("TCP across the cut: %v", err)
	}

	if err := cl.Heal(h2, h3); err != nil {
		t.Fatal(err)
	}
	err = harness.PollFor(meshTimeout, "host2 -> host3 established again", func(ctx context.Context) error {
		return established(h2, []*harness.Host{h3})
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := ping(ctx, c2, c3.IP()); err != nil {
		t.Fatalf("after heal: %v", err)
	}
	seq := 100
	err = harness.Poll(ctx, "host1 to stop relaying host2 -> host3", func(ctx context.Context) error {
		seq++
		n, err := relayedPackets(ctx, h1, c2, c3.IP(), seq)
		if err != nil {
			return err
		}
		if n != 0 {
			return fmt.Errorf("host1 still carried %d packets", n)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
}
