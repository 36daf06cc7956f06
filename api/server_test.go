package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fakeBackend answers from fixed values and records what it was asked.
type fakeBackend struct {
	mu sync.Mutex // guards all fields
	// err, when set, is returned by every method.
	err       error
	status    Status
	peers     []Peer
	conns     []Connection
	endpoints []Endpoint
	// recorded calls
	connected []string
	forgotten []string
	attached  AttachRequest
	detached  DetachRequest
	stops     int
	// block, when set, makes Status wait for it to close or ctx to end;
	// entered receives once Status is waiting.
	block   chan struct{}
	entered chan struct{}
	left    bool // Status stopped waiting
}

func (f *fakeBackend) fail() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

func (f *fakeBackend) Status(ctx context.Context) (Status, error) {
	f.mu.Lock()
	block, entered := f.block, f.entered
	f.mu.Unlock()
	if block != nil {
		entered <- struct{}{}
		defer func() {
			f.mu.Lock()
			f.left = true
			f.mu.Unlock()
		}()
		select {
		case <-block:
		case <-ctx.Done():
			return Status{}, ctx.Err()
		}
	}
	if err := f.fail(); err != nil {
		return Status{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.status, nil
}

func (f *fakeBackend) Peers(context.Context) ([]Peer, error) {
	if err := f.fail(); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.peers, nil
}

func (f *fakeBackend) Connections(context.Context) ([]Connection, error) {
	if err := f.fail(); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.conns, nil
}

func (f *fakeBackend) Connect(_ context.Context, peers []string) error {
	if err := f.fail(); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.connected = append(f.connected, peers...)
	return nil
}

func (f *fakeBackend) Forget(_ context.Context, peers []string) error {
	if err := f.fail(); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.forgotten = append(f.forgotten, peers...)
	return nil
}

func (f *fakeBackend) Attach(_ context.Context, req AttachRequest) (Endpoint, error) {
	if err := f.fail(); err != nil {
		return Endpoint{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.attached = req
	return Endpoint{ID: "ep1", Netns: req.Netns, HostIface: "vwe01020304", Iface: "ethwe",
		MAC: "0a:58:0a:20:01:05", CIDRs: req.CIDRs, MTU: 1376, Name: req.Name}, nil
}

func (f *fakeBackend) Detach(_ context.Context, req DetachRequest) (Endpoint, error) {
	if err := f.fail(); err != nil {
		return Endpoint{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.detached = req
	return Endpoint{ID: "ep1", Netns: req.Netns}, nil
}

func (f *fakeBackend) Endpoints(context.Context) ([]Endpoint, error) {
	if err := f.fail(); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.endpoints, nil
}

func (f *fakeBackend) Stop(context.Context) error {
	if err := f.fail(); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stops++
	return nil
}

var testVersion = Version{Version: "1.2.3", ProtoMin: 1, ProtoMax: 1, Go: "go1.26"}

// startServer starts a server over b on a free loopback port and returns it
// with a client for it; both are closed when the test ends.
func startServer(t *testing.T, b Backend, opts ...func(*ServerOptions)) (*Server, *Client) {
	t.Helper()
	o := ServerOptions{Addr: "127.0.0.1:0", Backend: b, Version: testVersion}
	for _, f := range opts {
		f(&o)
	}
	s, err := NewServer(o)
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	if err := s.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	c := NewClient(s.Addr())
	t.Cleanup(func() {
		c.CloseIdleConnections()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s, c
}

func TestClientRoundTrip(t *testing.T) {
	since := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	f := &fakeBackend{
		status: Status{Name: "aa:bb:cc:dd:ee:ff", Nickname: "host1", Version: "1.2.3", Ready: true,
			Port: 6783, DataPort: 6784, OverlayMTU: 1376, Peers: 3,
			Connections: map[string]int{"established": 2},
			Datapaths:   map[string]int{"sleeve": 2},
			Drops:       map[string]uint64{"no-route": 7}},
		peers: []Peer{{Name: "aa:bb:cc:dd:ee:ff", Nickname: "host1", Address: "10.0.0.1:6783",
			DataAddr: "10.0.0.1:6784", State: "alive", Since: since, Version: "1.2.3", ProtoMin: 1, ProtoMax: 1, Self: true}},
		conns: []Connection{{Peer: "11:22:33:44:55:66", Nickname: "host2", Address: "10.0.0.2:6784",
			State: "relayed", Via: "aa:aa:aa:aa:aa:aa", Datapath: "sleeve", MTU: 1376, RTTMillis: 0.5}},
		endpoints: []Endpoint{{ID: "ep1", Netns: "/var/run/netns/a", HostIface: "vwe01020304", Iface: "ethwe",
			MAC: "0a:58:0a:20:01:05", CIDRs: []string{"10.32.1.5/12"}, MTU: 1376}},
	}
	_, c := startServer(t, f)
	ctx := context.Background()

	st, err := c.Status(ctx)
	if err != nil || !reflect.DeepEqual(st, f.status) {
		t.Errorf("Status = %+v, %v; want %+v", st, err, f.status)
	}
	ps, err := c.Peers(ctx)
	if err != nil || !reflect.DeepEqual(ps, f.peers) {
		t.Errorf("Peers = %+v, %v; want %+v", ps, err, f.peers)
	}
	cs, err := c.Connections(ctx)
	if err != nil || !reflect.DeepEqual(cs, f.conns) {
		t.Errorf("Connections = %+v, %v; want %+v", cs, err, f.conns)
	}
	es, err := c.Endpoints(ctx)
	if err != nil || !reflect.DeepEqual(es, f.endpoints) {
		t.Errorf("Endpoints = %+v, %v; want %+v", es, err, f.endpoints)
	}
	v, err := c.Version(ctx)
	if err != nil || v != testVersion {
		t.Errorf("Version = %+v, %v; want %+v", v, err, testVersion)
	}
	if err := c.Connect(ctx, []string{"10.0.0.2", "10.0.0.3:6783"}); err != nil {
		t.Errorf("Connect: %v", err)
	}
	if err := c.Forget(ctx, []string{"10.0.0.3:6783"}); err != nil {
		t.Errorf("Forget: %v", err)
	}
	areq := AttachRequest{Netns: "/var/run/netns/a", CIDRs: []string{"10.32.1.5/12"}, Name: "web"}
	ep, err := c.Attach(ctx, areq)
	if err != nil || ep.HostIface != "vwe01020304" || ep.Name != "web" {
		t.Errorf("Attach = %+v, %v", ep, err)
	}
	ep, err = c.Detach(ctx, DetachRequest{Netns: "/var/run/netns/a"})
	if err != nil || ep.ID != "ep1" {
		t.Errorf("Detach = %+v, %v", ep, err)
	}
	if err := c.Stop(ctx); err != nil {
		t.Errorf("Stop: %v", err)
	}

	f.mu.Lock()
	defer f.mu.Unlock()
	if want := []string{"10.0.0.2", "10.0.0.3:6783"}; !reflect.DeepEqual(f.connected, want) {
		t.Errorf("backend connected %v, want %v", f.connected, want)
	}
	if want := []string{"10.0.0.3:6783"}; !reflect.DeepEqual(f.forgotten, want) {
		t.Errorf("backend forgot %v, want %v", f.forgotten, want)
	}
	if !reflect.DeepEqual(f.attached, areq) {
		t.Errorf("backend attach %+v, want %+v", f.attached, areq)
	}
	if f.detached.Netns != "/var/run/netns/a" {
		t.Errorf("backend detach %+v", f.detached)
	}
	if f.stops != 1 {
		t.Errorf("backend stopped %d times, want 1", f.stops)
	}
}

// TestEmptyListsAreArrays: a nil slice from the backend is [] on the wire,
// so clients in other languages need not handle null.
func TestEmptyListsAreArrays(t *testing.T) {
	s, _ := startServer(t, &fakeBackend{})
	for _, path := range []string{"/status/peers", "/status/connections", "/endpoints"} {
		code, _, body := rawRequest(t, s.Addr(), "GET", path, "", "")
		if code != 200 || strings.TrimSpace(body) != "[]" {
			t.Errorf("GET %s = %d %q, want 200 []", path, code, body)
		}
	}
}

// calls runs every client method once, for the error table.
var calls = map[string]func(context.Context, *Client) error{
	"status": func(ctx context.Context, c *Client) error { _, err := c.Status(ctx); return err },
	"peers":  func(ctx context.Context, c *Client) error { _, err := c.Peers(ctx); return err },
	"connections": func(ctx context.Context, c *Client) error {
		_, err := c.Connections(ctx)
		return err
	},
	"connect": func(ctx context.Context, c *Client) error { return c.Connect(ctx, []string{"h"}) },
	"forget":  func(ctx context.Context, c *Client) error { return c.Forget(ctx, []string{"h"}) },
	"attach": func(ctx context.Context, c *Client) error {
		_, err := c.Attach(ctx, AttachRequest{Netns: "/proc/1/ns/net", CIDRs: []string{"10.0.0.1/8"}})
		return err
	},
	"detach": func(ctx context.Context, c *Client) error {
		_, err := c.Detach(ctx, DetachRequest{Netns: "/proc/1/ns/net"})
		return err
	},
	"endpoints": func(ctx context.Context, c *Client) error { _, err := c.Endpoints(ctx); return err },
	"stop":      func(ctx context.Context, c *Client) error { return c.Stop(ctx) },
}

func TestBackendErrors(t *testing.T) {
	errs := []struct {
		name    string
		err     error
		code    int
		kind    error // the errors.Is kind the client error matches
		message string
	}{
		{"bad request", BadRequest("cidr %s overlaps", "10.0.0.0/8"), 400, ErrBadRequest, "cidr 10.0.0.0/8 overlaps"},
		{"not found", NotFound("no endpoint in %s", "/x"), 404, ErrNotFound, "no endpoint in /x"},
		{"conflict", Conflict("already attached"), 409, ErrConflict, "already attached"},
		{"not ready", NotReady("router is starting"), 503, ErrNotReady, "router is starting"},
		{"wrapped sentinel", fmt.Errorf("peer x: %w", ErrNotFound), 404, ErrNotFound, "peer x: not found"},
		{"wrapped status error", fmt.Errorf("attach: %w", Conflict("busy")), 409, ErrConflict, "attach: busy"},
		{"deadline", fmt.Errorf("gossip: %w", context.DeadlineExceeded), 503, ErrNotReady, "gossip: context deadline exceeded"},
		{"internal", errors.New("netlink: permission denied"), 500, nil, "netlink: permission denied"},
	}
	f := &fakeBackend{}
	_, c := startServer(t, f)
	for _, e := range errs {
		for name, call := range calls {
			t.Run(e.name+"/"+name, func(t *testing.T) {
				f.mu.Lock()
				f.err = e.err
				f.mu.Unlock()
				err := call(context.Background(), c)
				var se *StatusError
				if !errors.As(err, &se) {
					t.Fatalf("error %v (%T) is not a *StatusError", err, err)
				}
				if se.Code != e.code || err.Error() != e.message {
					t.Errorf("got %d %q, want %d %q", se.Code, err.Error(), e.code, e.message)
				}
				if e.kind != nil && !errors.Is(err, e.kind) {
					t.Errorf("errors.Is(%v, %v) = false", err, e.kind)
				}
				for _, other := range []error{ErrBadRequest, ErrNotFound, ErrConflict, ErrNotReady} {
					if other != e.kind && errors.Is(err, other) {
						t.Errorf("errors.Is(%v, %v) = true", err, other)
					}
				}
			})
		}
	}
}

// rawRequest sends one request by hand so tests control every byte.
func rawRequest(t *testing.T, addr, method, path, contentType, body string, hdr ...string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+addr+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i] == "Host" {
			req.Host = hdr[i+1]
			continue
		}
		req.Header.Set(hdr[i], hdr[i+1])
	}
	tr := &http.Transport{Proxy: nil}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func TestRequests(t *testing.T) {
	const js = "application/json"
	huge := `{"peers":["` + strings.Repeat("a", MaxRequestBytes) + `"]}`
	tests := []struct {
		name        string
		method      string
		path        string
		contentType string
		body        string
		hdr         []string
		code        int
		errContains string // "" for success
	}{
		{"connect ok", "POST", "/connect", js, `{"peers":["h1","h2:6783"]}`, nil, 200, ""},
		{"content type with charset", "POST", "/connect", "application/json; charset=utf-8", `{"peers":["h1"]}`, nil, 200, ""},
		{"unknown fields tolerated", "POST", "/connect", js, `{"peers":["h1"],"future":{"x":1}}`, nil, 200, ""},
		{"trailing whitespace", "POST", "/forget", js, "{\"peers\":[\"h1\"]}\n\t ", nil, 200, ""},
		{"attach ok", "POST", "/attach", js, `{"netns":"/proc/1/ns/net","cidrs":["10.32.1.5/12"]}`, nil, 200, ""},
		{"detach ok", "POST", "/detach", js, `{"netns":"/proc/1/ns/net"}`, nil, 200, ""},
		{"stop ok", "POST", "/stop", js, ``, nil, 202, ""},
		{"malformed", "POST", "/connect", js, `{"peers":[`, nil, 400, "truncated JSON"},
		{"syntax", "POST", "/connect", js, `{"peers":]`, nil, 400, "malformed JSON"},
		{"empty body", "POST", "/connect", js, ``, nil, 400, "request body is empty"},
		{"trailing value", "POST", "/connect", js, `{"peers":["a"]}{}`, nil, 400, "data after the JSON value"},
		{"trailing garbage", "POST", "/connect", js, `{"peers":["a"]} x`, nil, 400, "malformed JSON"},
		{"wrong top type", "POST", "/connect", js, `["a"]`, nil, 400, "want an object"},
		{"wrong field type", "POST", "/connect", js, `{"peers":"a"}`, nil, 400, `field "peers" is a JSON string; want an array`},
		{"null body", "POST", "/connect", js, `null`, nil, 400, "at least one peer"},
		{"no peers", "POST", "/connect", js, `{"peers":[]}`, nil, 400, "at least one peer"},
		{"blank peer", "POST", "/forget", js, `{"peers":[" "]}`, nil, 400, "empty peer address"},
		{"attach no netns", "POST", "/attach", js, `{"cidrs":["10.0.0.1/8"]}`, nil, 400, "netns"},
		{"attach relative netns", "POST", "/attach", js, `{"netns":"ns1","cidrs":["10.0.0.1/8"]}`, nil, 400, "absolute path"},
		{"attach bad net item", "POST", "/attach", js, `{"netns":"/proc/1/ns/net","cidrs":["net:10.32.0.0"]}`, nil, 400, "net:CIDR"},
		{"attach bad cidr", "POST", "/attach", js, `{"netns":"/proc/1/ns/net","cidrs":["10.0.0.1"]}`, nil, 400, `"10.0.0.1" is not an address with prefix length`},
		{"detach no netns", "POST", "/detach", js, `{}`, nil, 400, "netns"},
		{"oversized", "POST", "/connect", js, huge, nil, 413, "larger than 1048576 bytes"},
		{"no content type", "POST", "/connect", "", `{"peers":["h1"]}`, nil, 415, "Content-Type: application/json"},
		{"form content type", "POST", "/stop", "application/x-www-form-urlencoded", `a=b`, nil, 415, "Content-Type"},
		{"text content type", "POST", "/attach", "text/plain", `{}`, nil, 415, "Content-Type"},
		{"unknown path", "GET", "/nope", "", "", nil, 404, "no API endpoint GET /nope"},
		{"wrong method", "GET", "/connect", "", "", nil, 405, "method GET is not allowed on /connect; use POST"},
		{"wrong method on GET route", "POST", "/status", js, `{}`, nil, 405, "use GET"},
		{"foreign host", "GET", "/status", "", "", []string{"Host", "evil.example:6784"}, 403, `host "evil.example:6784" is not allowed`},
		{"localhost host", "GET", "/status", "", "", []string{"Host", "localhost:6784"}, 200, ""},
		{"ipv6 host", "GET", "/status", "", "", []string{"Host", "[::1]:6784"}, 200, ""},
		{"version", "GET", "/version", "", "", nil, 200, ""},
	}
	s, _ := startServer(t, &fakeBackend{})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, hdr, body := rawRequest(t, s.Addr(), tc.method, tc.path, tc.contentType, tc.body, tc.hdr...)
			if code != tc.code {
				t.Errorf("status %d, want %d (body %q)", code, tc.code, body)
			}
			if ct := hdr.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q, want application/json", ct)
			}
			if tc.errContains == "" {
				if !json.Valid([]byte(body)) {
					t.Errorf("body %q is not JSON", body)
				}
				return
			}
			var e Error
			if err := json.Unmarshal([]byte(body), &e); err != nil {
				t.Fatalf("error body %q is not an api.Error: %v", body, err)
			}
			if !strings.Contains(e.Error, tc.errContains) {
				t.Errorf("error %q does not contain %q", e.Error, tc.errContains)
			}
		})
	}
}

func TestClientNoRouter(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c := NewClient(addr)
	defer c.CloseIdleConnections()
	for name, call := range calls {
		err := call(context.Background(), c)
		want := "no router is running on " + addr + "; start one with weave launch"
		if err == nil || err.Error() != want {
			t.Errorf("%s: error %v, want %q", name, err, want)
		}
		if !errors.Is(err, ErrNoRouter) || !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("%s: %v does not match ErrNoRouter and ECONNREFUSED", name, err)
		}
	}
}

// TestClientForeignServer: something that is not a weave router answers.
func TestClientForeignServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/version" {
			_, _ = io.WriteString(w, "<html>hello</html>")
			return
		}
		http.Error(w, "nothing here", http.StatusNotFound)
	})}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close(); <-done })
	c := NewClient(ln.Addr().String())
	defer c.CloseIdleConnections()
	_, err = c.Status(context.Background())
	if err == nil || err.Error() != "router answered 404 Not Found: nothing here" {
		t.Errorf("Status error %v", err)
	}
	_, err = c.Version(context.Background())
	if err == nil || !strings.Contains(err.Error(), "is it a weave router?") {
		t.Errorf("Version error %v", err)
	}
}

