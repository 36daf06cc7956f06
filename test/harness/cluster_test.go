package harness

import (
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func nsExists(name string) bool {
	_, err := os.Stat(filepath.Join(netnsDir, name))
	return err == nil
}

func TestSweep(t *testing.T) {
	RequireRoot(t)
	dead := deadPID(t)
	deadNS := fmt.Sprintf("wv%dx1-host1", dead)
	liveNS := NewPrefix() + "host1"
	otherNS := fmt.Sprintf("wvnot%d-ours", os.Getpid())
	deadDir := filepath.Join(os.TempDir(), fmt.Sprintf("wv%dx1-run", dead))
	for _, n := range []string{deadNS, liveNS, otherNS} {
		if out, err := exec.Command("ip", "netns", "add", n).CombinedOutput(); err != nil {
			t.Fatalf("ip netns add %s: %v %s", n, err, out)
		}
		t.Cleanup(func() { _, _ = removeNamespace(n, 0) })
	}
	if err := os.MkdirAll(deadDir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(deadDir) })
	// A process left running in the dead run's namespace.
	ns := &NS{Name: deadNS}
	p, err := ns.Start(filepath.Join(t.TempDir(), "sleep.log"), "sleep", "300")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Kill() })
	if err := PollFor(10*time.Second, "sleep to enter the namespace", func(context.Context) error {
		pids, err := ns.PIDs()
		if err != nil || len(pids) == 0 {
			return fmt.Errorf("pids %v, %v", pids, err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	rep, err := Sweep(nil)
	if err != nil {
		t.Fatalf("Sweep: %v", err)
	}
	if nsExists(deadNS) {
		t.Errorf("dead run's namespace %s was not removed (report %+v)", deadNS, rep)
	}
	if !nsExists(liveNS) || !nsExists(otherNS) {
		t.Errorf("Sweep removed a namespace it must leave alone (report %+v)", rep)
	}
	if _, err := os.Stat(deadDir); !os.IsNotExist(err) {
		t.Errorf("dead run's directory %s still exists", deadDir)
	}
	select {
	case <-p.Done():
	case <-time.After(10 * time.Second):
		t.Errorf("process %d in the swept namespace still runs", p.PID)
	}
	for _, n := range rep.Namespaces {
		if n != deadNS && !strings.HasPrefix(n, "wv") {
			t.Errorf("Sweep reported removing %s", n)
		}
	}
}

func TestClusterUnderlay(t *testing.T) {
	cl := NewT(t, Options{Hosts: 3, HostMTU: map[int]int{3: 1300}})
	ctx := ctxT(t, 60*time.Second)
	for _, a := range cl.Hosts {
		for _, b := range cl.Hosts {
			if a == b {
				continue
			}
			if _, err := a.Ping(ctx, b.IP.String()); err != nil {
				t.Errorf("%s -> %s: %v", a.Name, b.Name, err)
			}
		}
	}
	if m, err := cl.Host(3).LinkMTU(ctx, "eth0"); err != nil || m != 1300 {
		t.Errorf("host3 eth0 MTU = %d, %v; want 1300", m, err)
	}
	if m, err := cl.Host(1).LinkMTU(ctx, "eth0"); err != nil || m != 1500 {
		t.Errorf("host1 eth0 MTU = %d, %v; want 1500", m, err)
	}
	// The narrow host swallows frames wider than its MTU, like a path with
	// a small link in it.
	if r, err := cl.Host(1).Ping(ctx, cl.Host(3).IP.String(), "-M", "do", "-s", "1400", "-W", "1"); err == nil {
		t.Errorf("1428-byte DF ping to the 1300-MTU host passed: %s", r.Output)
	}
	if _, err := cl.Host(1).Ping(ctx, cl.Host(3).IP.String(), "-M", "do", "-s", "1200"); err != nil {
		t.Errorf("1228-byte DF ping to the 1300-MTU host: %v", err)
	}
	// Interfaces only inside our namespaces: the root namespace has none.
	out, _ := exec.Command("ip", "-o", "link").Output()
	if strings.Contains(string(out), cl.Prefix) {
		t.Errorf("root namespace has a link named with %s:\n%s", cl.Prefix, out)
	}
	for _, n := range []string{cl.Prefix + "underlay", cl.Prefix + "host1"} {
		if !nsExists(n) {
			t.Errorf("namespace %s missing", n)
		}
	}

	// Close twice, then nothing of the cluster is left.
	if err := cl.Close(); err != nil {
		t.Fatal(err)
	}
	if err := cl.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	entries, _ := os.ReadDir(netnsDir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), cl.Prefix) {
			t.Errorf("namespace %s left after Close", e.Name())
		}
	}
	if _, err := os.Stat(cl.Dir); !os.IsNotExist(err) {
		t.Errorf("dir %s left after Close", cl.Dir)
	}
}

func TestCutHeal(t *testing.T) {
	cl := NewT(t, Options{Hosts: 3})
	ctx := ctxT(t, 60*time.Second)
	h1, h2, h3 := cl.Host(1), cl.Host(2), cl.Host(3)
	if _, err := h1.Ping(ctx, h2.IP.String()); err != nil {
		t.Fatalf("before cut: %v", err)
	}
	if err := cl.Cut(h1, h2); err != nil {
		t.Fatal(err)
	}
	if err := cl.Cut(h1, h2); err != nil {
		t.Fatalf("cutting twice: %v", err)
	}
	for _, p := range [][2]*Host{{h1, h2}, {h2, h1}} {
		if r, err := p[0].Ping(ctx, p[1].IP.String(), "-W", "1"); err == nil {
			t.Errorf("%s -> %s passed through the cut: %s", p[0].Name, p[1].Name, r.Output)
		}
	}
	// TCP fails too, and other paths are untouched.
	tctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	if _, err := Transfer(tctx, h1.NS, h2.NS, h2.IP.String(), 5001, 1000); err == nil {
		t.Error("TCP passed through the cut")
	}
	cancel()
	for _, p := range [][2]*Host{{h1, h3}, {h3, h2}} {
		if _, err := p[0].Ping(ctx, p[1].IP.String()); err != nil {
			t.Errorf("%s -> %s with h1-h2 cut: %v", p[0].Name, p[1].Name, err)
		}
	}
	if err := cl.Heal(h1, h2); err != nil {
		t.Fatal(err)
	}
	if err := cl.Heal(h1, h2); err != nil {
		t.Fatalf("healing twice: %v", err)
	}
	if err := PollFor(10*time.Second, "h1 -> h2 after heal", func(ctx context.Context) error {
		_, err := h1.Ping(ctx, h2.IP.String(), "-W", "1")
		return err
	}); err != nil {
		t.Error(err)
	}
	if _, err := Transfer(ctx, h2.NS, h1.NS, h1.IP.String(), 5002, 1<<20); err != nil {
		t.Errorf("TCP after heal: %v", err)
	}
}

func TestTransferAndCapture(t *testing.T) {
	cl := NewT(t, Options{Hosts: 2})
	ctx := ctxT(t, 60*time.Second)
	h1, h2 := cl.Host(1), cl.Host(2)
	cap, err := h2.Capture(ctx, "eth0", "icmp")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h1.Ping(ctx, h2.IP.String(), "-c", "3", "-i", "0.1", "-p", "c0ffee11"); err != nil {
		t.Fatal(err)
	}
	ps, err := cap.Stop()
	if err != nil {
		t.Fatal(err)
	}
	marker, _ := hex.DecodeString("c0ffee11c0ffee11")
	// 3 requests in, 3 replies out, all carrying the pattern.
	if n := ps.Containing(marker); n != 6 {
		t.Errorf("capture: %d of %d packets carry the ping pattern; want 6", n, ps.Count())
	}
	res, err := Transfer(ctx, h1.NS, h2.NS, h2.IP.String(), 5001, 8<<20)
	if err != nil {
		t.Fatal(err)
	}
	if res.SentSHA256 != res.RecvSHA256 || res.RecvBytes != 8<<20 {
		t.Errorf("transfer: %+v", res)
	}
}

// TestBroadcastCount checks the traffic tool's broadcast, ARP and frame
// counting on the plain underlay, where each frame must arrive exactly once.
func TestBroadcastCount(t *testing.T) {
	cl := NewT(t, Options{Hosts: 3})
	ctx := ctxT(t, 60*time.Second)
	tool, err := BuildTool()
	if err != nil {
		t.Fatal(err)
	}
	const arpTarget = "192.168.77.250"
	var procs []*Proc
	for _, h := range cl.Hosts[1:] {
		p, err := h.Start(filepath.Join(cl.Dir, h.Name+"-count.log"), tool, "count", "-iface", "eth0",
			"-marker", "MARK-1", "-marker", "hex:c0a84dfa", "-until", "SENTINEL", "-timeout", "30s")
		if err != nil {
			t.Fatal(err)
		}
		if err := p.WaitLog(ctx, "ready"); err != nil {
			t.Fatal(err)
		}
		procs = append(procs, p)
	}
	h1 := cl.Host(1)
	for _, argv := range [][]string{
		{tool, "arp", "-iface", "eth0", "-target", arpTarget},
		{tool, "bcast", "-to", "192.168.77.255:9999", "-msg", "MARK-1"},
		{tool, "bcast", "-to", "192.168.77.255:9999", "-msg", "SENTINEL"},
	} {
		if out, err := h1.Exec(ctx, argv...); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
	}
	for i, p := range procs {
		if err := p.Wait(ctx); err != nil {
			t.Fatalf("count on host%d: %v\n%s", i+2, err, p.Log())
		}
		var res struct{ Counts map[string]int }
		if err := p.LastJSON(&res); err != nil {
			t.Fatal(err)
		}
		if res.Counts["MARK-1"] != 1 || res.Counts["hex:c0a84dfa"] != 1 {
			t.Errorf("host%d counted %v; want one UDP and one ARP broadcast", i+2, res.Counts)
		}
	}
}

func buildFake(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "weave")
	if err := BuildTo("./test/harness/internal/fakeweave", bin); err != nil {
		t.Fatal(err)
	}
	return bin
}

