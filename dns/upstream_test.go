package dns

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// testUpstream is a DNS server on loopback standing in for the host's
// resolver: www.example.test has one address, big.example.test forty
// (too many for 512 bytes), fail.example.test answers SERVFAIL.
type testUpstream struct {
	addr          netip.AddrPort
	udpQ, tcpQ    atomic.Int64
	udpSrv, tcpSr *mdns.Server
}

func startUpstream(t *testing.T) *testUpstream {
	t.Helper()
	u := &testUpstream{}
	pc, ln := listenPair(t)
	u.addr = pc.LocalAddr().(*net.UDPAddr).AddrPort()
	handler := func(tcp bool) mdns.HandlerFunc {
		return func(w mdns.ResponseWriter, r *mdns.Msg) {
			if tcp {
				u.tcpQ.Add(1)
			} else {
				u.udpQ.Add(1)
			}
			m := new(mdns.Msg)
			m.SetReply(r)
			q := r.Question[0]
			switch q.Name {
			case "www.example.test.":
				rr, _ := mdns.NewRR("www.example.test. 60 IN A 198.51.100.7")
				m.Answer = append(m.Answer, rr)
			case "big.example.test.":
				for i := 1; i <= 40; i++ {
					m.Answer = append(m.Answer, &mdns.A{Hdr: mdns.RR_Header{Name: q.Name, Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: 60},
						A: net.IPv4(198, 51, 100, byte(i))})
				}
			case "fail.example.test.":
				m.Rcode = mdns.RcodeServerFailure
			default:
				m.Rcode = mdns.RcodeNameError
			}
			if !tcp {
				size := mdns.MinMsgSize
				if o := r.IsEdns0(); o != nil {
					size = int(o.UDPSize())
				}
				m.Truncate(size)
			}
			_ = w.WriteMsg(m)
		}
	}
	u.udpSrv = &mdns.Server{PacketConn: pc, Handler: handler(false)}
	u.tcpSr = &mdns.Server{Listener: ln, Handler: handler(true)}
	for _, s := range []*mdns.Server{u.udpSrv, u.tcpSr} {
		started := make(chan struct{})
		s.NotifyStartedFunc = func() { close(started) }
		go func() { _ = s.ActivateAndServe() }()
		<-started
	}
	t.Cleanup(func() {
		_ = u.udpSrv.Shutdown()
		_ = u.tcpSr.Shutdown()
	})
	return u
}

// deadServer is a loopback UDP port and TCP listener that never answer.
func deadServer(t *testing.T) netip.AddrPort {
	t.Helper()
	pc, ln := listenPair(t)
	t.Cleanup(func() { pc.Close(); ln.Close() })
	return pc.LocalAddr().(*net.UDPAddr).AddrPort()
}

// listenPair opens a loopback UDP socket and a TCP listener on the same
// port. The UDP port is free for UDP only: on a busy machine an outgoing
// TCP connection may hold it, so another port is tried.
func listenPair(t *testing.T) (*net.UDPConn, *net.TCPListener) {
	t.Helper()
	for range 20 {
		pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(pc.LocalAddr().(*net.UDPAddr).AddrPort()))
		if err == nil {
			return pc, ln
		}
		pc.Close()
		if !errors.Is(err, syscall.EADDRINUSE) {
			t.Fatal(err)
		}
	}
	t.Fatal("no loopback port free for both UDP and TCP in 20 tries")
	return nil, nil
}

