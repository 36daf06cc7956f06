package dns

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"weavemesh.dev/weave/internal/netnstest"
)

func startServer(t *testing.T, fwd *Forwarder) (*Server, netip.AddrPort) {
	t.Helper()
	h, err := NewHandler(HandlerOptions{Store: testStore(t), Forwarder: fwd})
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewServer(h, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	if err := s.Listen("test", netip.MustParseAddrPort("127.0.0.1:0"), ""); err != nil {
		t.Fatal(err)
	}
	ls := s.Listeners()
	if len(ls) != 1 || ls[0].Addr.Port() == 0 {
		t.Fatalf("listeners %+v", ls)
	}
	return s, ls[0].Addr
}

func exchange(t *testing.T, network string, addr netip.AddrPort, q *mdns.Msg) *mdns.Msg {
	t.Helper()
	c := &mdns.Client{Net: network, Timeout: 2 * time.Second}
	r, _, err := c.Exchange(q, addr.String())
	if err != nil {
		t.Fatalf("%s query %s: %v", network, q.Question[0].Name, err)
	}
	return r
}

func TestServerUDPAndTCP(t *testing.T) {
	_, addr := startServer(t, nil)
	r := exchange(t, "udp", addr, query("web.weave.local.", mdns.TypeA))
	if len(r.Answer) != 1 || r.Rcode != mdns.RcodeSuccess {
		t.Errorf("udp: %v", r)
	}
	r = exchange(t, "udp", addr, query("big.weave.local.", mdns.TypeA))
	if !r.Truncated {
		t.Error("60 addresses over 512-byte UDP: no TC")
	}
	r = exchange(t, "tcp", addr, query("big.weave.local.", mdns.TypeA))
	if r.Truncated || len(r.Answer) != 60 {
		t.Errorf("tcp: TC %v, %d answers", r.Truncated, len(r.Answer))
	}
}

// rawUDP sends b and returns the answer, or nil when none comes.
func rawUDP(t *testing.T, addr netip.AddrPort, b []byte) []byte {
	t.Helper()
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := c.SetReadDeadline(time.Now().Add(300 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil {
		return nil
	}
	return buf[:n]
}

// TestServerMalformed: garbage never crashes the server; what has a DNS
// header gets a proper error rcode, what has none gets nothing.
func TestServerMalformed(t *testing.T) {
	s, addr := startServer(t, nil)
	good, err := query("web.weave.local.", mdns.TypeA).Pack()
	if err != nil {
		t.Fatal(err)
	}
	header := func(id uint16, flags uint16, qd, an, ns, ar uint16) []byte {
		b := make([]byte, 12)
		binary.BigEndian.PutUint16(b[0:], id)
		binary.BigEndian.PutUint16(b[2:], flags)
		binary.BigEndian.PutUint16(b[4:], qd)
		binary.BigEndian.PutUint16(b[6:], an)
		binary.BigEndian.PutUint16(b[8:], ns)
		binary.BigEndian.PutUint16(b[10:], ar)
		return b
	}
	tests := []struct {
		name  string
		b     []byte
		rcode int // -1: no answer expected
	}{
		{"too short", []byte{1, 2, 3}, -1},
		{"no question", header(1, 0, 0, 0, 0, 0), mdns.RcodeFormatError},
		{"two questions", header(2, 0, 2, 0, 0, 0), mdns.RcodeFormatError},
		{"question cut short", append(header(3, 0, 1, 0, 0, 0), 3, 'w', 'e'), mdns.RcodeFormatError},
		{"bad label", append(header(4, 0, 1, 0, 0, 0), 0xc0, 0xff, 0, 1, 0, 1), mdns.RcodeFormatError},
		{"update opcode", append(header(5, 5<<11, 1, 0, 0, 0), good[12:]...), mdns.RcodeNotImplemented},
		{"a response", append(header(6, 1<<15, 1, 0, 0, 0), good[12:]...), -1},
		{"trailing garbage", append(append([]byte(nil), good...), 0xde, 0xad), mdns.RcodeSuccess},
	}
	for _, tt := range tests {
		ans := rawUDP(t, addr, tt.b)
		if tt.rcode < 0 {
			if ans != nil {
				t.Errorf("%s: answered %x", tt.name, ans)
			}
			continue
		}
		if ans == nil {
			t.Errorf("%s: no answer", tt.name)
			continue
		}
		var m mdns.Msg
		if err := m.Unpack(ans); err != nil {
			t.Errorf("%s: answer does not parse: %v", tt.name, err)
			continue
		}
		if m.Rcode != tt.rcode || !m.Response {
			t.Errorf("%s: rcode %s, want %s", tt.name, mdns.RcodeToString[m.Rcode], mdns.RcodeToString[tt.rcode])
		}
	}
	// Still serving.
	if r := exchange(t, "udp", addr, query("web.weave.local.", mdns.TypeA)); len(r.Answer) != 1 {
		t.Error("server broken after malformed queries")
	}
	if m := s.h.Metrics().Snapshot(); m.Malformed < 4 {
		t.Errorf("metrics count %d malformed queries, want at least 4", m.Malformed)
	}
}

func TestServerListeners(t *testing.T) {
	s, addr := startServer(t, nil)
	// Same key, same address: nothing changes.
	if err := s.Listen("test", addr, ""); err != nil {
		t.Fatal(err)
	}
	if err := s.Listen("test", addr, ""); err != nil {
		t.Fatal(err)
	}
	if err := s.Listen("other", addr, ""); err == nil {
		t.Error("a second listener on a busy port succeeded")
	}
	s.Stop("test")
	if len(s.Listeners()) != 0 {
		t.Errorf("listeners after Stop: %+v", s.Listeners())
	}
	s.Stop("test")
	s.Close()
	s.Close()
	if err := s.Listen("x", netip.MustParseAddrPort("127.0.0.1:0"), ""); err == nil {
		t.Error("Listen after Close succeeded")
	}
}

// FuzzQuery sends arbitrary bytes through the server's own path (header
// check, unpacking, handler): no panic, and every answer parses and is a
// response with the query's ID.
func FuzzQuery(f *testing.F) {
	good, _ := query("web.weave.local.", mdns.TypeA).Pack()
	f.Add(good)
	ptr, _ := query("5.1.32.10.in-addr.arpa.", mdns.TypePTR).Pack()
	f.Add(ptr)
	f.Add([]byte{0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 0x0c})
	s, err := NewStore(StoreOptions{Self: pA, Peers: func() []PeerStatus { return nil }})
	if err != nil {
		f.Fatal(err)
	}
	if _, err := s.Add("web.weave.local.", addrs("10.32.1.5")); err != nil {
		f.Fatal(err)
	}
	h, err := NewHandler(HandlerOptions{Store: s})
	if err != nil {
		f.Fatal(err)
	}
	out := make([]byte, maxFastAnswer)
	var sc fastScratch
	f.Fuzz(func(t *testing.T, b []byte) {
		n, fast := h.answerFast(b, out, &sc)
		w := &recorder{}
		h.serveRaw(b, w)
		if fast && len(w.msgs) != 1 {
			t.Fatalf("the fast path answered, the full path wrote %d answers", len(w.msgs))
		}
		for _, ans := range w.msgs {
			var a mdns.Msg
			if err := a.Unpack(ans); err != nil {
				t.Fatalf("answer does not parse: %v", err)
			}
			if a.Id != binary.BigEndian.Uint16(b) || !a.Response {
				t.Fatalf("answer id %d response %v", a.Id, a.Response)
			}
			if fast {
				var fa mdns.Msg
				if err := fa.Unpack(out[:n]); err != nil {
					t.Fatalf("fast answer does not parse: %v", err)
				}
				if fa.Id != a.Id || fa.Rcode != a.Rcode || len(fa.Answer) != len(a.Answer) || fa.Truncated != a.Truncated {
					t.Fatalf("fast path %v\nfull path %v", &fa, &a)
				}
			}
		}
	})
}

// TestListenNetns: a listener made inside another namespace answers there.
func TestListenNetns(t *testing.T) {
	path := netnstest.Add(t, netnstest.Name("wvdns"))

	h, err := NewHandler(HandlerOptions{Store: testStore(t)})
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewServer(h, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	addr := netip.MustParseAddrPort("127.0.0.153:53")
	if err := s.Listen("ns", addr, path); err != nil {
		t.Fatal(err)
	}
	// The same address in our own namespace is somebody else's: from here
	// it does not answer, from inside the namespace it does.
	conn, err := dialInNetns(path, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	co := &mdns.Conn{Conn: conn}
	q := query("web.weave.local.", mdns.TypeA)
	if err := co.WriteMsg(q); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	r, err := co.ReadMsg()
	if err != nil || len(r.Answer) != 1 {
		t.Fatalf("answer from inside the namespace: %v %v", r, err)
	}
}

// dialInNetns makes a UDP socket inside a namespace connected to addr.
func dialInNetns(path string, addr netip.AddrPort) (net.Conn, error) {
	var c net.Conn
	err := netnstest.Do(path, func() error {
		var err error
		c, err = net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(addr))
		return err
	})
	return c, err
}
