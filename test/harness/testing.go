package harness

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"
)

// RequireRoot skips the test unless it runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: network namespaces, veth, bridges and nftables; run the tests as root")
	}
}

// NewT builds a cluster for a test: it skips when not root, fails the test
// on error, and on cleanup logs every router's output if the test failed,
// then removes everything.
func NewT(t testing.TB, opts Options) *Cluster {
	t.Helper()
	RequireRoot(t)
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*opts.readyTimeout())
	defer cancel()
	cl, err := New(ctx, opts)
	if err != nil {
		t.Fatalf("create cluster: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			cl.LogRouters(t)
		}
		// Logging through t after the test ends panics; close quietly.
		cl.log = slog.New(slog.DiscardHandler)
		if err := cl.Close(); err != nil {
			t.Errorf("cluster cleanup: %v", err)
		}
	})
	return cl
}

func (o Options) readyTimeout() time.Duration {
	if o.ReadyTimeout > 0 {
		return o.ReadyTimeout
	}
	return DefaultReadyTimeout
}

// LogRouters writes every host's router log into the test log.
func (cl *Cluster) LogRouters(t testing.TB) {
	t.Helper()
	for _, h := range cl.Hosts {
		h.LogRouter(t)
	}
}

// LogRouter writes this host's router log into the test log.
func (h *Host) LogRouter(t testing.TB) {
	t.Helper()
	if log := h.RouterLog(); log != "" {
		t.Logf("---- router log of %s (%s) ----\n%s", h.Name, h.RouterLogPath(), log)
	}
}

// testWriter sends slog output to t.Log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
