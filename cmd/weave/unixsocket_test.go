package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"weavemesh.dev/weave/api"
)

// TestCLIUnixSocket: the CLI reaches a router whose API is a unix socket,
// from --http-addr or WEAVE_HTTP_ADDR, and refuses a socket address that
// cannot be one.
func TestCLIUnixSocket(t *testing.T) {
	dir, err := os.MkdirTemp("", "wvcli")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	addr := api.UnixScheme + filepath.Join(dir, "weave.sock")
	f := &fakeBackend{status: goldenStatus, peers: goldenPeers, conns: goldenConns}
	s, err := api.NewServer(api.ServerOptions{Addr: addr, Backend: f})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Close(ctx)
	})

	for _, tc := range []struct {
		name string
		env  string
		args []string
		code int
		want string // in stdout, or in stderr when code != 0
	}{
		{name: "flag", args: []string{"--http-addr", addr, "status"}, want: "Name: aa:bb:cc:dd:ee:ff (host1)"},
		{name: "env", env: addr, args: []string{"status", "connections"}, want: "established"},
		{name: "connect", env: addr, args: []string{"connect", "10.0.0.7"}},
		{name: "relative path", args: []string{"--http-addr", "unix://weave.sock", "status"}, code: 1, want: "want an absolute socket path"},
		{name: "no router", args: []string{"--http-addr", api.UnixScheme + filepath.Join(dir, "none.sock"), "status"}, code: 1, want: "no router is running on unix://"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, stdout, stderr := testApp(t)
			a.getenv = func(k string) string {
				if k == "WEAVE_HTTP_ADDR" {
					return tc.env
				}
				return ""
			}
			code := a.run(context.Background(), tc.args)
			if code != tc.code {
				t.Fatalf("exit code %d, want %d; stderr:\n%s", code, tc.code, stderr)
			}
			out := stdout.String()
			if tc.code != 0 {
				out = stderr.String()
			}
			if !strings.Contains(out, tc.want) {
				t.Errorf("output %q lacks %q", out, tc.want)
			}
		})
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.connected) != 1 || f.connected[0] != "10.0.0.7" {
		t.Errorf("connect over the socket reached the backend with %q", f.connected)
	}
}
