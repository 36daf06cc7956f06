package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"weavemesh.dev/weave/api"
	"weavemesh.dev/weave/router"
)

// fakeRouterEnv makes the test binary act as "weave" with a fake router, so
// launch can start it as its background child.
const fakeRouterEnv = "WEAVE_TEST_FAKE_ROUTER"

func TestMain(m *testing.M) {
	if os.Getenv(fakeRouterEnv) == "1" {
		a := newApp()
		a.runRouter = fakeRouter
		os.Exit(a.run(context.Background(), os.Args[1:]))
	}
	os.Exit(m.Run())
}

// Peers that change how the fake router behaves.
const (
	peerFail = "fail.example" // exit with an error before serving
	peerSlow = "slow.example" // serve but never become ready
)

// fakeRouter serves the API over a fakeBackend on cfg.HTTPAddr until ctx
// ends or the API asks it to stop. It records its PID in the data dir.
func fakeRouter(ctx context.Context, cfg router.Config) error {
	// Never outlive a test run, whatever happens to the test.
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := os.WriteFile(filepath.Join(cfg.DataDir, "fake.pid"), []byte(strconv.Itoa(os.Getpid())), 0o600); err != nil {
		return err
	}
	cfg.Logger.Info("fake router up", "name", cfg.Name.String(), "peers", strings.Join(cfg.Peers, ","))
	if contains(cfg.Peers, peerFail) {
		fmt.Fprintln(os.Stderr, "fake router: cannot join: boom")
		return errors.New("boom")
	}
	b := &fakeBackend{
		status: api.Status{Name: cfg.Name.String(), Nickname: cfg.Nickname, Version: cfg.Version,
			Ready: !contains(cfg.Peers, peerSlow), Port: cfg.Port, OverlayMTU: cfg.MTU},
		onStop: cancel,
	}
	srv, err := api.NewServer(api.ServerOptions{Addr: cfg.HTTPAddr, Backend: b, Logger: cfg.Logger})
	if err != nil {
		return err
	}
	if err := srv.Start(); err != nil {
		return err
	}
	<-ctx.Done()
	return srv.Close(context.Background())
}

// fakeBackend answers from fixed values and records what it was asked.
type fakeBackend struct {
	mu sync.Mutex // guards all fields
	// err, when set, is returned by every method.
	err       error
	status    api.Status
	peers     []api.Peer
	conns     []api.Connection
	endpoints []api.Endpoint
	connected []string
	forgotten []string
	attached  api.AttachRequest
	detached  api.DetachRequest
	stops     int
	onStop    func()
}

func (f *fakeBackend) Status(context.Context) (api.Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.status, f.err
}

func (f *fakeBackend) Peers(context.Context) ([]api.Peer, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.peers, f.err
}

func (f *fakeBackend) Connections(context.Context) ([]api.Connection, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.conns, f.err
}

func (f *fakeBackend) Connect(_ context.Context, peers []string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.connected = append(f.connected, peers...)
	return f.err
}

func (f *fakeBackend) Forget(_ context.Context, peers []string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.forgotten = append(f.forgotten, peers...)
	return f.err
}

func (f *fakeBackend) Attach(_ context.Context, req api.AttachRequest) (api.Endpoint, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.attached = req
	return api.Endpoint{ID: "ep1", Netns: req.Netns, HostIface: "vwe01020304", Iface: "ethwe",
		MAC: "0a:58:0a:20:01:05", CIDRs: req.CIDRs, MTU: 1376, Name: req.Name}, f.err
}

func (f *fakeBackend) Detach(_ context.Context, req api.DetachRequest) (api.Endpoint, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.detached = req
	if f.err != nil {
		return api.Endpoint{}, f.err
	}
	return api.Endpoint{ID: "ep1", Netns: req.Netns, HostIface: "vwe01020304",
		MAC: "0a:58:0a:20:01:05", CIDRs: []string{"10.32.1.5/12"}}, nil
}

func (f *fakeBackend) Endpoints(context.Context) ([]api.Endpoint, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.endpoints, f.err
}

func (f *fakeBackend) Stop(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	f.stops++
	if f.onStop != nil {
		f.onStop()
	}
	return nil
}

// testApp is an app writing to buffers, blind to the environment, with
// netns names and PIDs resolved under a temporary directory.
func testApp(t *testing.T) (*app, *bytes.Buffer, *bytes.Buffer) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	a := newApp()
	a.stdout, a.stderr = &stdout, &stderr
	a.getenv = func(string) string { return "" }
	a.environ = func() []string { return nil }
	a.now = func() time.Time { return testNow }
	a.runRouter = func(context.Context, router.Config) error {
		t.Error("router.Run called")
		return nil
	}
	a.executable = func() (string, error) { return "", errors.New("no executable in this test") }
	dir := t.TempDir()
	a.netnsDir = filepath.Join(dir, "netns")
	a.procDir = filepath.Join(dir, "proc")
	a.pollInterval = 10 * time.Millisecond
	a.launchTimeout = 20 * time.Second
	a.stopTimeout = 5 * time.Second
	return a, &stdout, &stderr
}

var testNow = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// startAPI serves b on a free loopback port for the length of the test.
func startAPI(t *testing.T, b api.Backend) string {
	t.Helper()
	s, err := api.NewServer(api.ServerOptions{Addr: "127.0.0.1:0", Backend: b,
		Version: api.Version{Version: "1.2.3", ProtoMin: 1, ProtoMax: 1, Go: "go1.26"}})
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
	return s.Addr()
}

// freeAddr is a loopback address nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// reap waits for our child pid to exit and collects it, killing it if it
// does not exit in time.
func reap(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	killed := false
	for {
		var ws syscall.WaitStatus
		got, err := syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
		if got == pid || errors.Is(err, syscall.ECHILD) {
			return
		}
		if time.Now().After(deadline) {
			if killed {
				t.Errorf("child %d did not exit after SIGKILL", pid)
				return
			}
			t.Errorf("child %d still running; killing it", pid)
			_ = syscall.Kill(pid, syscall.SIGKILL)
			killed = true
			deadline = time.Now().Add(10 * time.Second)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// readPID waits for the fake router's PID file in dir.
func readPID(t *testing.T, dir string) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := os.ReadFile(filepath.Join(dir, "fake.pid"))
		if err == nil {
			if pid, err := strconv.Atoi(string(b)); err == nil {
				return pid
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no fake.pid in %s", dir)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
