package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"weavemesh.dev/weave/api"
	"weavemesh.dev/weave/dns"
	"weavemesh.dev/weave/test/harness"
)

// dnsSpread is how fast a name change on one host must be seen on another.
const dnsSpread = 2 * time.Second

// restartCatchUp is how soon after a restarted router is ready it must
// answer the names other hosts registered.
const restartCatchUp = 3 * time.Second

// upstreamIP is the test upstream server's address on the underlay.
var upstreamIP = netip.MustParseAddr("192.168.77.200")

// testUpstream is a DNS server standing in for the hosts' resolver, in a
// namespace of its own on the underlay. It runs in this process on
// sockets opened inside that namespace. www.example.test has one address;
// big.example.test forty, and its UDP answers are always cut to 512 bytes
// with TC set, so getting them whole takes TCP.
type testUpstream struct {
	tcpQueries atomic.Int64
}

func startTestUpstream(t *testing.T, cl *harness.Cluster) *testUpstream {
	t.Helper()
	ctx := ctxFor(t, 30*time.Second)
	// A namespace the cluster owns (and removes), wired to the underlay.
	ns, err := cl.Host(1).AddContainer("ups")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Underlay.Exec(ctx, "ip", "link", "add", "upsv", "type", "veth", "peer", "name", "eth0", "netns", ns.NS.Name); err != nil {
		t.Fatal(err)
	}
	for _, argv := range [][]string{{"ip", "link", "set", "upsv", "master", "br0"}, {"ip", "link", "set", "upsv", "up"}} {
		if _, err := cl.Underlay.Exec(ctx, argv...); err != nil {
			t.Fatal(err)
		}
	}
	for _, argv := range [][]string{{"ip", "addr", "add", upstreamIP.String() + "/24", "dev", "eth0"}, {"ip", "link", "set", "eth0", "up"}} {
		if _, err := ns.Exec(ctx, argv...); err != nil {
			t.Fatal(err)
		}
	}
	pc, ln, err := dns.ListenNetns(ns.Path(), netip.AddrPortFrom(upstreamIP, 53))
	if err != nil {
		t.Fatal(err)
	}
	u := &testUpstream{}
	handler := func(tcp bool) mdns.HandlerFunc {
		return func(w mdns.ResponseWriter, r *mdns.Msg) {
			if tcp {
				u.tcpQueries.Add(1)
			}
			m := new(mdns.Msg)
			m.SetReply(r)
			m.RecursionAvailable = true
			switch strings.ToLower(r.Question[0].Name) {
			case "www.example.test.":
				rr, _ := mdns.NewRR("www.example.test. 60 IN A 198.51.100.7")
				m.Answer = append(m.Answer, rr)
			case "big.example.test.":
				for i := 1; i <= 40; i++ {
					m.Answer = append(m.Answer, &mdns.A{
						Hdr: mdns.RR_Header{Name: r.Question[0].Name, Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: 60},
						A:   net.IPv4(198, 51, 100, byte(i))})
				}
			default:
				m.Rcode = mdns.RcodeNameError
			}
			if !tcp {
				m.Truncate(mdns.MinMsgSize)
			}
			_ = w.WriteMsg(m)
		}
	}
	for _, s := range []*mdns.Server{{PacketConn: pc, Handler: handler(false)}, {Listener: ln, Handler: handler(true)}} {
		started := make(chan struct{})
		s.NotifyStartedFunc = func() { close(started) }
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = s.ActivateAndServe()
		}()
		<-started
		t.Cleanup(func() {
			_ = s.Shutdown()
			<-done
		})
	}
	return u
}

