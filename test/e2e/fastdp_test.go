package e2e

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"weavemesh.dev/weave/api"
	"weavemesh.dev/weave/test/harness"
)

// fastdpTimeout bounds how long a pair takes to move to fastdp once both
// ends are up (the bound for the return after a block is 30 s).
const fastdpTimeout = 30 * time.Second

// startMeshWith is startMesh with extra router arguments per host.
func startMeshWith(t *testing.T, opts harness.Options, perHost int, extra func(h *harness.Host) []string) *mesh {
	t.Helper()
	cl := newCluster(t, opts)
	for _, h := range cl.Hosts {
		if err := h.StartRouter(append(extra(h), routerArgs(cl, h)...)...); err != nil {
			t.Fatalf("start router on %s: %v", h.Name, err)
		}
	}
	m := &mesh{cl: cl}
	for _, h := range cl.Hosts {
		var cs []*harness.Container
		for n := 1; n <= perHost; n++ {
			c, err := h.AddContainer(fmt.Sprintf("c%d%d", h.Index, n))
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Attach(fmt.Sprintf("10.32.%d.%d/12", h.Index, n)); err != nil {
				t.Fatal(err)
			}
			cs = append(cs, c)
		}
		m.ctrs = append(m.ctrs, cs)
	}
	waitMesh(t, cl)
	return m
}