func TestStartAddrInUse(t *testing.T) {
	s1, _ := startServer(t, &fakeBackend{})
	s2, err := NewServer(ServerOptions{Addr: s1.Addr(), Backend: &fakeBackend{}})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close(context.Background())
	err = s2.Start()
	_, port, _ := net.SplitHostPort(s1.Addr())
	want := "port " + port + " is in use; is a router already running? try weave status --http-addr " + s1.Addr()
	if err == nil || err.Error() != want {
		t.Errorf("Start error %v, want %q", err, want)
	}
	if !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("%v does not match EADDRINUSE", err)
	}
	if got := (&addrInUseError{addr: DefaultAddr}).Error(); got != "port 6784 is in use; is a router already running? try weave status" {
		t.Errorf("default addr message %q", got)
	}
}

func TestNewServerValidates(t *testing.T) {
	tests := []struct {
		o    ServerOptions
		want string
	}{
		{ServerOptions{}, "ServerOptions.Backend is required"},
		{ServerOptions{Backend: &fakeBackend{}, Addr: "6784"}, "ServerOptions.Addr"},
	}
	for _, tc := range tests {
		_, err := NewServer(tc.o)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewServer(%+v) = %v, want error containing %q", tc.o, err, tc.want)
		}
	}
	s, err := NewServer(ServerOptions{Backend: &fakeBackend{}})
	if err != nil {
		t.Fatal(err)
	}
	if s.Addr() != DefaultAddr {
		t.Errorf("default Addr %q", s.Addr())
	}
}

