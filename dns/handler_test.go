package dns

import (
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// recorder is an mdns.ResponseWriter that keeps what was written.
type recorder struct {
	tcp  bool
	msgs [][]byte
}

var (
	udpClient = &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
	tcpClient = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
)

func (r *recorder) LocalAddr() net.Addr { return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 153), Port: 53} }
func (r *recorder) RemoteAddr() net.Addr {
	if r.tcp {
		return tcpClient
	}
	return udpClient
}
func (r *recorder) WriteMsg(m *mdns.Msg) error {
	b, err := m.Pack()
	if err != nil {
		return err
	}
	_, err = r.Write(b)
	return err
}
func (r *recorder) Write(b []byte) (int, error) {
	r.msgs = append(r.msgs, append([]byte(nil), b...))
	return len(b), nil
}
func (r *recorder) Close() error        { return nil }
func (r *recorder) TsigStatus() error   { return nil }
func (r *recorder) TsigTimersOnly(bool) {}
func (r *recorder) Hijack()             {}

// answer unpacks the one message written.
func (r *recorder) answer(t *testing.T) *mdns.Msg {
	t.Helper()
	if len(r.msgs) != 1 {
		t.Fatalf("%d messages written, want 1", len(r.msgs))
	}
	var m mdns.Msg
	if err := m.Unpack(r.msgs[0]); err != nil {
		t.Fatalf("answer does not parse: %v", err)
	}
	return &m
}