// waitDatapath waits until a's connection to b is established on the
// datapath want, and returns it.
func waitDatapath(t *testing.T, a, b *harness.Host, want string, timeout time.Duration) api.Connection {
	t.Helper()
	var last api.Connection
	err := harness.PollFor(timeout, fmt.Sprintf("%s -> %s on %s", a.Name, b.Name, want), func(ctx context.Context) error {
		c, err := a.ConnectionTo(b)
		if err != nil {
			return err
		}
		last = c
		if c.State != "established" || c.Datapath != want {
			return fmt.Errorf("%s -> %s: %s on %s (%s)", a.Name, b.Name, c.State, c.Datapath, c.DatapathReason)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return last
}

// vxlanCounters reads the kernel counters of host h's VXLAN device:
// frames (GSO super-frames count once) and bytes.
func vxlanCounters(t *testing.T, h *harness.Host) (tx, rx uint64) {
	t.Helper()
	f := vxlanStatus(t, h)
	return f.TxPackets, f.RxPackets
}

func vxlanBytes(t *testing.T, h *harness.Host) (tx, rx uint64) {
	t.Helper()
	f := vxlanStatus(t, h)
	return f.TxBytes, f.RxBytes
}

func vxlanStatus(t *testing.T, h *harness.Host) *api.FastdpStatus {
	t.Helper()
	st, err := h.Status()
	if err != nil {
		t.Fatal(err)
	}
	if st.Fastdp == nil || st.Fastdp.Device == "" {
		t.Fatalf("%s has no VXLAN device: %+v", h.Name, st.Fastdp)
	}
	return st.Fastdp
}

// TestFastdpCarriesTraffic: two hosts, one with --datapath fastdp and one
// with the default auto, move their pair to fastdp; ping and a TCP transfer
// (checked by hash) cross, through the VXLAN devices, whose kernel counters
// rise, and status shows the device, VXLAN available and ESP's verdict.
func TestFastdpCarriesTraffic(t *testing.T) {
	m := startMeshWith(t, harness.Options{Hosts: 2}, 1, func(h *harness.Host) []string {
		if h.Index == 1 {
			return []string{"--datapath", "fastdp"}
		}
		return nil
	})
	h1, h2 := m.cl.Host(1), m.cl.Host(2)
	waitDatapath(t, h1, h2, "fastdp", fastdpTimeout)
	waitDatapath(t, h2, h1, "fastdp", fastdpTimeout)
	st, err := h1.Status()
	if err != nil {
		t.Fatal(err)
	}
	if f := st.Fastdp; f == nil || f.Mode != "fastdp" || f.Device != "weave-vxlan" || f.VXLAN != "available" || f.ESP == "" {
		t.Errorf("status fastdp %+v; want mode fastdp, device weave-vxlan, VXLAN available, an ESP verdict", st.Fastdp)
	}
	if st.Datapaths["fastdp"] != 1 {
		t.Errorf("status datapaths %v, want fastdp 1", st.Datapaths)
	}
	out, err := h1.Weave("status", "connections")
	if err != nil || !strings.Contains(out, "fastdp") {
		t.Errorf("weave status connections: %v\n%s", err, out)
	}

	src, dst := m.ctrs[0][0], m.ctrs[1][0]
	tx1, _ := vxlanBytes(t, h1)
	_, rx2 := vxlanBytes(t, h2)
	ctx := ctxFor(t, 2*time.Minute)
	if err := ping(ctx, src, dst.IP()); err != nil {
		t.Fatal(err)
	}
	res, err := harness.Transfer(ctx, src.NS, dst.NS, dst.IP(), 5001, 8<<20)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("8 MB over fastdp in %s (%.0f Mbit/s)", res.Duration.Round(time.Millisecond), res.ThroughputMb)
	tx1b, _ := vxlanBytes(t, h1)
	_, rx2b := vxlanBytes(t, h2)
	if tx1b-tx1 < 8<<20 || rx2b-rx2 < 8<<20 {
		t.Errorf("VXLAN byte counters rose by tx %d on %s, rx %d on %s; want the transfer's 8 MiB", tx1b-tx1, h1.Name, rx2b-rx2, h2.Name)
	}
	// And not through the sleeve: its TAP saw none of it.
	if st, err := h1.Status(); err == nil && st.Drops != nil {
		t.Logf("host1 drops %v", st.Drops)
	}
}

// blockFastdp drops, at h's input, UDP to the fastdp port from other.
func blockFastdp(ctx context.Context, h, other *harness.Host) error {
	script := fmt.Sprintf(`table inet wvfastdp_%[1]s {}
delete table inet wvfastdp_%[1]s
table inet wvfastdp_%[1]s {
	chain input {
		type filter hook input priority -10; policy accept;
		ip saddr %[2]s udp dport 6786 counter drop
	}
}
`, other.Name, other.IP)
	_, err := h.ExecInput(ctx, strings.NewReader(script), "nft", "-f", "-")
	return err
}

func unblockFastdp(ctx context.Context, h, other *harness.Host) error {
	_, err := h.ExecInput(ctx, strings.NewReader(fmt.Sprintf("table inet wvfastdp_%[1]s {}\ndelete table inet wvfastdp_%[1]s\n", other.Name)),
		"nft", "-f", "-")
	return err
}

// TestFastdpFallbackAndReturn: with the fastdp port blocked between two
// hosts, their pair moves to the sleeve and traffic continues; once the
// block is lifted it is back on fastdp within 30 s, and the kernel
// counters show the traffic in the tunnel again.
func TestFastdpFallbackAndReturn(t *testing.T) {
	m := startMeshWith(t, harness.Options{Hosts: 2}, 1, func(*harness.Host) []string { return nil })
	h1, h2 := m.cl.Host(1), m.cl.Host(2)
	src, dst := m.ctrs[0][0], m.ctrs[1][0]
	waitDatapath(t, h1, h2, "fastdp", fastdpTimeout)
	ctx := ctxFor(t, 3*time.Minute)
	if err := ping(ctx, src, dst.IP()); err != nil {
		t.Fatal(err)
	}

	if err := blockFastdp(ctx, h2, h1); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unblockFastdp(context.Background(), h2, h1) })
	c := waitDatapath(t, h1, h2, "sleeve", fastdpTimeout)
	if !strings.Contains(c.DatapathReason, "probes") {
		t.Errorf("on the sleeve because %q; want the probes named", c.DatapathReason)
	}
	waitDatapath(t, h2, h1, "sleeve", fastdpTimeout)
	if _, err := src.Ping(ctx, dst.IP(), "-c", "5", "-i", "0.2"); err != nil {
		t.Errorf("ping on the sleeve: %v", err)
	}
	if _, err := harness.Transfer(ctx, src.NS, dst.NS, dst.IP(), 5002, 4<<20); err != nil {
		t.Errorf("transfer on the sleeve: %v", err)
	}

	if err := unblockFastdp(ctx, h2, h1); err != nil {
		t.Fatal(err)
	}
	lifted := time.Now()
	waitDatapath(t, h1, h2, "fastdp", fastdpTimeout)
	waitDatapath(t, h2, h1, "fastdp", fastdpTimeout-time.Since(lifted))
	t.Logf("back on fastdp %s after the block was lifted", time.Since(lifted).Round(100*time.Millisecond))
	tx, _ := vxlanCounters(t, h1)
	if _, err := src.Ping(ctx, dst.IP(), "-c", "20", "-i", "0.05"); err != nil {
		t.Errorf("ping back on fastdp: %v", err)
	}
	if tx2, _ := vxlanCounters(t, h1); tx2-tx < 20 {
		t.Errorf("VXLAN tx rose by %d during 20 pings; want at least 20", tx2-tx)
	}
}

// TestFastdpMixedBroadcastOnce: three hosts, host3 with --datapath sleeve,
// so host1-host2 is on fastdp and both pairs with host3 on the sleeve. A
// broadcast ping from a container on each host is answered by every other
// container exactly once: no copy lost, none doubled.
func TestFastdpMixedBroadcastOnce(t *testing.T) {
	m := startMeshWith(t, harness.Options{Hosts: 3}, 1, func(h *harness.Host) []string {
		if h.Index == 3 {
			return []string{"--datapath", "sleeve"}
		}
		return nil
	})
	h1, h2, h3 := m.cl.Host(1), m.cl.Host(2), m.cl.Host(3)
	waitDatapath(t, h1, h2, "fastdp", fastdpTimeout)
	waitDatapath(t, h2, h1, "fastdp", fastdpTimeout)
	c := waitDatapath(t, h1, h3, "sleeve", fastdpTimeout)
	if !strings.Contains(c.DatapathReason, "offers no fastdp") {
		t.Errorf("host1 -> host3 on the sleeve because %q; want the peer's lack of fastdp", c.DatapathReason)
	}
	pingAll(t, m.all(), pingTimeout)
	ctx := ctxFor(t, 2*time.Minute)
	for _, ct := range m.all() {
		// Answer broadcast pings (off by default).
		if out, err := ct.Exec(ctx, "sysctl", "-w", "net.ipv4.icmp_echo_ignore_broadcasts=0"); err != nil {
			t.Fatalf("%s: %v %s", ct.Name, err, out)
		}
	}
	for _, ct := range m.all() {
		// Broadcast pings for 4 s, one every 0.5 s: every other container
		// answers each request once (ping marks the rest DUP!). A
		// request's replies may still be on the way when ping exits, so
		// the last one need not be complete.
		out, err := ct.Exec(ctx, "ping", "-b", "-i", "0.5", "-w", "4", "10.47.255.255")
		if err != nil && !strings.Contains(out, "received") {
			t.Fatalf("%s: broadcast ping: %v\n%s", ct.Name, err, out)
		}
		got, maxSeq := repliesFrom(out)
		for _, other := range m.all() {
			if other == ct {
				continue
			}
			seqs := got[other.IP()]
			for seq, n := range seqs {
				if n != 1 {
					t.Errorf("broadcast ping %d from %s (%s): %d replies from %s, want 1", seq, ct.Name, ct.Host.Name, n, other.Name)
				}
			}
			if len(seqs) < maxSeq-1 || maxSeq < 5 {
				t.Errorf("broadcast pings from %s (%s): %s answered %d of %d\n%s", ct.Name, ct.Host.Name, other.Name, len(seqs), maxSeq, out)
			}
		}
	}
}

// repliesFrom counts ping's reply lines by source address and icmp_seq,
// and returns the highest icmp_seq seen.
func repliesFrom(out string) (map[string]map[int]int, int) {
	got := map[string]map[int]int{}
	maxSeq := 0
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 5 || f[1] != "bytes" || f[2] != "from" {
			continue
		}
		src := strings.TrimSuffix(f[3], ":")
		seq, err := strconv.Atoi(strings.TrimPrefix(f[4], "icmp_seq="))
		if err != nil {
			continue
		}
		if got[src] == nil {
			got[src] = map[int]int{}
		}
		got[src][seq]++
		maxSeq = max(maxSeq, seq)
	}
	return got, maxSeq
}