func TestCloseLifecycle(t *testing.T) {
	ctx := context.Background()
	// Close before Start, twice.
	s, err := NewServer(ServerOptions{Addr: "127.0.0.1:0", Backend: &fakeBackend{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(ctx); err != nil {
		t.Errorf("Close before Start: %v", err)
	}
	if err := s.Close(ctx); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := s.Start(); err == nil {
		t.Error("Start after Close succeeded")
	}

	// Start twice, Close twice; the port is free afterwards.
	s, err = NewServer(ServerOptions{Addr: "127.0.0.1:0", Backend: &fakeBackend{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err == nil {
		t.Error("second Start succeeded")
	}
	addr := s.Addr()
	if err := s.Close(ctx); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := s.Close(ctx); err != nil {
		t.Errorf("second Close: %v", err)
	}
	c := NewClient(addr)
	if _, err := c.Status(ctx); !errors.Is(err, ErrNoRouter) {
		t.Errorf("Status after Close: %v, want ErrNoRouter", err)
	}
}

// TestCloseCutsOffStuckRequest: a request that outlives Close's context is
// cut off and Close still returns, with no goroutine left (goleak checks).
func TestCloseCutsOffStuckRequest(t *testing.T) {
	f := &fakeBackend{block: make(chan struct{}), entered: make(chan struct{}, 1)}
	defer close(f.block)
	s, err := NewServer(ServerOptions{Addr: "127.0.0.1:0", Backend: f})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	c := NewClient(s.Addr())
	defer c.CloseIdleConnections()
	errc := make(chan error, 1)
	go func() { _, err := c.Status(context.Background()); errc <- err }()
	<-f.entered // the request is in flight
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := s.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Close = %v, want deadline exceeded", err)
	}
	f.mu.Lock()
	left := f.left
	f.mu.Unlock()
	if !left {
		t.Error("Close returned while a backend call was still running")
	}
	if err := <-errc; err == nil {
		t.Error("stuck request succeeded")
	}
}

func TestHandleExtension(t *testing.T) {
	type dnsReq struct {
		Name string `json:"name"`
	}
	s, err := NewServer(ServerOptions{Addr: "127.0.0.1:0", Backend: &fakeBackend{}})
	if err != nil {
		t.Fatal(err)
	}
	s.Handle("POST /dns", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req dnsReq
		if err := DecodeRequest(w, r, &req); err != nil {
			WriteError(w, err)
			return
		}
		if req.Name == "taken" {
			WriteError(w, Conflict("name %s is taken", req.Name))
			return
		}
		WriteJSON(w, http.StatusCreated, req)
	}))
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	code, _, body := rawRequest(t, s.Addr(), "POST", "/dns", "application/json", `{"name":"web"}`)
	if code != 201 || strings.TrimSpace(body) != `{"name":"web"}` {
		t.Errorf("POST /dns = %d %q", code, body)
	}
	code, _, body = rawRequest(t, s.Addr(), "POST", "/dns", "application/json", `{"name":"taken"}`)
	if code != 409 || !strings.Contains(body, "name taken is taken") {
		t.Errorf("POST /dns taken = %d %q", code, body)
	}
	code, _, _ = rawRequest(t, s.Addr(), "POST", "/dns", "text/plain", `{"name":"web"}`)
	if code != 415 {
		t.Errorf("extension route skipped the content type check: %d", code)
	}
}

// syncBuffer is a bytes.Buffer safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestLogging(t *testing.T) {
	var buf syncBuffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	f := &fakeBackend{err: errors.New("disk on fire")}
	_, c := startServer(t, f, func(o *ServerOptions) { o.Logger = log })
	_, _ = c.Status(context.Background())
	_ = c.Connect(context.Background(), []string{"x"})
	out := buf.String()
	for _, want := range []string{
		`level=DEBUG msg="http request" method=GET path=/status status=500`,
		`err="disk on fire"`,
		`level=ERROR msg="HTTP API request failed" method=POST path=/connect status=500 err="disk on fire"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
}

// FuzzDecodeRequest feeds arbitrary bodies to every request decoder: they
// must never panic, and whatever they accept must survive a round trip.
func FuzzDecodeRequest(f *testing.F) {
	for _, s := range []string{
		`{"peers":["h1","h2:6783"]}`,
		`{"netns":"/proc/1/ns/net","cidrs":["10.32.1.5/12"],"name":"web"}`,
		`{"netns":"/var/run/netns/a"}`,
		`{}`, `null`, `[]`, `{"peers":[`, `{"a":1}{}`, "\xff\xfe", `{"peers":"x"}`,
		`{"cidrs":[1,2]}`, `{"netns":"\u0000"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		decode := func(v interface{ Validate() error }) {
			r, err := http.NewRequest("POST", "/", bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			err = DecodeRequest(discardWriter{}, r, v)
			if err != nil {
				if c := StatusCode(err); c != 400 && c != 413 {
					t.Fatalf("decode error %v has status %d", err, c)
				}
				return
			}
			_ = v.Validate()
			if _, err := json.Marshal(v); err != nil {
				t.Fatalf("accepted %q but cannot re-encode: %v", body, err)
			}
		}
		decode(&PeersRequest{})
		decode(&AttachRequest{})
		decode(&DetachRequest{})
	})
}

type discardWriter struct{}

func (discardWriter) Header() http.Header         { return http.Header{} }
func (discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (discardWriter) WriteHeader(int)             {}
