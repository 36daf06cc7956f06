package gossip

import (
	"io"
	"net"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

func newTestTransport(t *testing.T, sent *atomic.Uint64) *Transport {
	t.Helper()
	tr, err := NewTransport(TransportConfig{BindAddr: "127.0.0.1", BytesSent: sent})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Shutdown() })
	return tr
}

func TestTransportDatagrams(t *testing.T) {
	var sent atomic.Uint64
	a, b := newTestTransport(t, &sent), newTestTransport(t, nil)
	ip, port, err := b.FinalAdvertiseAddr("", 0)
	if err != nil || !ip.Equal(net.IPv4(127, 0, 0, 1)) || port != b.Port() {
		t.Fatalf("FinalAdvertiseAddr = %v %d %v, want 127.0.0.1 %d", ip, port, err, b.Port())
	}
	to := net.JoinHostPort("127.0.0.1", strconv.Itoa(b.Port()))
	cases := []struct {
		name string
		send func([]byte) (time.Time, error)
	}{
		{"WriteTo", func(p []byte) (time.Time, error) { return a.WriteTo(p, to) }},
		{"WriteToAddress", func(p []byte) (time.Time, error) {
			return a.WriteToAddress(p, memberlist.Address{Addr: to, Name: "b"})
		}},
		{"by name", func(p []byte) (time.Time, error) {
			return a.WriteTo(p, net.JoinHostPort("localhost", strconv.Itoa(b.Port())))
		}},
	}
	var want uint64
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			msg := []byte("datagram " + c.name)
			if _, err := c.send(msg); err != nil {
				t.Fatal(err)
			}
			want += uint64(len(msg))
			select {
			case p := <-b.PacketCh():
				if string(p.Buf) != string(msg) || cap(p.Buf) != len(msg) {
					t.Errorf("got %q (cap %d), want %q in a buffer of its size", p.Buf, cap(p.Buf), msg)
				}
				if p.From.(*net.UDPAddr).Port != a.Port() || p.Timestamp.IsZero() {
					t.Errorf("From %v Timestamp %v, want port %d and a time", p.From, p.Timestamp, a.Port())
				}
			case <-time.After(5 * time.Second):
				t.Fatal("no datagram")
			}
		})
	}
	if got := sent.Load(); got != want {
		t.Errorf("counted %d bytes sent, want %d", got, want)
	}
}

func TestTransportStreams(t *testing.T) {
	var sentA, sentB atomic.Uint64
	a, b := newTestTransport(t, &sentA), newTestTransport(t, &sentB)
	c, err := a.DialTimeout(net.JoinHostPort("127.0.0.1", strconv.Itoa(b.Port())), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var s net.Conn
	select {
	case s = <-b.StreamCh():
	case <-time.After(5 * time.Second):
		t.Fatal("no stream accepted")
	}
	defer s.Close()
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Write([]byte("hi, and more")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 5)
	if _, err := io.ReadFull(s, got); err != nil || string(got) != "hello" {
		t.Fatalf("read %q %v", got, err)
	}
	if sentA.Load() != 5 || sentB.Load() != 12 {
		t.Errorf("counted %d and %d bytes, want 5 (dialled) and 12 (accepted)", sentA.Load(), sentB.Load())
	}
}

func TestTransportErrors(t *testing.T) {
	if _, err := NewTransport(TransportConfig{BindAddr: "not-an-ip"}); err == nil {
		t.Error("a bind address that is no IP was accepted")
	}
	a := newTestTransport(t, nil)
	if _, err := NewTransport(TransportConfig{BindAddr: "127.0.0.1", Port: a.Port()}); err == nil {
		t.Error("a port in use was bound twice")
	}
	if _, _, err := a.FinalAdvertiseAddr("nonsense", 1); err == nil {
		t.Error("an advertise address that is no IP was accepted")
	}
	if ip, port, err := a.FinalAdvertiseAddr("10.1.2.3", 6783); err != nil || ip.String() != "10.1.2.3" || port != 6783 {
		t.Errorf("FinalAdvertiseAddr(10.1.2.3, 6783) = %v %d %v", ip, port, err)
	}
	done := make(chan struct{})
	go func() { a.Shutdown(); a.Shutdown(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown did not return")
	}
}