// TestFastdpKillLeavesOneDevice: a router killed with SIGKILL leaves its
// VXLAN device; the next launch adopts it, so there is exactly one, and
// its forwarding table holds only what the new run wants: no entry of a
// destination that is not a current peer.
func TestFastdpKillLeavesOneDevice(t *testing.T) {
	m := startMeshWith(t, harness.Options{Hosts: 2}, 1, func(*harness.Host) []string { return nil })
	// host2 is killed: it names host1 at start, so it rejoins at once.
	killed, other := m.cl.Host(2), m.cl.Host(1)
	waitDatapath(t, killed, other, "fastdp", fastdpTimeout)
	ctx := ctxFor(t, 2*time.Minute)
	// A stale entry, as a crashed run could leave: a MAC behind an
	// address that is no peer.
	if out, err := killed.Exec(ctx, "bridge", "fdb", "append", "02:00:00:de:ad:01", "dev", "weave-vxlan", "dst", "192.0.2.99", "self", "permanent"); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	if err := killed.Kill(); err != nil {
		t.Fatal(err)
	}
	if out, err := killed.Exec(ctx, "ip", "-o", "link", "show", "dev", "weave-vxlan"); err != nil {
		t.Fatalf("the killed router's device is gone already: %v %s", err, out)
	}
	if err := killed.Restart(); err != nil {
		t.Fatal(err)
	}
	waitDatapath(t, killed, other, "fastdp", fastdpTimeout)
	out, err := killed.Exec(ctx, "ip", "-o", "-d", "link", "show", "type", "vxlan")
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(strings.TrimSpace(out), "\n") + 1; strings.TrimSpace(out) == "" || n != 1 {
		t.Errorf("%d VXLAN devices after the restart, want 1:\n%s", n, out)
	}
	fdb, err := killed.Exec(ctx, "bridge", "fdb", "show", "dev", "weave-vxlan")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(fdb, "\n") {
		if strings.Contains(line, " dst ") && !strings.Contains(line, "dst "+other.IP.String()+" ") {
			t.Errorf("stale forwarding entry after the restart: %s", line)
		}
	}
	if !strings.Contains(fdb, "00:00:00:00:00:00 dst "+other.IP.String()) {
		t.Errorf("no flood entry for %s after the restart:\n%s", other.Name, fdb)
	}
	src, dst := m.ctrs[1][0], m.ctrs[0][0]
	if err := ping(ctx, src, dst.IP()); err != nil {
		t.Error(err)
	}
	// weave stop removes the device.
	if out, err := killed.Weave("stop"); err != nil {
		t.Fatalf("weave stop: %v %s", err, out)
	}
	if err := killed.WaitExit(ctx); err != nil {
		t.Fatal(err)
	}
	if out, err := killed.Exec(ctx, "ip", "-o", "link", "show", "type", "vxlan"); err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("after weave stop: %v %q; want no VXLAN device", err, out)
	}
}

