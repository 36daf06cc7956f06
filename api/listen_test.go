package api

import (
	"context"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestParseAddr(t *testing.T) {
	for _, tc := range []struct {
		in      string
		network string
		address string
		err     string
	}{
		{in: "127.0.0.1:6784", network: "tcp", address: "127.0.0.1:6784"},
		{in: "[::1]:0", network: "tcp", address: "[::1]:0"},
		{in: "unix:///run/weave/weave.sock", network: "unix", address: "/run/weave/weave.sock"},
		{in: "unix://run/weave.sock", err: "absolute"},
		{in: "unix://", err: "absolute"},
		{in: "unix:///run//weave.sock", err: "clean"},
		{in: "unix:///run/weave/", err: "clean"},
		{in: "unix:///" + strings.Repeat("a", 120), err: "107 bytes"},
		{in: "http://127.0.0.1:6784", err: "want host:port"},
		{in: "127.0.0.1", err: "want host:port"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			a, err := ParseAddr(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("ParseAddr(%q) = %+v, %v; want an error with %q", tc.in, a, err, tc.err)
				}
				return
			}
			if err != nil || a.Network != tc.network || a.Address != tc.address {
				t.Fatalf("ParseAddr(%q) = %+v, %v; want %s %s", tc.in, a, err, tc.network, tc.address)
			}
			if a.String() != tc.in {
				t.Errorf("String() = %q, want %q", a.String(), tc.in)
			}
		})
	}
}

// sockDir is a short private directory: socket paths are limited to 107
// bytes, which t.TempDir's names can exceed.
func sockDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "wvapi")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func startUnix(t *testing.T, path string, b Backend) *Server {
	t.Helper()
	s, err := NewServer(ServerOptions{Addr: UnixScheme + path, Backend: b})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s
}

// TestUnixSocket: the API on a unix socket has mode 0600, needs no token
// for requests that change state (only its owner can connect), answers
// the client, and is gone once the server closes.
func TestUnixSocket(t *testing.T) {
	path := filepath.Join(sockDir(t), "sub", "weave.sock")
	b := &fakeBackend{status: Status{Name: "aa:bb:cc:dd:ee:ff", Ready: true}}
	s := startUnix(t, path, b)
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != SocketMode {
		t.Fatalf("socket mode %v, want a socket with %v", fi.Mode(), SocketMode)
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".weave-sock-*")); len(left) > 0 {
		t.Errorf("binding left %v", left)
	}
	if !s.Local() {
		t.Error("a unix socket is not local")
	}
	if s.Addr() != UnixScheme+path {
		t.Errorf("Addr() = %q", s.Addr())
	}
	c := NewClient(UnixScheme + path)
	defer c.CloseIdleConnections()
	st, err := c.Status(context.Background())
	if err != nil || st.Name != "aa:bb:cc:dd:ee:ff" {
		t.Fatalf("status over the socket: %+v, %v", st, err)
	}
	if err := c.Connect(context.Background(), []string{"10.0.0.9"}); err != nil {
		t.Fatalf("connect over the socket: %v", err)
	}
	c.CloseIdleConnections()
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket still there after Close: %v", err)
	}
	if _, err := c.Status(context.Background()); !errors.Is(err, ErrNoRouter) {
		t.Errorf("status with the socket gone: %v, want ErrNoRouter", err)
	}
}

// TestUnixSocketLeftovers: a socket nobody answers on (a router that
// died) is replaced; one a router answers on is refused with advice; a
// file that is not a socket is refused and kept.
func TestUnixSocketLeftovers(t *testing.T) {
	dir := sockDir(t)

	stale := filepath.Join(dir, "stale.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	if _, err := NewClient(UnixScheme + stale).Status(context.Background()); !errors.Is(err, ErrNoRouter) {
		t.Errorf("status on a stale socket: %v, want ErrNoRouter", err)
	}
	startUnix(t, stale, &fakeBackend{})
	if _, err := NewClient(UnixScheme + stale).Status(context.Background()); err != nil {
		t.Errorf("status after replacing the stale socket: %v", err)
	}

	s2, err := NewServer(ServerOptions{Addr: UnixScheme + stale, Backend: &fakeBackend{}})
	if err != nil {
		t.Fatal(err)
	}
	err = s2.Start()
	if !errors.Is(err, syscall.EADDRINUSE) || !strings.Contains(err.Error(), "weave status --http-addr unix://") {
		t.Errorf("second server on a live socket: %v, want EADDRINUSE with advice", err)
	}
	s2.Close(context.Background())
	if _, err := os.Lstat(stale); err != nil {
		t.Errorf("the refused server removed the live socket: %v", err)
	}

	plain := filepath.Join(dir, "plain")
	if err := os.WriteFile(plain, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	s3, err := NewServer(ServerOptions{Addr: UnixScheme + plain, Backend: &fakeBackend{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s3.Start(); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("server on a regular file: %v, want a refusal", err)
	}
	if b, err := os.ReadFile(plain); err != nil || string(b) != "keep" {
		t.Errorf("the regular file was touched: %q %v", b, err)
	}
}

// TestClientBadAddr: a client with an address that is not one says so.
func TestClientBadAddr(t *testing.T) {
	_, err := NewClient("unix://relative.sock").Status(context.Background())
	if err == nil || !strings.Contains(err.Error(), "absolute") {
		t.Fatalf("status with a bad address: %v", err)
	}
}