func newFwd(t *testing.T, servers ...netip.AddrPort) *Forwarder {
	t.Helper()
	f, err := NewForwarder(ForwarderOptions{Servers: servers, Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestForwardThroughHandler(t *testing.T) {
	u := startUpstream(t)
	m := new(Metrics)
	fwd, err := NewForwarder(ForwarderOptions{Servers: []netip.AddrPort{u.addr}, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	h, err := NewHandler(HandlerOptions{Store: testStore(t), Forwarder: fwd, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	w := &recorder{}
	q := query("www.example.test.", mdns.TypeA)
	q.Id = 999
	h.ServeDNS(w, q)
	a := w.answer(t)
	if a.Id != 999 || a.Rcode != mdns.RcodeSuccess || !reflect.DeepEqual(answersOf(a), []string{"198.51.100.7"}) {
		t.Errorf("forwarded answer: %v", a)
	}
	// Unknown reverse names go upstream too.
	w = &recorder{}
	h.ServeDNS(w, query("9.9.9.10.in-addr.arpa.", mdns.TypePTR))
	if a := w.answer(t); a.Rcode != mdns.RcodeNameError {
		t.Errorf("reverse of an unknown address: %s", mdns.RcodeToString[a.Rcode])
	}
	// Names in the domain never go upstream.
	before := u.udpQ.Load()
	h.ServeDNS(&recorder{}, query("nosuch.weave.local.", mdns.TypeA))
	if u.udpQ.Load() != before {
		t.Error("a name in the domain was forwarded")
	}
	if s := m.Snapshot(); s.Forwarded != 2 || s.UpstreamFailures != 0 {
		t.Errorf("metrics %+v", s)
	}
}

func TestForwardTruncatedRetriesTCP(t *testing.T) {
	u := startUpstream(t)
	fwd := newFwd(t, u.addr)
	h, err := NewHandler(HandlerOptions{Store: testStore(t), Forwarder: fwd})
	if err != nil {
		t.Fatal(err)
	}
	// The router's UDP query (as the client sent it, without EDNS0) comes
	// back truncated; the router fetches it again over TCP.
	resp, err := fwd.Exchange(context.Background(), query("big.example.test.", mdns.TypeA), false)
	if err != nil || len(resp.Answer) != 40 || resp.Truncated {
		t.Fatalf("exchange: %v, %v", resp, err)
	}
	if u.tcpQ.Load() != 1 {
		t.Errorf("upstream saw %d TCP queries, want 1", u.tcpQ.Load())
	}
	// A plain 512-byte client then gets a truncated answer from us...
	w := &recorder{}
	h.ServeDNS(w, query("big.example.test.", mdns.TypeA))
	if a := w.answer(t); !a.Truncated || len(w.msgs[0]) > 512 {
		t.Errorf("TC %v in %d bytes", a.Truncated, len(w.msgs[0]))
	}
	// ...a client with a large EDNS0 buffer all forty...
	q := query("big.example.test.", mdns.TypeA)
	q.SetEdns0(4096, false)
	w = &recorder{}
	h.ServeDNS(w, q)
	if a := w.answer(t); len(a.Answer) != 40 || a.Truncated {
		t.Errorf("%d answers, TC %v; want 40 without TC", len(a.Answer), a.Truncated)
	}
	// ...and a TCP client too, whose query goes upstream over TCP at once.
	udpBefore := u.udpQ.Load()
	w = &recorder{tcp: true}
	h.ServeDNS(w, query("big.example.test.", mdns.TypeA))
	if a := w.answer(t); len(a.Answer) != 40 || a.Truncated {
		t.Errorf("over TCP: %d answers, TC %v", len(a.Answer), a.Truncated)
	}
	if u.udpQ.Load() != udpBefore {
		t.Error("a TCP client's query went upstream over UDP first")
	}
}

func TestForwardFailover(t *testing.T) {
	u := startUpstream(t)
	dead := deadServer(t)
	m := new(Metrics)
	fwd, err := NewForwarder(ForwarderOptions{Servers: []netip.AddrPort{dead, u.addr}, Timeout: 200 * time.Millisecond, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := fwd.Exchange(context.Background(), query("www.example.test.", mdns.TypeA), false)
	if err != nil || len(resp.Answer) != 1 {
		t.Fatalf("failover: %v %v", resp, err)
	}
	if m.Snapshot().UpstreamFailures != 1 {
		t.Errorf("failures %d, want 1", m.Snapshot().UpstreamFailures)
	}
	// The server that answered is tried first from now on.
	start := time.Now()
	if _, err := fwd.Exchange(context.Background(), query("www.example.test.", mdns.TypeA), false); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 150*time.Millisecond || m.Snapshot().UpstreamFailures != 1 {
		t.Errorf("second query took %s with %d failures; want the good server first", d, m.Snapshot().UpstreamFailures)
	}
	// SERVFAIL moves on to the next server, and is the answer if every
	// server fails.
	resp, err = fwd.Exchange(context.Background(), query("fail.example.test.", mdns.TypeA), false)
	if err != nil || resp.Rcode != mdns.RcodeServerFailure {
		t.Errorf("all failing: %v %v", resp, err)
	}
	// Nothing answers at all: an error.
	only := newFwd(t, dead)
	if _, err := only.Exchange(context.Background(), query("www.example.test.", mdns.TypeA), false); err == nil {
		t.Error("no error from a dead upstream")
	}
}

func TestForwardLoopDetection(t *testing.T) {
	u := startUpstream(t)
	fwd, err := NewForwarder(ForwarderOptions{Servers: []netip.AddrPort{u.addr},
		IsSelf: func(a netip.AddrPort) bool { return a == u.addr }})
	if err != nil {
		t.Fatal(err)
	}
	if s := fwd.Servers(); len(s) != 0 {
		t.Errorf("servers %v; want ours skipped", s)
	}
	if _, err := fwd.Exchange(context.Background(), query("www.example.test.", mdns.TypeA), false); !errors.Is(err, ErrNoUpstream) {
		t.Errorf("err %v, want ErrNoUpstream", err)
	}
	if u.udpQ.Load() != 0 {
		t.Error("query sent to ourselves")
	}
}

func TestForwarderResolvConf(t *testing.T) {
	path := filepath.Join(t.TempDir(), "resolv.conf")
	write := func(s string) {
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("# comment\nsearch example.com\nnameserver 192.0.2.1\nnameserver fe80::1%eth0\nnameserver bogus\noptions ndots:2\n")
	fwd, err := NewForwarder(ForwarderOptions{ResolvConf: path})
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.AddrPort{netip.MustParseAddrPort("192.0.2.1:53"), netip.MustParseAddrPort("[fe80::1%eth0]:53")}
	if got := fwd.Servers(); !reflect.DeepEqual(got, want) {
		t.Errorf("servers %v, want %v", got, want)
	}
	write("nameserver 192.0.2.9\n")
	// The modification time may not move within the clock's resolution;
	// the size does.
	fwd.Reload()
	if got := fwd.Servers(); !reflect.DeepEqual(got, []netip.AddrPort{netip.MustParseAddrPort("192.0.2.9:53")}) {
		t.Errorf("after reload: %v", got)
	}
	missing, err := NewForwarder(ForwarderOptions{ResolvConf: filepath.Join(t.TempDir(), "none")})
	if err != nil || len(missing.Servers()) != 0 {
		t.Errorf("missing resolv.conf: %v %v", missing.Servers(), err)
	}
}

func TestParseUpstream(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"192.0.2.1", "192.0.2.1:53"},
		{"192.0.2.1:5353", "192.0.2.1:5353"},
		{"fd00::1", "[fd00::1]:53"},
		{"[fd00::1]:54", "[fd00::1]:54"},
		{"[fd00::1]", "[fd00::1]:53"},
		{"dns.example", ""},
		{"192.0.2.1:0", ""},
		{"", ""},
	}
	for _, tt := range tests {
		got, err := ParseUpstream(tt.in)
		if tt.want == "" {
			if err == nil {
				t.Errorf("ParseUpstream(%q) = %v; want an error", tt.in, got)
			}
			continue
		}
		if err != nil || got.String() != tt.want {
			t.Errorf("ParseUpstream(%q) = %v, %v; want %s", tt.in, got, err, tt.want)
		}
	}
}

// TestUpstreamLatency: each upstream answer is measured on the injected
// clock into its bucket; a server that never answers is a failure, not a
// latency.
func TestUpstreamLatency(t *testing.T) {
	u := startUpstream(t)
	dead := deadServer(t)
	m := new(Metrics)
	var clock atomic.Int64 // each reading is 30ms after the one before
	now := func() time.Time { return time.Unix(0, clock.Add(int64(30*time.Millisecond))) }
	fwd, err := NewForwarder(ForwarderOptions{Servers: []netip.AddrPort{dead, u.addr}, Timeout: 200 * time.Millisecond, Metrics: m, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"www.example.test.", "fail.example.test."} {
		if _, err := fwd.Exchange(context.Background(), query(name, mdns.TypeA), false); err != nil {
			t.Fatal(err)
		}
	}
	s := m.Snapshot()
	h := s.UpstreamLatency
	if len(h.Counts) != len(UpstreamLatencyBounds)+1 {
		t.Fatalf("%d buckets, want %d", len(h.Counts), len(UpstreamLatencyBounds)+1)
	}
	// www: dead fails (no latency), the good server answers; fail: the
	// good server answers SERVFAIL, dead fails again. Two answers.
	if h.Count() != 2 || h.Sum != 60*time.Millisecond {
		t.Fatalf("latency count %d sum %s, want 2 and 60ms: %+v", h.Count(), h.Sum, h)
	}
	for i, b := range UpstreamLatencyBounds {
		want := uint64(0)
		if b == 50*time.Millisecond { // 30ms lies in (25ms, 50ms]
			want = 2
		}
		if h.Counts[i] != want {
			t.Errorf("bucket <= %s: %d, want %d", b, h.Counts[i], want)
		}
	}
	if s.UpstreamFailures < 2 {
		t.Errorf("failures %d, want at least 2", s.UpstreamFailures)
	}
}

func TestLatencyBuckets(t *testing.T) {
	var m Metrics
	for _, d := range []time.Duration{-time.Second, 0, time.Millisecond, time.Millisecond + 1, 5 * time.Second, time.Minute} {
		m.upstreamAnswered(d)
	}
	c := m.Snapshot().UpstreamLatency.Counts
	if c[0] != 3 || c[1] != 1 || c[len(UpstreamLatencyBounds)-1] != 1 || c[len(UpstreamLatencyBounds)] != 1 {
		t.Errorf("buckets %v", c)
	}
}

func TestUpstreamLatencyAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts mean nothing under the race detector")
	}
	var m Metrics
	if n := testing.AllocsPerRun(100, func() { m.upstreamAnswered(time.Millisecond) }); n != 0 {
		t.Errorf("recording a latency allocates %v times", n)
	}
}