func testStore(t *testing.T) *Store {
	t.Helper()
	s, err := NewStore(StoreOptions{Self: pA, Peers: func() []PeerStatus { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	for name, as := range map[string][]string{
		"web.weave.local.":     {"10.32.1.5"},
		"multi.weave.local.":   {"10.32.2.1", "10.32.2.2", "10.32.2.3"},
		"dual.weave.local.":    {"10.32.3.1", "fd00::3:1"},
		"v6only.weave.local.":  {"fd00::4:1"},
		"db.prod.weave.local.": {"10.32.5.1"},
	} {
		if _, err := s.Add(name, addrs(as...)); err != nil {
			t.Fatal(err)
		}
	}
	var many []string
	for i := 1; i <= 60; i++ {
		many = append(many, netip.AddrFrom4([4]byte{10, 33, 0, byte(i)}).String())
	}
	if _, err := s.Add("big.weave.local.", addrs(many...)); err != nil {
		t.Fatal(err)
	}
	return s
}

func testHandler(t *testing.T, fwd *Forwarder) *Handler {
	t.Helper()
	h, err := NewHandler(HandlerOptions{Store: testStore(t), Forwarder: fwd, TTL: 7 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func query(name string, qtype uint16) *mdns.Msg {
	m := new(mdns.Msg)
	m.SetQuestion(name, qtype)
	return m
}

func answersOf(m *mdns.Msg) []string {
	var out []string
	for _, rr := range m.Answer {
		switch v := rr.(type) {
		case *mdns.A:
			out = append(out, v.A.String())
		case *mdns.AAAA:
			out = append(out, v.AAAA.String())
		case *mdns.PTR:
			out = append(out, v.Ptr)
		case *mdns.SOA:
			out = append(out, "SOA "+v.Ns)
		default:
			out = append(out, rr.String())
		}
	}
	return out
}

func TestHandlerAnswers(t *testing.T) {
	h := testHandler(t, nil)
	withEDNS := func(m *mdns.Msg, size uint16) *mdns.Msg { m.SetEdns0(size, false); return m }
	withOpcode := func(m *mdns.Msg, op int) *mdns.Msg { m.Opcode = op; return m }
	tests := []struct {
		name    string
		q       *mdns.Msg
		tcp     bool
		rcode   int
		answers []string // sorted
		soa     bool     // SOA in the authority section
		tc      bool
		aa      bool
	}{
		{name: "A", q: query("web.weave.local.", mdns.TypeA), answers: []string{"10.32.1.5"}, aa: true},
		{name: "case insensitive", q: query("WeB.WEAVE.local.", mdns.TypeA), answers: []string{"10.32.1.5"}, aa: true},
		{name: "several addresses", q: query("multi.weave.local.", mdns.TypeA),
			answers: []string{"10.32.2.1", "10.32.2.2", "10.32.2.3"}, aa: true},
		{name: "A of a dual-stack name", q: query("dual.weave.local.", mdns.TypeA), answers: []string{"10.32.3.1"}, aa: true},
		{name: "AAAA", q: query("dual.weave.local.", mdns.TypeAAAA), answers: []string{"fd00::3:1"}, aa: true},
		{name: "ANY", q: query("dual.weave.local.", mdns.TypeANY), answers: []string{"10.32.3.1", "fd00::3:1"}, aa: true},
		{name: "AAAA of a known v4 name", q: query("web.weave.local.", mdns.TypeAAAA), soa: true, aa: true},
		{name: "A of a v6-only name", q: query("v6only.weave.local.", mdns.TypeA), soa: true, aa: true},
		{name: "MX of a known name", q: query("web.weave.local.", mdns.TypeMX), soa: true, aa: true},
		{name: "unknown name", q: query("nosuch.weave.local.", mdns.TypeA), rcode: mdns.RcodeNameError, soa: true, aa: true},
		{name: "empty non-terminal", q: query("prod.weave.local.", mdns.TypeA), soa: true, aa: true},
		{name: "below an empty non-terminal", q: query("x.prod.weave.local.", mdns.TypeA), rcode: mdns.RcodeNameError, soa: true, aa: true},
		{name: "apex SOA", q: query("weave.local.", mdns.TypeSOA), answers: []string{"SOA ns.weave.local."}, aa: true},
		{name: "apex A", q: query("weave.local.", mdns.TypeA), soa: true, aa: true},
		{name: "PTR", q: query("5.1.32.10.in-addr.arpa.", mdns.TypePTR), answers: []string{"web.weave.local."}, aa: true},
		{name: "PTR v6", q: query("1.0.0.0.3.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.", mdns.TypePTR),
			answers: []string{"dual.weave.local."}, aa: true},
		{name: "PTR unknown, no upstream", q: query("9.9.9.10.in-addr.arpa.", mdns.TypePTR), rcode: mdns.RcodeServerFailure},
		{name: "outside the domain, no upstream", q: query("example.com.", mdns.TypeA), rcode: mdns.RcodeServerFailure},
		{name: "truncated over UDP", q: query("big.weave.local.", mdns.TypeA), tc: true, aa: true},
		{name: "large over TCP", q: query("big.weave.local.", mdns.TypeA), tcp: true, aa: true},
		{name: "large with EDNS0", q: withEDNS(query("big.weave.local.", mdns.TypeA), 4096), aa: true},
		{name: "status opcode", q: withOpcode(query("web.weave.local.", mdns.TypeA), mdns.OpcodeStatus), rcode: mdns.RcodeNotImplemented},
		{name: "notify opcode", q: withOpcode(query("web.weave.local.", mdns.TypeA), mdns.OpcodeNotify), rcode: mdns.RcodeNotImplemented},
		{name: "no question", q: &mdns.Msg{MsgHdr: mdns.MsgHdr{Id: 7}}, rcode: mdns.RcodeFormatError},
		{name: "two questions", q: func() *mdns.Msg {
			m := query("web.weave.local.", mdns.TypeA)
			m.Question = append(m.Question, m.Question[0])
			return m
		}(), rcode: mdns.RcodeFormatError},
		{name: "CHAOS class", q: func() *mdns.Msg {
			m := query("web.weave.local.", mdns.TypeTXT)
			m.Question[0].Qclass = mdns.ClassCHAOS
			return m
		}(), rcode: mdns.RcodeNotImplemented},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := &recorder{tcp: tt.tcp}
			tt.q.Id = 4242
			h.ServeDNS(w, tt.q)
			m := w.answer(t)
			if m.Id != 4242 || !m.Response {
				t.Errorf("id %d response %v", m.Id, m.Response)
			}
			if m.Rcode != tt.rcode {
				t.Errorf("rcode %s, want %s", mdns.RcodeToString[m.Rcode], mdns.RcodeToString[tt.rcode])
			}
			if m.Truncated != tt.tc {
				t.Errorf("TC %v, want %v", m.Truncated, tt.tc)
			}
			if m.Authoritative != tt.aa {
				t.Errorf("AA %v, want %v", m.Authoritative, tt.aa)
			}
			if hasSOA := len(m.Ns) == 1 && m.Ns[0].Header().Rrtype == mdns.TypeSOA; hasSOA != tt.soa {
				t.Errorf("SOA in authority: %v, want %v (%v)", hasSOA, tt.soa, m.Ns)
			}
			if strings.HasPrefix(tt.name, "large") || strings.HasPrefix(tt.name, "truncated") {
				n := len(m.Answer)
				if tt.tc && (n == 0 || n >= 60 || len(w.msgs[0]) > 512) {
					t.Errorf("truncated answer has %d records in %d bytes", n, len(w.msgs[0]))
				}
				if !tt.tc && n != 60 {
					t.Errorf("%d records, want all 60", n)
				}
				return
			}
			got := answersOf(m)
			slices.Sort(got)
			if !slices.Equal(got, tt.answers) {
				t.Errorf("answers %v, want %v", got, tt.answers)
			}
			for _, rr := range m.Answer {
				if rr.Header().Rrtype != mdns.TypeSOA && (rr.Header().Ttl != 7 || rr.Header().Name != tt.q.Question[0].Name) {
					t.Errorf("answer header %v: want the question's name and TTL 7", rr.Header())
				}
			}
		})
	}
}

func TestHandlerShuffles(t *testing.T) {
	h := testHandler(t, nil)
	orders := map[string]bool{}
	for i := 0; i < 40; i++ {
		w := &recorder{}
		h.ServeDNS(w, query("multi.weave.local.", mdns.TypeA))
		orders[strings.Join(answersOf(w.answer(t)), ",")] = true
	}
	if len(orders) < 2 {
		t.Errorf("40 answers all in the same order: %v", orders)
	}
}

func TestHandlerEDNS(t *testing.T) {
	h := testHandler(t, nil)
	q := query("web.weave.local.", mdns.TypeA)
	q.SetEdns0(1400, true)
	w := &recorder{}
	h.ServeDNS(w, q)
	m := w.answer(t)
	opt := m.IsEdns0()
	if opt == nil || opt.UDPSize() != ednsSize || !opt.Do() || opt.Version() != 0 {
		t.Fatalf("OPT in answer: %v", opt)
	}

	// An unknown EDNS version gets BADVERS, with an OPT.
	q = query("web.weave.local.", mdns.TypeA)
	q.SetEdns0(1400, false)
	q.IsEdns0().SetVersion(1)
	w = &recorder{}
	h.ServeDNS(w, q)
	m = w.answer(t)
	if m.Rcode != mdns.RcodeBadVers || m.IsEdns0() == nil {
		t.Errorf("rcode %s, OPT %v; want BADVERS with OPT", mdns.RcodeToString[m.Rcode], m.IsEdns0())
	}

	// No OPT in the query, none in the answer.
	w = &recorder{}
	h.ServeDNS(w, query("web.weave.local.", mdns.TypeA))
	if w.answer(t).IsEdns0() != nil {
		t.Error("OPT in the answer to a query without one")
	}
}

func TestHandlerIgnoresResponses(t *testing.T) {
	h := testHandler(t, nil)
	q := query("web.weave.local.", mdns.TypeA)
	q.Response = true
	w := &recorder{}
	h.ServeDNS(w, q)
	if len(w.msgs) != 0 {
		t.Error("answered a response")
	}
}

func TestHandlerMetrics(t *testing.T) {
	h := testHandler(t, nil)
	for _, q := range []*mdns.Msg{
		query("web.weave.local.", mdns.TypeA),
		query("nosuch.weave.local.", mdns.TypeA),
		query("big.weave.local.", mdns.TypeA),
		query("example.com.", mdns.TypeA),
	} {
		h.ServeDNS(&recorder{}, q)
	}
	s := h.Metrics().Snapshot()
	if s.Queries != 4 || s.Local != 3 || s.Truncated != 1 ||
		s.Answers["NOERROR"] != 2 || s.Answers["NXDOMAIN"] != 1 || s.Answers["SERVFAIL"] != 1 {
		t.Errorf("metrics %+v", s)
	}
}

func TestHandlerOptions(t *testing.T) {
	st := testStore(t)
	for _, o := range []HandlerOptions{
		{},
		{Store: st, Domain: "a..b"},
		{Store: st, TTL: 1500 * time.Millisecond},
		{Store: st, TTL: 48 * time.Hour},
	} {
		if _, err := NewHandler(o); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
	h, err := NewHandler(HandlerOptions{Store: st, Domain: "Example.ORG"})
	if err != nil || h.Domain() != "example.org." {
		t.Errorf("domain %q, %v", h.Domain(), err)
	}
}

// TestHandlerAllocs: answering a name in the domain allocates nothing of
// the handler's own once the pool is warm.
func TestHandlerAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	h := testHandler(t, nil)
	q := query("multi.weave.local.", mdns.TypeA)
	w := &discard{}
	h.ServeDNS(w, q)
	n := testing.AllocsPerRun(200, func() { h.ServeDNS(w, q) })
	if n > 0 {
		t.Errorf("%.1f allocations per query", n)
	}
}

type discard struct{ recorder }

func (d *discard) Write(b []byte) (int, error) { return len(b), nil }

func BenchmarkHandlerA(b *testing.B) {
	s, err := NewStore(StoreOptions{Self: pA, Peers: func() []PeerStatus { return nil }})
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < 1000; i++ {
		name := "c" + strings.Repeat("x", i%5) + netip.AddrFrom4([4]byte{10, 32, byte(i >> 8), byte(i)}).String()
		n, err := Normalize(strings.ReplaceAll(name, ".", "-"), DefaultDomain)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.Add(n, []netip.Addr{netip.AddrFrom4([4]byte{10, 32, byte(i >> 8), byte(i)})}); err != nil {
			b.Fatal(err)
		}
	}
	h, err := NewHandler(HandlerOptions{Store: s})
	if err != nil {
		b.Fatal(err)
	}
	q := query("cxx10-32-0-2.weave.local.", mdns.TypeA)
	w := &discard{}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		h.ServeDNS(w, q)
	}
}