// TestFastdpRelayedPairOnSleeve: three hosts on fastdp; with the underlay
// between host1 and host2 cut, their pair is relayed through host3 on the
// sleeve while both keep fastdp with host3, and traffic between them
// flows. Healed, the pair returns to fastdp.
func TestFastdpRelayedPairOnSleeve(t *testing.T) {
	m := startMeshWith(t, harness.Options{Hosts: 3}, 1, func(*harness.Host) []string { return []string{"--datapath", "fastdp"} })
	h1, h2, h3 := m.cl.Host(1), m.cl.Host(2), m.cl.Host(3)
	waitDatapath(t, h1, h2, "fastdp", fastdpTimeout)
	if err := m.cl.Cut(h1, h2); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.cl.Heal(h1, h2) })
	err := harness.PollFor(meshTimeout, "host1 -> host2 relayed", func(context.Context) error {
		c, err := h1.ConnectionTo(h2)
		if err != nil {
			return err
		}
		if c.State != "relayed" || c.Datapath != "sleeve" {
			return fmt.Errorf("%s on %s (%s)", c.State, c.Datapath, c.DatapathReason)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	waitDatapath(t, h1, h3, "fastdp", fastdpTimeout)
	waitDatapath(t, h2, h3, "fastdp", fastdpTimeout)
	ctx := ctxFor(t, 2*time.Minute)
	if err := ping(ctx, m.ctrs[0][0], m.ctrs[1][0].IP()); err != nil {
		t.Fatal(err)
	}
	if err := m.cl.Heal(h1, h2); err != nil {
		t.Fatal(err)
	}
	waitDatapath(t, h1, h2, "fastdp", meshTimeout)
	if err := ping(ctx, m.ctrs[0][0], m.ctrs[1][0].IP()); err != nil {
		t.Error(err)
	}
}

// TestFastdpWithPassword: with a mesh password a pair stays on the
// encrypted sleeve, saying why, unless both ends trust each other's
// subnet, when it may use (plain) fastdp.
func TestFastdpWithPassword(t *testing.T) {
	for _, tc := range []struct {
		name    string
		extra   []string
		want    string
		because string
	}{
		{"password only", nil, "sleeve", "--trusted-subnets"},
		{"trusted subnets", []string{"--trusted-subnets=" + harness.DefaultUnderlay.String()}, "fastdp", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := startMeshWith(t, harness.Options{Hosts: 2}, 1, func(*harness.Host) []string {
				return append([]string{"--password=" + meshPassword}, tc.extra...)
			})
			h1, h2 := m.cl.Host(1), m.cl.Host(2)
			c := waitDatapath(t, h1, h2, tc.want, fastdpTimeout)
			if !strings.Contains(c.DatapathReason, tc.because) {
				t.Errorf("on %s because %q; want %q named", c.Datapath, c.DatapathReason, tc.because)
			}
			if err := ping(ctxFor(t, time.Minute), m.ctrs[0][0], m.ctrs[1][0].IP()); err != nil {
				t.Error(err)
			}
		})
	}
}
