package dns

import (
	"reflect"
	"slices"
	"testing"

	mdns "github.com/miekg/dns"
)

// summary is what must agree between the fast and the full path.
type summary struct {
	id                 uint16
	rcode              int
	aa, tc, ra, rd, cd bool
	answers            []string // sorted; only the count when truncated
	count              int
	authority          []string
	opt                bool
	optSize            uint16
	do                 bool
	question           string
}

func summarize(t *testing.T, b []byte) summary {
	t.Helper()
	var m mdns.Msg
	if err := m.Unpack(b); err != nil {
		t.Fatalf("answer does not parse: %v", err)
	}
	s := summary{id: m.Id, rcode: m.Rcode, aa: m.Authoritative, tc: m.Truncated, ra: m.RecursionAvailable,
		rd: m.RecursionDesired, cd: m.CheckingDisabled, count: len(m.Answer)}
	if !m.Truncated {
		s.answers = answersOf(&m)
		slices.Sort(s.answers)
	}
	for _, rr := range m.Ns {
		s.authority = append(s.authority, rr.String())
	}
	if o := m.IsEdns0(); o != nil {
		s.opt, s.optSize, s.do = true, o.UDPSize(), o.Do()
	}
	if len(m.Question) == 1 {
		s.question = m.Question[0].String()
	}
	return s
}

func TestFastPathMatchesFullPath(t *testing.T) {
	h := testHandler(t, nil)
	edns := func(m *mdns.Msg, size uint16, do bool) *mdns.Msg { m.SetEdns0(size, do); return m }
	flagged := func(m *mdns.Msg) *mdns.Msg { m.RecursionDesired = false; m.CheckingDisabled = true; return m }
	tests := []struct {
		name string
		q    *mdns.Msg
		fast bool
	}{
		{"A", query("web.weave.local.", mdns.TypeA), true},
		{"A, mixed case", query("WeB.weave.LOCAL.", mdns.TypeA), true},
		{"A, flags", flagged(query("web.weave.local.", mdns.TypeA)), true},
		{"AAAA of a v4 name", query("web.weave.local.", mdns.TypeAAAA), true},
		{"A of several", query("multi.weave.local.", mdns.TypeA), true},
		{"AAAA dual", query("dual.weave.local.", mdns.TypeAAAA), true},
		{"A v6 only", query("v6only.weave.local.", mdns.TypeA), true},
		{"unknown", query("nosuch.weave.local.", mdns.TypeA), true},
		{"empty non-terminal", query("prod.weave.local.", mdns.TypeA), true},
		{"apex", query("weave.local.", mdns.TypeA), true},
		{"PTR", query("5.1.32.10.in-addr.arpa.", mdns.TypePTR), true},
		{"PTR v6", query("1.0.0.0.3.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.", mdns.TypePTR), true},
		{"truncated", query("big.weave.local.", mdns.TypeA), true},
		{"EDNS0", edns(query("web.weave.local.", mdns.TypeA), 1400, true), true},
		{"EDNS0 large", edns(query("big.weave.local.", mdns.TypeA), 4096, false), true},
		{"EDNS0 small buffer", edns(query("big.weave.local.", mdns.TypeA), 100, false), true},
		{"EDNS0 unknown name", edns(query("nosuch.weave.local.", mdns.TypeA), 1232, false), true},
		// Left to the full path.
		{"EDNS version 1", func() *mdns.Msg {
			m := edns(query("web.weave.local.", mdns.TypeA), 1232, false)
			m.IsEdns0().SetVersion(1)
			return m
		}(), false},
		{"MX", query("web.weave.local.", mdns.TypeMX), false},
		{"ANY", query("web.weave.local.", mdns.TypeANY), false},
		{"outside", query("example.com.", mdns.TypeA), false},
		{"PTR unknown", query("9.9.9.10.in-addr.arpa.", mdns.TypePTR), false},
		{"PTR malformed", query("1.2.in-addr.arpa.", mdns.TypePTR), false},
		{"notify", func() *mdns.Msg { m := query("web.weave.local.", mdns.TypeA); m.Opcode = mdns.OpcodeNotify; return m }(), false},
		{"chaos", func() *mdns.Msg {
			m := query("web.weave.local.", mdns.TypeA)
			m.Question[0].Qclass = mdns.ClassCHAOS
			return m
		}(), false},
		{"odd character", query("we\\@b.weave.local.", mdns.TypeA), false},
	}
	out := make([]byte, maxFastAnswer)
	var sc fastScratch
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.q.Id = 777
			b, err := tt.q.Pack()
			if err != nil {
				t.Fatal(err)
			}
			n, ok := h.answerFast(b, out, &sc)
			if ok != tt.fast {
				t.Fatalf("fast path took it: %v, want %v", ok, tt.fast)
			}
			if !ok {
				return
			}
			w := &recorder{}
			h.ServeDNS(w, tt.q)
			fast, full := summarize(t, out[:n]), summarize(t, w.msgs[0])
			if !slices.Equal(fast.answers, full.answers) || !slices.Equal(fast.authority, full.authority) {
				t.Errorf("fast\n%+v\nfull\n%+v", fast, full)
			}
			fast.answers, full.answers, fast.authority, full.authority = nil, nil, nil, nil
			if !reflect.DeepEqual(fast, full) {
				t.Errorf("fast\n%+v\nfull\n%+v", fast, full)
			}
			if fast.tc && n > 512 && !fast.opt {
				t.Errorf("truncated answer of %d bytes", n)
			}
		})
	}
}

func TestFastPathAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	h := testHandler(t, nil)
	out := make([]byte, maxFastAnswer)
	var sc fastScratch
	for _, tt := range []struct {
		name string
		q    *mdns.Msg
	}{
		{"A", query("multi.weave.local.", mdns.TypeA)},
		{"AAAA", query("dual.weave.local.", mdns.TypeAAAA)},
		{"NXDOMAIN", query("nosuch.weave.local.", mdns.TypeA)},
		{"truncated", query("big.weave.local.", mdns.TypeA)},
		{"PTR", query("5.1.32.10.in-addr.arpa.", mdns.TypePTR)},
		{"PTR v6", query("1.0.0.0.3.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.", mdns.TypePTR)},
		{"EDNS0", func() *mdns.Msg { m := query("web.weave.local.", mdns.TypeA); m.SetEdns0(1232, true); return m }()},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b, err := tt.q.Pack()
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := h.answerFast(b, out, &sc); !ok {
				t.Fatal("not answered by the fast path")
			}
			if n := testing.AllocsPerRun(200, func() { h.answerFast(b, out, &sc) }); n > 0 {
				t.Errorf("%.1f allocations per query", n)
			}
		})
	}
}

func BenchmarkFastPath(b *testing.B) {
	s, err := NewStore(StoreOptions{Self: pA, Peers: func() []PeerStatus { return nil }})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := s.Add("web.weave.local.", addrs("10.32.1.5")); err != nil {
		b.Fatal(err)
	}
	h, err := NewHandler(HandlerOptions{Store: s})
	if err != nil {
		b.Fatal(err)
	}
	q, _ := query("web.weave.local.", mdns.TypeA).Pack()
	out := make([]byte, maxFastAnswer)
	var sc fastScratch
	b.ReportAllocs()
	for b.Loop() {
		h.answerFast(q, out, &sc)
	}
}
