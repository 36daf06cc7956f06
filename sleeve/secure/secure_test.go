package secure

import (
	"bytes"
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"

	"weavemesh.dev/weave/peer"
	"weavemesh.dev/weave/sleeve/wire"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func pair(t *testing.T, pskA, pskB byte, trusted ...netip.Prefix) (*Manager, *Manager, *clock) {
	t.Helper()
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	a, err := NewManager(Config{Self: 1, PSK: [32]byte{pskA}, Trusted: trusted, Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewManager(Config{Self: 2, PSK: [32]byte{pskB}, Trusted: trusted, Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	return a, b, c
}

// handshake runs initiator -> responder and returns any error.
func handshake(t *testing.T, from, to *Manager, fromName, toName peer.Name, trustFrom, trustTo bool) error {
	t.Helper()
	init, err := from.Initiate(make([]byte, InitLen), toName, trustFrom)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := to.HandleInit(make([]byte, RespLen), init, fromName, trustTo)
	if err != nil {
		return err
	}
	return from.HandleResp(resp, toName)
}

// send seals msg from m to p and returns the datagram.
func send(t *testing.T, m *Manager, p peer.Name, msg string) []byte {
	t.Helper()
	s := m.Current(p)
	if s == nil {
		t.Fatalf("%v has no session with %v", m.cfg.Self, p)
	}
	b := make([]byte, EnvelopeLen+len(msg)+TagLen)
	copy(b[EnvelopeLen:], msg)
	out, ok := s.Seal(b, len(msg))
	if !ok {
		t.Fatal("seal refused")
	}
	return out
}

func open(m *Manager, d []byte) (string, error) {
	_, pt, err := m.Open(bytes.Clone(d))
	return string(pt), err
}

func TestHandshakeAndData(t *testing.T) {
	a, b, _ := pair(t, 7, 7)
	if err := handshake(t, a, b, 1, 2, false, false); err != nil {
		t.Fatal(err)
	}
	if b.Current(1) != nil {
		t.Fatal("responder sends before the initiator confirmed")
	}
	d := send(t, a, 2, "hello")
	if got, err := open(b, d); err != nil || got != "hello" {
		t.Fatalf("open = %q, %v", got, err)
	}
	if b.Current(1) == nil {
		t.Fatal("responder session not confirmed by data")
	}
	if got, err := open(a, send(t, b, 1, "back")); err != nil || got != "back" {
		t.Fatalf("reply = %q, %v", got, err)
	}
	// Replay and tampering.
	if _, err := open(b, d); !errors.Is(err, ErrReplay) {
		t.Fatalf("replay: %v", err)
	}
	d2 := send(t, a, 2, "tamper")
	for i := range d2 {
		x := bytes.Clone(d2)
		x[i] ^= 0x10
		if _, err := open(b, x); err == nil {
			t.Fatalf("flipped byte %d accepted", i)
		}
	}
	if got, err := open(b, d2); err != nil || got != "tamper" {
		t.Fatalf("original after tampered copies: %q %v", got, err)
	}
	if a.Plain(2) || b.Plain(1) {
		t.Fatal("untrusted session is plain")
	}
}

func TestWrongPasswordRefused(t *testing.T) {
	a, b, _ := pair(t, 7, 8)
	if err := handshake(t, a, b, 1, 2, false, false); !errors.Is(err, ErrAuth) {
		t.Fatalf("err = %v", err)
	}
}

func TestInitReplayRefused(t *testing.T) {
	a, b, c := pair(t, 7, 7)
	init, _ := a.Initiate(make([]byte, InitLen), 2, false)
	if _, err := b.HandleInit(make([]byte, RespLen), bytes.Clone(init), 1, false); err != nil {
		t.Fatal(err)
	}
	c.add(time.Second)
	if _, err := b.HandleInit(make([]byte, RespLen), bytes.Clone(init), 1, false); !errors.Is(err, ErrReplay) {
		t.Fatalf("replayed init: %v", err)
	}
	// A response nobody asked for.
	resp := make([]byte, RespLen)
	wire.PutHeader(resp, &wire.Header{Version: wire.Version, Type: wire.TypeHandshake2, TTL: 1, Src: 2, Dst: 1})
	if err := a.HandleResp(resp, 2); !errors.Is(err, ErrHandshake) {
		t.Fatalf("stray response: %v", err)
	}
}

func TestTrustedPlainNeedsBothSides(t *testing.T) {
	a, b, _ := pair(t, 7, 7)
	if err := handshake(t, a, b, 1, 2, true, false); err != nil {
		t.Fatal(err)
	}
	if a.Plain(2) {
		t.Fatal("plain with one-sided trust")
	}
	c, d, _ := pair(t, 7, 7)
	if err := handshake(t, c, d, 1, 2, true, true); err != nil {
		t.Fatal(err)
	}
	if !c.Plain(2) {
		t.Fatal("not plain with mutual trust")
	}
}

func TestTrustedSubnets(t *testing.T) {
	m, _ := NewManager(Config{Self: 1, PSK: [32]byte{1}, Trusted: []netip.Prefix{netip.MustParsePrefix("192.168.0.0/16")}})
	for _, tt := range []struct {
		addr string
		want bool
	}{{"192.168.1.2", true}, {"10.0.0.1", false}, {"::ffff:192.168.9.9", true}} {
		if got := m.Trusted(netip.MustParseAddr(tt.addr)); got != tt.want {
			t.Errorf("Trusted(%s) = %v", tt.addr, got)
		}
	}
}

// Both sides initiating at once, then rekeying, never leaves a gap: every
// datagram sent on a current session opens on the other side.
func TestSimultaneousAndRekey(t *testing.T) {
	a, b, c := pair(t, 7, 7)
	ia, _ := a.Initiate(make([]byte, InitLen), 2, false)
	ib, _ := b.Initiate(make([]byte, InitLen), 1, false)
	ra, err := b.HandleInit(make([]byte, RespLen), ia, 1, false)
	if err != nil {
		t.Fatal(err)
	}
	rb, err := a.HandleInit(make([]byte, RespLen), ib, 2, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.HandleResp(ra, 2); err != nil {
		t.Fatal(err)
	}
	if err := b.HandleResp(rb, 1); err != nil {
		t.Fatal(err)
	}
	exchange := func(round int) {
		for i := 0; i < 3; i++ {
			if _, err := open(b, send(t, a, 2, "ab")); err != nil {
				t.Fatalf("round %d a->b: %v", round, err)
			}
			if _, err := open(a, send(t, b, 1, "ba")); err != nil {
				t.Fatalf("round %d b->a: %v", round, err)
			}
		}
	}
	exchange(0)
	for round := 1; round <= 4; round++ {
		c.add(RekeyAfterTime)
		if !a.NeedsHandshake(2) {
			t.Fatal("no rekey due after RekeyAfterTime")
		}
		from, to, fn, tn := a, b, peer.Name(1), peer.Name(2)
		if round%2 == 0 {
			from, to, fn, tn = b, a, 2, 1
		}
		// The other side sends on its old session while the handshake runs.
		old := send(t, to, fn, "old")
		if err := handshake(t, from, to, fn, tn, false, false); err != nil {
			t.Fatal(err)
		}
		if _, err := open(from, old); err != nil {
			t.Fatalf("round %d: datagram on the old session lost: %v", round, err)
		}
		exchange(round)
		to.Expire()
		from.Expire()
	}
}

func TestExpiry(t *testing.T) {
	a, b, c := pair(t, 7, 7)
	if err := handshake(t, a, b, 1, 2, false, false); err != nil {
		t.Fatal(err)
	}
	d := send(t, a, 2, "x")
	c.add(RejectAfterTime)
	if a.Current(2) != nil {
		t.Fatal("expired session still current")
	}
	if _, err := open(b, d); !errors.Is(err, ErrExpired) {
		t.Fatalf("expired: %v", err)
	}
	a.Expire()
	if _, err := open(b, d); err == nil {
		t.Fatal("opened after expiry")
	}
}

func FuzzOpen(f *testing.F) {
	a, b, _ := pairF(f)
	init, _ := a.Initiate(make([]byte, InitLen), 2, false)
	resp, _ := b.HandleInit(make([]byte, RespLen), init, 1, false)
	_ = a.HandleResp(resp, 2)
	s := a.Current(2)
	buf := make([]byte, EnvelopeLen+5+TagLen)
	copy(buf[EnvelopeLen:], "hello")
	d, _ := s.Seal(buf, 5)
	f.Add(bytes.Clone(d))
	f.Add(init)
	f.Add(resp)
	f.Fuzz(func(t *testing.T, in []byte) {
		_, _, _ = b.Open(bytes.Clone(in))
		_, _ = b.HandleInit(make([]byte, RespLen), in, 1, false)
		_ = a.HandleResp(in, 2)
	})
}

func pairF(f *testing.F) (*Manager, *Manager, *clock) {
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	a, _ := NewManager(Config{Self: 1, PSK: [32]byte{7}, Now: c.now})
	b, _ := NewManager(Config{Self: 2, PSK: [32]byte{7}, Now: c.now})
	return a, b, c
}

// BenchmarkSeal1400 seals one 1,400-byte datagram (a TCP segment at the
// default MTU) with each cipher; BenchmarkOpen1400 opens it.
func BenchmarkSeal1400(b *testing.B) {
	for _, c := range []Cipher{AESGCM, ChaCha20Poly1305} {
		b.Run(c.String(), func(b *testing.B) {
			s, _ := benchSessions(b, c)
			buf := make([]byte, EnvelopeLen+1400+TagLen)
			b.SetBytes(1400)
			b.ReportAllocs()
			for b.Loop() {
				s.Seal(buf, 1400)
			}
		})
	}
}

func BenchmarkOpen1400(b *testing.B) {
	for _, c := range []Cipher{AESGCM, ChaCha20Poly1305} {
		b.Run(c.String(), func(b *testing.B) {
			s, r := benchSessions(b, c)
			pt := make([]byte, EnvelopeLen+1400+TagLen)
			sealed, _ := s.Seal(pt, 1400)
			buf := make([]byte, len(sealed))
			b.SetBytes(1400)
			b.ReportAllocs()
			for b.Loop() {
				copy(buf, sealed)
				if _, err := r.recv.Open(buf[EnvelopeLen:EnvelopeLen], buf[4:EnvelopeLen], buf[EnvelopeLen:], buf[:EnvelopeLen]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// benchSessions are the two ends of a session with cipher c: the
// initiator's and the responder's.
func benchSessions(b *testing.B, c Cipher) (*Session, *Session) {
	x, y, _ := pairF(nil)
	x.cfg.Cipher = c
	init, _ := x.Initiate(make([]byte, InitLen), 2, false)
	resp, _ := y.HandleInit(make([]byte, RespLen), init, 1, false)
	if err := x.HandleResp(resp, 2); err != nil {
		b.Fatal(err)
	}
	return x.Current(2), y.keys(1).next
}