// setHostResolvConf gives a host namespace its own resolv.conf, which
// ip netns exec (how the harness runs the router) mounts over
// /etc/resolv.conf.
func setHostResolvConf(t *testing.T, h *harness.Host, server netip.Addr) {
	t.Helper()
	dir := filepath.Join(dns.DefaultEtcNetns, h.NS.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.WriteFile(filepath.Join(dir, "resolv.conf"), []byte("nameserver "+server.String()+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// digResult is what dig printed, parsed.
type digResult struct {
	status    string   // NOERROR, NXDOMAIN, ...
	flags     []string // qr aa rd ra tc ...
	answers   []string // rdata of the answer section, in order
	authority int
	out       string
}

var (
	digStatusRE = regexp.MustCompile(`status: ([A-Z]+)`)
	digFlagsRE  = regexp.MustCompile(`flags: ([a-z ]+);`)
	digAuthRE   = regexp.MustCompile(`AUTHORITY: (\d+)`)
)

func (d digResult) hasFlag(f string) bool { return slices.Contains(d.flags, f) }

// dig runs dig in a container (which uses the container's resolv.conf,
// so our server, unless args say @server).
func dig(ctx context.Context, c *harness.Container, args ...string) (digResult, error) {
	argv := append([]string{"dig", "+time=1", "+tries=2"}, args...)
	out, err := c.Output(ctx, argv...)
	r := digResult{out: out}
	if err != nil {
		return r, err
	}
	m := digStatusRE.FindStringSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("dig %s: no status in %q", strings.Join(args, " "), out)
	}
	r.status = m[1]
	if m := digFlagsRE.FindStringSubmatch(out); m != nil {
		r.flags = strings.Fields(m[1])
	}
	if m := digAuthRE.FindStringSubmatch(out); m != nil {
		r.authority, _ = strconv.Atoi(m[1])
	}
	inAnswer := false
	for _, l := range strings.Split(out, "\n") {
		switch {
		case strings.HasPrefix(l, ";; ANSWER SECTION:"):
			inAnswer = true
		case inAnswer && (l == "" || strings.HasPrefix(l, ";")):
			inAnswer = false
		case inAnswer:
			f := strings.Fields(l)
			r.answers = append(r.answers, f[len(f)-1])
		}
	}
	return r, nil
}

// waitDig polls dig until ok accepts its result, and returns how long it
// took.
func waitDig(t *testing.T, timeout time.Duration, c *harness.Container, ok func(digResult) error, args ...string) time.Duration {
	t.Helper()
	start := time.Now()
	err := harness.PollFor(timeout, "dig "+strings.Join(args, " ")+" in "+c.Name, func(ctx context.Context) error {
		r, err := dig(ctx, c, args...)
		if err != nil {
			return err
		}
		return ok(r)
	})
	if err != nil {
		t.Fatal(err)
	}
	return time.Since(start)
}

func wantAnswers(want ...string) func(digResult) error {
	return func(r digResult) error {
		got := slices.Clone(r.answers)
		slices.Sort(got)
		w := slices.Clone(want)
		slices.Sort(w)
		if r.status != "NOERROR" || !slices.Equal(got, w) {
			return fmt.Errorf("status %s answers %v, want NOERROR %v", r.status, r.answers, want)
		}
		return nil
	}
}

func wantStatus(status string) func(digResult) error {
	return func(r digResult) error {
		if r.status != status {
			return fmt.Errorf("status %s answers %v, want %s", r.status, r.answers, status)
		}
		return nil
	}
}

// TestDNS: weaveDNS across three hosts. Names registered on one host
// resolve on the others within two seconds and go as fast; answers are
// right for every kind of query; other names go to the upstream server,
// over TCP when its UDP answer is truncated; the names of a killed peer
// vanish after the grace period and come back with it; a restarted router
// answers the other hosts' names as soon as it is ready.
func TestDNS(t *testing.T) {
	cl := newCluster(t, harness.Options{Hosts: 3})
	h1, h2, h3 := cl.Host(1), cl.Host(2), cl.Host(3)
	ups := startTestUpstream(t, cl)
	// host1 finds the upstream in its resolv.conf, the others are told.
	setHostResolvConf(t, h1, upstreamIP)
	for _, h := range cl.Hosts {
		args := routerArgs(cl, h)
		if h != h1 {
			args = append([]string{"--dns-upstream", upstreamIP.String()}, args...)
		}
		if err := h.StartRouter(args...); err != nil {
			t.Fatalf("start router on %s: %v", h.Name, err)
		}
	}
	waitMesh(t, cl)
	q, err := h3.AddContainer("q3")
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Attach("10.32.3.1/12"); err != nil {
		t.Fatal(err)
	}
	web, err := h1.AddContainer("web1")
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxFor(t, 3*time.Minute)

	t.Run("attach resolves on another host", func(t *testing.T) {
		start := time.Now()
		if err := web.AttachArgs("--name", "web", "10.32.1.1/12"); err != nil {
			t.Fatal(err)
		}
		waitDig(t, 30*time.Second, q, wantAnswers("10.32.1.1"), "web.weave.local")
		if d := time.Since(start); d > dnsSpread {
			t.Errorf("web.weave.local resolved on host3 %s after weave attach on host1; want within %s", d.Round(time.Millisecond), dnsSpread)
		} else {
			t.Logf("web.weave.local resolved on host3 %s after weave attach on host1", d.Round(time.Millisecond))
		}
	})

	t.Run("resolv.conf", func(t *testing.T) {
		b, err := os.ReadFile(filepath.Join(dns.DefaultEtcNetns, q.NS.Name, "resolv.conf"))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), "nameserver 127.0.0.153\nsearch weave.local\n") {
			t.Errorf("resolv.conf of %s:\n%s", q.Name, b)
		}
		// The search domain completes short names for ordinary tools, and
		// the name leads over the overlay.
		out, err := q.Output(ctx, "getent", "hosts", "web")
		if err != nil || !strings.HasPrefix(out, "10.32.1.1 ") {
			t.Errorf("getent hosts web: %q %v", out, err)
		}
		if err := ping(ctx, q, "web.weave.local"); err != nil {
			t.Error(err)
		}
	})

	t.Run("answers", func(t *testing.T) {
		r, err := dig(ctx, q, "WeB.WEAVE.Local")
		if err != nil || !slices.Equal(r.answers, []string{"10.32.1.1"}) || !r.hasFlag("aa") {
			t.Errorf("mixed case: %+v %v", r, err)
		}
		r, err = dig(ctx, q, "AAAA", "web.weave.local")
		if err != nil || r.status != "NOERROR" || len(r.answers) != 0 || r.authority != 1 {
			t.Errorf("AAAA of a name with only IPv4: %v\n%s", err, r.out)
		}
		r, err = dig(ctx, q, "nosuch.weave.local")
		if err != nil || r.status != "NXDOMAIN" || r.authority != 1 || !strings.Contains(r.out, "SOA") {
			t.Errorf("unknown name: %v\n%s", err, r.out)
		}
		r, err = dig(ctx, q, "-x", "10.32.1.1")
		if err != nil || !slices.Equal(r.answers, []string{"web.weave.local."}) {
			t.Errorf("PTR: %v\n%s", err, r.out)
		}
		r, err = dig(ctx, q, "@127.0.0.153", "+tcp", "web.weave.local")
		if err != nil || !slices.Equal(r.answers, []string{"10.32.1.1"}) {
			t.Errorf("over TCP: %v\n%s", err, r.out)
		}
	})

	t.Run("multiple addresses", func(t *testing.T) {
		if out, err := h2.Weave("dns-add", "10.32.9.1", "10.32.9.2", "10.32.9.3", "multi"); err != nil {
			t.Fatalf("dns-add: %v %s", err, out)
		}
		waitDig(t, dnsSpread, q, wantAnswers("10.32.9.1", "10.32.9.2", "10.32.9.3"), "multi.weave.local")
		orders := map[string]bool{}
		for i := 0; i < 12 && len(orders) < 2; i++ {
			r, err := dig(ctx, q, "multi.weave.local")
			if err != nil {
				t.Fatal(err)
			}
			orders[strings.Join(r.answers, ",")] = true
		}
		if len(orders) < 2 {
			t.Errorf("answers always in the same order: %v", orders)
		}
		// dns-add again and dns-remove of what is not there change nothing.
		for _, args := range [][]string{{"dns-add", "10.32.9.1", "multi"}, {"dns-remove", "10.32.9.99", "multi"}} {
			if out, err := h2.Weave(args...); err != nil {
				t.Fatalf("%v: %v %s", args, err, out)
			}
		}
	})

	t.Run("status and lookup", func(t *testing.T) {
		st1, err := h1.Status()
		if err != nil {
			t.Fatal(err)
		}
		var st api.DNSStatus
		if err := h3.WeaveJSON(ctx, &st, "status", "dns", "--json"); err != nil {
			t.Fatal(err)
		}
		found := false
		for _, e := range st.Entries {
			if e.Name == "web.weave.local." && e.Address == "10.32.1.1" && e.Peer == st1.Name && e.Nickname == "host1" && !e.Hidden {
				found = true
			}
		}
		if !found || st.Nameserver != "127.0.0.153" || st.Counters.Queries == 0 {
			t.Errorf("host3 DNS status: %+v", st)
		}
		if out, err := h2.Weave("dns-lookup", "web"); err != nil || strings.TrimSpace(out) != "10.32.1.1" {
			t.Errorf("dns-lookup web: %q %v", out, err)
		}
		if out, err := h1.Weave("dns-args"); err != nil || strings.TrimSpace(out) != "--dns=127.0.0.153 --dns-search=weave.local" {
			t.Errorf("dns-args: %q %v", out, err)
		}
		if out, err := h1.Weave("status", "dns"); err != nil || !strings.Contains(out, "web.weave.local.") {
			t.Errorf("status dns: %q %v", out, err)
		}
	})

	t.Run("forwarded upstream", func(t *testing.T) {
		// From host3 (--dns-upstream) and host1 (its resolv.conf).
		for _, c := range []*harness.Container{q, web} {
			r, err := dig(ctx, c, "www.example.test")
			if err != nil || !slices.Equal(r.answers, []string{"198.51.100.7"}) {
				t.Errorf("from %s: %v\n%s", c.Name, err, r.out)
			}
		}
		r, err := dig(ctx, q, "nosuch.example.test")
		if err != nil || r.status != "NXDOMAIN" {
			t.Errorf("unknown outside name: %v\n%s", err, r.out)
		}
	})

	t.Run("truncation", func(t *testing.T) {
		// Upstream: its UDP answer is truncated, the router fetches it
		// over TCP, and dig (EDNS0, 1232 bytes) gets all forty at once.
		before := ups.tcpQueries.Load()
		r, err := dig(ctx, q, "+ignore", "big.example.test")
		if err != nil || len(r.answers) != 40 || r.hasFlag("tc") {
			t.Errorf("big upstream answer: %d answers, flags %v, %v", len(r.answers), r.flags, err)
		}
		if ups.tcpQueries.Load() == before {
			t.Error("the router did not retry the truncated upstream answer over TCP")
		}
		// Local: forty addresses do not fit 512 bytes of plain UDP.
		var ips []string
		for i := 1; i <= 40; i++ {
			ips = append(ips, fmt.Sprintf("10.32.8.%d", i))
		}
		if out, err := h2.Weave(append(append([]string{"dns-add"}, ips...), "big")...); err != nil {
			t.Fatalf("dns-add: %v %s", err, out)
		}
		// Forty records are forty deltas: they take a few gossip rounds.
		waitDig(t, 30*time.Second, q, func(r digResult) error {
			if len(r.answers) != 40 {
				return fmt.Errorf("%d answers", len(r.answers))
			}
			return nil
		}, "+tcp", "big.weave.local")
		r, err = dig(ctx, q, "+noedns", "+ignore", "big.weave.local")
		if err != nil || !r.hasFlag("tc") || len(r.answers) >= 40 {
			t.Errorf("plain UDP: flags %v, %d answers, %v", r.flags, len(r.answers), err)
		}
		r, err = dig(ctx, q, "+noedns", "big.weave.local") // dig retries over TCP itself
		if err != nil || len(r.answers) != 40 {
			t.Errorf("UDP then TCP: %d answers, %v", len(r.answers), err)
		}
	})

	t.Run("detach removes on another host", func(t *testing.T) {
		start := time.Now()
		if err := web.Detach(); err != nil {
			t.Fatal(err)
		}
		waitDig(t, 30*time.Second, q, wantStatus("NXDOMAIN"), "web.weave.local")
		if d := time.Since(start); d > dnsSpread {
			t.Errorf("web.weave.local still resolved on host3 %s after weave detach on host1; want within %s", d.Round(time.Millisecond), dnsSpread)
		} else {
			t.Logf("web.weave.local gone on host3 %s after weave detach on host1", d.Round(time.Millisecond))
		}
		if _, err := os.Stat(filepath.Join(dns.DefaultEtcNetns, web.NS.Name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the detached namespace's resolv.conf is still there: %v", err)
		}
	})

	t.Run("killed peer", func(t *testing.T) {
		// host2 registered multi and big. Killed, it is declared dead;
		// after the grace period its names vanish everywhere.
		if err := h2.Kill(); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		waitDig(t, time.Minute, q, wantStatus("NXDOMAIN"), "multi.weave.local")
		t.Logf("host2's names vanished on host3 %s after it was killed", time.Since(start).Round(time.Millisecond))
		err := harness.PollFor(30*time.Second, "host1 to hide host2's names", func(ctx context.Context) error {
			out, err := h1.WeaveCtx(ctx, "dns-lookup", "multi")
			if err == nil {
				return fmt.Errorf("still resolves: %s", out)
			}
			return nil
		})
		if err != nil {
			t.Error(err)
		}
		// It comes back (its names were kept in its data dir): so do they.
		if err := h2.Restart(); err != nil {
			t.Fatal(err)
		}
		waitDig(t, time.Minute, q, wantAnswers("10.32.9.1", "10.32.9.2", "10.32.9.3"), "multi.weave.local")
	})

	t.Run("restarted router catches up at once", func(t *testing.T) {
		// A name on host1 that host3's router must learn from the mesh
		// each time it starts.
		if out, err := h1.Weave("dns-add", "10.32.7.1", "far"); err != nil {
			t.Fatalf("dns-add: %v %s", err, out)
		}
		waitDig(t, dnsSpread, q, wantAnswers("10.32.7.1"), "far.weave.local")
		// Stopped cleanly, the peers list it as left; killed, as dead
		// once they notice. Either way they still do when it comes back.
		for _, tc := range []struct {
			how  string
			stop func() error
		}{{"stopped", h3.Stop}, {"killed", h3.Kill}} {
			if err := tc.stop(); err != nil {
				t.Fatal(err)
			}
			if err := harness.PollFor(time.Minute, "host1 to see host3 gone", func(ctx context.Context) error {
				if alive, err := seesAlive(h1, "host3"); err != nil || alive {
					return fmt.Errorf("alive %v, %v", alive, err)
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if err := h3.Restart(); err != nil {
				t.Fatal(err)
			}
			d := waitDig(t, time.Minute, q, wantAnswers("10.32.7.1"), "far.weave.local")
			if d > restartCatchUp {
				t.Errorf("host3's router, %s and started again, answered host1's name %s after it was ready; want within %s",
					tc.how, d.Round(time.Millisecond), restartCatchUp)
			} else {
				t.Logf("host3's router, %s and started again, answered host1's name %s after it was ready", tc.how, d.Round(time.Millisecond))
			}
			if out, err := h3.Weave("dns-lookup", "multi"); err != nil || !strings.Contains(out, "10.32.9.1") {
				t.Errorf("host3's router, %s and started again: dns-lookup of host2's name: %q %v", tc.how, out, err)
			}
		}
	})
}