// TestRouterLifecycle drives the process handling with a stand-in router
// that follows the CLI contract.
func TestRouterLifecycle(t *testing.T) {
	RequireRoot(t)
	fake := buildFake(t)
	cl := NewT(t, Options{Hosts: 2, WeaveBinary: fake, ReadyTimeout: 10 * time.Second})
	h1, h2 := cl.Host(1), cl.Host(2)

	if err := h1.StartRouter(); err != nil {
		t.Fatal(err)
	}
	st, err := h1.Status()
	if err != nil || !st.Ready || st.Nickname != "host1" {
		t.Fatalf("status %+v, %v", st, err)
	}
	pid := h1.RouterPID()
	if err := h1.StartRouter(); err == nil {
		t.Error("second StartRouter on a running host succeeded")
	}
	if err := h1.Kill(); err != nil {
		t.Fatal(err)
	}
	if h1.RouterRunning() {
		t.Fatal("router runs after Kill")
	}
	if _, err := h1.Weave("status"); err == nil || !strings.Contains(err.Error(), "no router is running") {
		t.Errorf("status after kill: %v", err)
	}
	if err := h1.Restart(); err != nil {
		t.Fatal(err)
	}
	if h1.RouterPID() == pid {
		t.Error("restarted router has the old pid")
	}
	st2, err := h1.Status()
	if err != nil || st2.Name != st.Name {
		t.Errorf("restarted router: %+v, %v; want the same peer name %s from the data dir", st2, err, st.Name)
	}
	if err := h1.Stop(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(h1.RouterLog(), "listening on") {
		t.Errorf("router log lacks the router's output:\n%s", h1.RouterLog())
	}

	// Launch with a non-default API address: the CLI calls follow it.
	name, err := h2.Launch("--http-addr", "127.0.0.1:7784")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^[0-9a-f]{2}(:[0-9a-f]{2}){5}$`).MatchString(name) {
		t.Errorf("launch printed %q; want a peer name", name)
	}
	if _, err := h2.Launch("--http-addr", "127.0.0.1:7784"); err == nil || !strings.Contains(err.Error(), "already running") {
		t.Errorf("second launch: %v", err)
	}
	var st3 struct{ Name string }
	if err := h2.WeaveJSON(ctxT(t, 10*time.Second), &st3, "status", "--json"); err != nil || st3.Name != name {
		t.Errorf("status of launched router: %+v, %v", st3, err)
	}
	daemon := h2.RouterPID()
	if daemon == 0 || processGone(daemon) {
		t.Fatalf("launched router pid %d not found", daemon)
	}
	if err := cl.Close(); err != nil {
		t.Fatal(err)
	}
	if !processGone(daemon) {
		t.Errorf("launched router %d survived Close", daemon)
		_ = syscall.Kill(daemon, syscall.SIGKILL)
	}
}

func TestKeepAndRemovePrefixed(t *testing.T) {
	RequireRoot(t)
	prefix := fmt.Sprintf("wvk%d-", os.Getpid())
	dir := filepath.Join(t.TempDir(), "kept")
	cl, err := New(ctxT(t, 30*time.Second), Options{Hosts: 1, Prefix: prefix, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = RemovePrefixed(prefix, time.Second, dir) })
	p, err := cl.Host(1).Start(filepath.Join(dir, "sleep.log"), "sleep", "300")
	if err != nil {
		t.Fatal(err)
	}
	cl.Keep()
	if err := cl.Close(); err != nil {
		t.Fatal(err)
	}
	if !nsExists(prefix+"host1") || p.Exited() {
		t.Fatal("Keep did not keep the cluster")
	}
	names, err := RemovePrefixed(prefix, 5*time.Second, dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != 2 || nsExists(prefix+"host1") || nsExists(prefix+"underlay") {
		t.Errorf("RemovePrefixed removed %v", names)
	}
	select {
	case <-p.Done():
	case <-time.After(10 * time.Second):
		t.Error("process in the kept cluster survived RemovePrefixed")
	}
}
