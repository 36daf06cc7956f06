package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"time"
)

// Client talks to a router's HTTP API. Its methods mirror the endpoints;
// it also satisfies Backend. Safe for concurrent use.
type Client struct {
	addr  string
	base  string
	hc    *http.Client
	token string // sent as a bearer token when set
	// addrErr is why addr is not an API address, returned by every call.
	addrErr error
}

// Client limits.
const (
	// DefaultTimeout bounds each request whose context has no earlier deadline.
	DefaultTimeout = 30 * time.Second
	dialTimeout    = 5 * time.Second
	// maxResponseBytes bounds what the client reads of an answer.
	maxResponseBytes = 64 << 20
)

// NewClient returns a client for the API at addr (host:port, or
// unix:///PATH for a unix socket; DefaultAddr if empty). An address
// ParseAddr refuses fails every request with its error.
func NewClient(addr string) *Client {
	if addr == "" {
		addr = DefaultAddr
	}
	base := "http://" + addr
	dialer := &net.Dialer{Timeout: dialTimeout}
	dial := dialer.DialContext
	a, addrErr := ParseAddr(addr)
	if addrErr == nil && a.Network == "unix" {
		// The host in the URL only names the server in the Host header,
		// which a router on a socket does not check.
		base = "http://localhost"
		dial = func(ctx context.Context, _, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, "unix", a.Address)
		}
	}
	tr := &http.Transport{
		// The API is local: never send it through an HTTP proxy from the
		// environment.
		Proxy:                 nil,
		DialContext:           dial,
		MaxIdleConns:          2,
		IdleConnTimeout:       30 * time.Second,
		ResponseHeaderTimeout: DefaultTimeout,
	}
	return &Client{
		addr:    addr,
		base:    base,
		addrErr: addrErr,
		hc:      &http.Client{Transport: tr, Timeout: DefaultTimeout},
	}
}

// WithToken makes the client send the router's API token (--http-token)
// with every request, and returns it.
func (c *Client) WithToken(token string) *Client {
	c.token = token
	return c
}

// Addr is the API address the client talks to.
func (c *Client) Addr() string { return c.addr }

// CloseIdleConnections closes kept-alive connections to the router.
func (c *Client) CloseIdleConnections() { c.hc.CloseIdleConnections() }

// Status returns GET /status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var s Status
	return s, c.do(ctx, http.MethodGet, "/status", nil, &s)
}

// Peers returns GET /status/peers.
func (c *Client) Peers(ctx context.Context) ([]Peer, error) {
	var p []Peer
	return p, c.do(ctx, http.MethodGet, "/status/peers", nil, &p)
}

// Connections returns GET /status/connections.
func (c *Client) Connections(ctx context.Context) ([]Connection, error) {
	var cs []Connection
	return cs, c.do(ctx, http.MethodGet, "/status/connections", nil, &cs)
}

// Connect asks the router to join peers (POST /connect).
func (c *Client) Connect(ctx context.Context, peers []string) error {
	return c.do(ctx, http.MethodPost, "/connect", PeersRequest{Peers: peers}, nil)
}

// Forget asks the router to stop rejoining peers (POST /forget).
func (c *Client) Forget(ctx context.Context, peers []string) error {
	return c.do(ctx, http.MethodPost, "/forget", PeersRequest{Peers: peers}, nil)
}

// Attach attaches a network namespace to the overlay (POST /attach).
func (c *Client) Attach(ctx context.Context, req AttachRequest) (Endpoint, error) {
	var e Endpoint
	return e, c.do(ctx, http.MethodPost, "/attach", req, &e)
}

// Detach removes a namespace's endpoint (POST /detach).
func (c *Client) Detach(ctx context.Context, req DetachRequest) (Endpoint, error) {
	var e Endpoint
	return e, c.do(ctx, http.MethodPost, "/detach", req, &e)
}

// Endpoints returns GET /endpoints.
func (c *Client) Endpoints(ctx context.Context) ([]Endpoint, error) {
	var es []Endpoint
	return es, c.do(ctx, http.MethodGet, "/endpoints", nil, &es)
}

// Stop asks the router to shut down (POST /stop). It returns once the
// router has begun; the API answers until shutdown is done.
func (c *Client) Stop(ctx context.Context) error {
	return c.do(ctx, http.MethodPost, "/stop", struct{}{}, nil)
}

// Targets returns GET /status/targets.
func (c *Client) Targets(ctx context.Context) (Targets, error) {
	var out Targets
	err := c.do(ctx, http.MethodGet, "/status/targets", nil, &out)
	return out, err
}

// Reset asks the router to detach every endpoint, give its address space
// to a live peer and stop (POST /reset).
func (c *Client) Reset(ctx context.Context) (ResetResponse, error) {
	var out ResetResponse
	err := c.do(ctx, http.MethodPost, "/reset", struct{}{}, &out)
	return out, err
}

// Version returns GET /version.
func (c *Client) Version(ctx context.Context) (Version, error) {
	var v Version
	return v, c.do(ctx, http.MethodGet, "/version", nil, &v)
}

// do sends one request with in (if not nil) as the JSON body and decodes a
// 2xx answer into out (if not nil).
func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	if c.addrErr != nil {
		return fmt.Errorf("API address: %w", c.addrErr)
	}
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode %s %s request: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return fmt.Errorf("API address %q: %w", c.addr, err)
	}
	req.Header.Set("Accept", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return c.transportError(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return fmt.Errorf("read answer from router on %s: %w", c.addr, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return &StatusError{Code: resp.StatusCode, Err: errors.New(errorMessage(resp, data))}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("unexpected answer to %s %s from %s (is it a weave router?): %w", method, path, c.addr, err)
	}
	return nil
}

// errorMessage extracts the server's message from an error answer, or
// describes an answer that is not from a weave router.
func errorMessage(resp *http.Response, data []byte) string {
	var e Error
	if isJSON(resp.Header.Get("Content-Type")) && json.Unmarshal(data, &e) == nil && e.Error != "" {
		return e.Error
	}
	text := strings.TrimSpace(string(data))
	if len(text) > 200 {
		text = text[:200] + "..."
	}
	if text == "" {
		return fmt.Sprintf("router answered %s", resp.Status)
	}
	return fmt.Sprintf("router answered %s: %s", resp.Status, text)
}

func (c *Client) transportError(err error) error {
	// A socket file that is gone, or left by a router that died.
	if errors.Is(err, syscall.ECONNREFUSED) || (strings.HasPrefix(c.addr, UnixScheme) && errors.Is(err, syscall.ENOENT)) {
		return &noRouterError{addr: c.addr, err: err}
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("router on %s did not answer in time: %w", c.addr, err)
	}
	return fmt.Errorf("talk to router on %s: %w", c.addr, err)
}

// noRouterError is the connection-refused error; it matches ErrNoRouter.
type noRouterError struct {
	addr string
	err  error
}

func (e *noRouterError) Error() string {
	return fmt.Sprintf("no router is running on %s; start one with weave launch", e.addr)
}

func (e *noRouterError) Unwrap() error { return e.err }

func (e *noRouterError) Is(target error) bool { return target == ErrNoRouter }
