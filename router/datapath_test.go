package router

import (
	"bytes"
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"weavemesh.dev/weave/api"
	"weavemesh.dev/weave/mesh/macs"
	"weavemesh.dev/weave/mesh/routes"
	"weavemesh.dev/weave/sleeve"
	"weavemesh.dev/weave/sleeve/sleevetest"
)

// logBuffer collects log lines from several goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *logBuffer) count(msg string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Count(b.buf.String(), "msg=\""+msg)
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// supervised is a sleeve engine over fakes, with its supervisor.
func supervised(t *testing.T) (*sleeve.Engine, *sleevetest.Device, *supervisor, *logBuffer) {
	t.Helper()
	t.Cleanup(func() { goleak.VerifyNone(t) }) // runs last
	dev := sleevetest.NewDevice()
	n := sleevetest.NewNet()
	eng, err := sleeve.New(sleeve.Options{
		Self: 1, Device: dev, Conn: n.Conn(netip.MustParseAddrPort("192.0.2.1:6784")),
		Mesh: meshView{macs.New(0, nil), routes.NewTable(1)}, OverlayMTU: 1376,
		PathMTU: func(netip.Addr) int { return 1472 }, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	eng.Start()
	t.Cleanup(func() { eng.Close() })
	logs := &logBuffer{}
	s := newSupervisor(datapathSleeve, eng, slog.New(slog.NewTextHandler(logs, nil)))
	// settle is long next to the backoff: a retry that fails at once must
	// never pass for a recovery, however loaded the machine.
	s.min, s.max, s.settle = 5*time.Millisecond, 20*time.Millisecond, time.Second
	s.start()
	t.Cleanup(s.close)
	return eng, dev, s, logs
}

// A read error in the sleeve is not silent: the supervisor marks the
// connections failed, restarts the pipeline with backoff until it holds,
// logs the failure once however many retries it takes, and counts it.
func TestSupervisorRestartsFailedDatapath(t *testing.T) {
	eng, dev, s, logs := supervised(t)
	conns := func() []api.Connection {
		c := []api.Connection{
			{Peer: "a", Datapath: datapathSleeve, State: ConnEstablished},
			{Peer: "b", Datapath: datapathSleeve, State: ConnRelayed, Via: "c"},
			{Peer: "d", Datapath: "fastdp", State: ConnEstablished},
		}
		s.markFailed(c)
		return c
	}

	// The first read fails, and the first two retries fail at once.
	injected := errors.New("injected TAP failure")
	for range 3 {
		dev.FailRead(injected)
	}
	waitUntil(t, "the failure to show", func() bool { return s.failure() != nil })
	if !errors.Is(s.failure(), injected) {
		t.Fatalf("failure = %v, want the injected error", s.failure())
	}
	for _, c := range conns()[:2] {
		if c.State != ConnFailed || c.Via != "" || !strings.Contains(c.Reason, "injected TAP failure") {
			t.Errorf("connection %s during the failure: %+v; want failed, with the error", c.Peer, c)
		}
	}
	if c := conns()[2]; c.State != ConnEstablished {
		t.Errorf("another datapath's connection marked: %+v", c)
	}
	if got := s.counts()[datapathSleeve]; got != 1 {
		t.Errorf("failures = %d, want 1", got)
	}

	waitUntil(t, "the datapath to recover", func() bool { return s.failure() == nil })
	if r := s.restarts.Load(); r != 3 {
		t.Errorf("%d restarts, want 3 (two that failed at once, one that held)", r)
	}
	if got := s.counts()[datapathSleeve]; got != 1 {
		t.Errorf("failures = %d after the retries, want 1", got)
	}
	if n, r := logs.count("datapath failed"), logs.count("datapath recovered"); n != 1 || r != 1 {
		t.Errorf("logged %d failures and %d recoveries, want one each:\n%s", n, r, logs.String())
	}
	if c := conns(); c[0].State != ConnEstablished || c[1].State != ConnRelayed || c[1].Via != "c" {
		t.Errorf("connections after recovery: %+v", c)
	}
	// The send pipeline reads again.
	before := eng.Stats().TxFrames
	dev.In <- append(make([]byte, 10), bytes.Repeat([]byte{0xff}, 20)...)
	waitUntil(t, "the restarted pipeline to read a frame", func() bool { return eng.Stats().TxFrames > before })

	// A later failure is a new one.
	dev.FailRead(errors.New("again"))
	waitUntil(t, "the second failure to be counted", func() bool { return s.counts()[datapathSleeve] == 2 })
	waitUntil(t, "the second recovery", func() bool { return s.failure() == nil })
	if n := logs.count("datapath failed"); n != 2 {
		t.Errorf("logged %d failures, want 2", n)
	}
}

// Closing the engine is not a failure: the supervisor ends quietly.
func TestSupervisorEndsWhenEngineCloses(t *testing.T) {
	eng, _, s, logs := supervised(t)
	if err := eng.Close(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("supervisor still running after the engine closed")
	}
	if s.failure() != nil || s.counts() != nil || logs.count("datapath failed") != 0 {
		t.Fatalf("a close taken for a failure: %v %v\n%s", s.failure(), s.counts(), logs.String())
	}
}

// Before the datapath runs (the router starting), nothing is marked.
func TestSupervisorNil(t *testing.T) {
	var s *supervisor
	c := []api.Connection{{Datapath: datapathSleeve, State: ConnEstablished}}
	s.markFailed(c)
	if c[0].State != ConnEstablished || s.counts() != nil {
		t.Fatal("a nil supervisor marked connections or counted")
	}
}
