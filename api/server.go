package api

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Backend is what the server exposes; the router implements it. Methods are
// called concurrently from request goroutines. They report failures with the
// error kinds in errors.go so the server can choose the status code.
type Backend interface {
	Status(ctx context.Context) (Status, error)
	Peers(ctx context.Context) ([]Peer, error)
	Connections(ctx context.Context) ([]Connection, error)
	Connect(ctx context.Context, peers []string) error
	Forget(ctx context.Context, peers []string) error
	Attach(ctx context.Context, req AttachRequest) (Endpoint, error)
	Detach(ctx context.Context, req DetachRequest) (Endpoint, error)
	Endpoints(ctx context.Context) ([]Endpoint, error)
	// Stop begins a clean shutdown and returns once it has started. It must
	// not wait for the server to close: Server.Close waits for the request
	// that called Stop to finish.
	Stop(ctx context.Context) error
}

// ServerOptions configures NewServer.
type ServerOptions struct {
	// Addr is the host:port to listen on, or unix:///PATH for a unix
	// socket of mode SocketMode (ParseAddr); DefaultAddr if empty. Port 0
	// picks a free port (see Server.Addr).
	Addr string
	// Backend answers every request; required.
	Backend Backend
	// Version is the answer to GET /version. Go defaults to runtime.Version().
	Version Version
	// Logger receives access logs (debug) and internal errors; silent if nil.
	Logger *slog.Logger
	// Token, when set, must come with requests as "Authorization: Bearer
	// TOKEN": with every request when Addr is not a loopback address (it
	// is then required), and with those that change state on loopback.
	Token string
}

// Server serves the HTTP API over a Backend. Create it with NewServer,
// optionally add routes with Handle, then Start; Close shuts it down.
type Server struct {
	log     *slog.Logger
	backend Backend
	version Version
	addr    string // as configured
	listen  Addr   // addr parsed
	host    string // host part of addr, lower case, for the Host header check
	token   string
	local   bool // addr is a loopback address or a unix socket
	mux     *http.ServeMux
	srv     *http.Server

	closeOnce sync.Once
	closeErr  error

	// inflight counts requests being handled, so Close can wait for them.
	inflight sync.WaitGroup
	hmu      sync.RWMutex // guards draining and orders inflight.Add before Wait
	draining bool         // set by Close once the http.Server is down

	mu sync.Mutex // guards the fields below
	// ln is the listener once Start succeeded.
	ln net.Listener
	// sock is the unix socket file Start made, removed by Close.
	sock os.FileInfo
	// closed is set by Close; Start refuses afterwards.
	closed bool
	// done is closed when the serve goroutine has returned.
	done chan struct{}
	// serveErr is what Serve returned if it failed on its own.
	serveErr error
}

// Limits and timeouts of the server.
const (
	// MaxRequestBytes bounds every request body.
	MaxRequestBytes   = 1 << 20
	readHeaderTimeout = 10 * time.Second
	idleTimeout       = 60 * time.Second
)

// NewServer validates o and builds a server with every API route
// registered. It does not listen yet.
func NewServer(o ServerOptions) (*Server, error) {
	if o.Backend == nil {
		return nil, errors.New("api: ServerOptions.Backend is required")
	}
	if o.Addr == "" {
		o.Addr = DefaultAddr
	}
	la, err := ParseAddr(o.Addr)
	if err != nil {
		return nil, fmt.Errorf("api: ServerOptions.Addr: %w", err)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	// A unix socket of mode 0600 admits its owner only: as local as
	// loopback, and out of reach of browsers.
	host, local := "", la.Network == "unix"
	if !local {
		host, _, _ = net.SplitHostPort(o.Addr)
		local = isLoopback(host)
	}
	if !local && o.Token == "" {
		return nil, fmt.Errorf("api: the HTTP API on %s would be reachable from other hosts with no token: give --http-token (or WEAVE_HTTP_TOKEN), or keep --http-addr on 127.0.0.1", o.Addr)
	}
	if o.Version.Go == "" {
		o.Version.Go = runtime.Version()
	}
	s := &Server{
		log:     o.Logger,
		backend: o.Backend,
		version: o.Version,
		addr:    o.Addr,
		listen:  la,
		host:    strings.ToLower(strings.Trim(host, "[]")),
		token:   o.Token,
		local:   local,
		mux:     http.NewServeMux(),
		done:    make(chan struct{}),
	}
	s.routes()
	s.srv = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		ErrorLog:          slog.NewLogLogger(o.Logger.Handler(), slog.LevelDebug),
	}
	return s, nil
}

// Handle registers h for pattern (http.ServeMux syntax, e.g. "GET /dns"):
// the router registers the Routes of every feature with it. Their
// requests pass the same checks and access log as the built-in ones;
// JSON, Body, DecodeRequest, WriteJSON and WriteError give them the same
// JSON conventions. Like http.ServeMux it panics on a pattern that
// conflicts with one already registered.
func (s *Server) Handle(pattern string, h http.Handler) {
	s.mux.Handle(pattern, h)
}

// Start listens on the configured address and serves in a goroutine the
// server owns until Close.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("api: server is closed")
	}
	if s.ln != nil {
		return errors.New("api: server already started")
	}
	var ln net.Listener
	if s.listen.Network == "unix" {
		uln, err := listenUnix(s.listen.Address)
		if err != nil {
			return err
		}
		ln = uln
		s.sock, _ = os.Lstat(s.listen.Address)
	} else {
		tln, err := net.Listen("tcp", s.addr)
		if err != nil {
			if errors.Is(err, syscall.EADDRINUSE) {
				return &addrInUseError{addr: s.addr, err: err}
			}
			return fmt.Errorf("listen for the HTTP API on %s: %w", s.addr, err)
		}
		ln = tln
	}
	s.ln = ln
	go s.serve(ln)
	s.log.Info("HTTP API listening", "addr", s.addrLocked())
	return nil
}

func (s *Server) serve(ln net.Listener) {
	defer close(s.done)
	err := s.srv.Serve(ln)
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		s.log.Error("HTTP API stopped serving", "err", err)
		s.mu.Lock()
		s.serveErr = err
		s.mu.Unlock()
	}
}

// Addr is the address the server listens on once started (with the real
// port if the configured one was 0), else the configured address.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addrLocked()
}

func (s *Server) addrLocked() string {
	if s.ln != nil && s.listen.Network == "tcp" {
		return s.ln.Addr().String()
	}
	return s.addr
}

// Close stops accepting requests and waits for those in flight until ctx
// expires, then cuts off their connections, cancelling their contexts. It
// returns once no handler is running, so the Backend may be torn down
// afterwards; Backend methods must therefore return when their context is
// cancelled. It is safe to call more than once, and before Start.
func (s *Server) Close(ctx context.Context) error {
	s.closeOnce.Do(func() { s.closeErr = s.close(ctx) })
	return s.closeErr
}

func (s *Server) close(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	started := s.ln != nil
	s.mu.Unlock()
	if !started {
		return nil
	}
	err := s.srv.Shutdown(ctx)
	if err != nil {
		// Requests outlived ctx; cut them off so the serve goroutine ends.
		err = fmt.Errorf("api: close: %w", err)
		_ = s.srv.Close()
	}
	<-s.done // Serve returns once its listener is closed, which both do first
	if s.listen.Network == "unix" {
		removeSocket(s.listen.Address, s.sock)
	}
	s.hmu.Lock()
	s.draining = true
	s.hmu.Unlock()
	s.inflight.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil && s.serveErr != nil {
		err = fmt.Errorf("api: serve: %w", s.serveErr)
	}
	return err
}

// addrInUseError keeps the actionable message while still matching
// syscall.EADDRINUSE.
type addrInUseError struct {
	addr string
	err  error
}

func (e *addrInUseError) Error() string {
	if path, ok := strings.CutPrefix(e.addr, UnixScheme); ok {
		return fmt.Sprintf("a router already answers on the socket %s; try weave status --http-addr %s", path, e.addr)
	}
	_, port, _ := net.SplitHostPort(e.addr)
	hint := "weave status"
	if e.addr != DefaultAddr {
		hint = "weave status --http-addr " + e.addr
	}
	return fmt.Sprintf("port %s is in use; is a router already running? try %s", port, hint)
}

func (e *addrInUseError) Unwrap() error { return e.err }

// ServeHTTP runs every request through the access log and the checks that
// keep browsers from driving the API, then the mux.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.hmu.RLock()
	if s.draining {
		// A connection cut off by Close raced us here.
		s.hmu.RUnlock()
		WriteError(w, NotReady("the router is shutting down"))
		return
	}
	s.inflight.Add(1)
	s.hmu.RUnlock()
	defer s.inflight.Done()
	start := time.Now()
	lw := &logWriter{ResponseWriter: w}
	s.serveChecked(lw, r)
	code := lw.code()
	if code >= 500 && lw.err != nil {
		s.log.Error("HTTP API request failed", "method", r.Method, "path", r.URL.Path,
			"status", code, "err", lw.err)
	}
	if s.log.Enabled(r.Context(), slog.LevelDebug) {
		attrs := []slog.Attr{
			slog.String("method", r.Method),
			slog.String("path", r.URL.Path),
			slog.Int("status", code),
			slog.Int64("bytes", lw.bytes),
			slog.Duration("took", time.Since(start)),
			slog.String("remote", r.RemoteAddr),
		}
		if lw.err != nil {
			attrs = append(attrs, slog.String("err", lw.err.Error()))
		}
		s.log.LogAttrs(r.Context(), slog.LevelDebug, "http request", attrs...)
	}
}

func (s *Server) serveChecked(w http.ResponseWriter, r *http.Request) {
	// A web page the user visits can make the browser send requests to
	// 127.0.0.1. Refusing Host names we do not serve defeats DNS
	// rebinding; requiring a JSON content type on POST forces a CORS
	// preflight, which this API never grants.
	if !s.hostAllowed(r.Host) {
		WriteError(w, &StatusError{Code: http.StatusForbidden, Err: fmt.Errorf(
			"host %q is not allowed; address the API by IP, localhost or %s", r.Host, s.addr)})
		return
	}
	if !s.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="weave"`)
		WriteError(w, &StatusError{Code: http.StatusUnauthorized, Err: errors.New(
			"this request needs the API token: give --http-token or WEAVE_HTTP_TOKEN, the router's")})
		return
	}
	if r.Method == http.MethodPost && !isJSON(r.Header.Get("Content-Type")) {
		WriteError(w, &StatusError{Code: http.StatusUnsupportedMediaType, Err: errors.New(
			"POST requests must have Content-Type: application/json")})
		return
	}
	if _, pattern := s.mux.Handler(r); pattern == "" {
		// Not a route: the mux answers 404/405 (or redirects to a clean
		// path) in plain text; turn its errors into API errors.
		s.mux.ServeHTTP(&routeErrorWriter{ResponseWriter: w, r: r}, r)
		return
	}
	s.mux.ServeHTTP(w, r)
}

func (s *Server) hostAllowed(hostport string) bool {
	if hostport == "" || s.listen.Network == "unix" {
		// HTTP/1.0 without Host, which no browser sends; or a unix
		// socket, which no browser reaches.
		return true
	}
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.ToLower(strings.Trim(host, "[]"))
	if _, err := netip.ParseAddr(host); err == nil {
		return true
	}
	return host == "localhost" || host == s.host
}

// authorized reports whether r may be served: off loopback every request
// needs the token, on loopback only those that change state, and only
// when a token is set.
func (s *Server) authorized(r *http.Request) bool {
	read := r.Method == http.MethodGet || r.Method == http.MethodHead
	if s.token == "" || (s.local && read) {
		return s.local
	}
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(got), []byte(s.token)) == 1
}

// Local reports whether the API listens on a loopback address only: the
// router serves its profiling endpoints there and nowhere else.
func (s *Server) Local() bool { return s.local }

// isLoopback reports whether host (from --http-addr) is a loopback
// address or localhost.
func isLoopback(host string) bool {
	host = strings.Trim(host, "[]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

func isJSON(contentType string) bool {
	mt, _, _ := strings.Cut(contentType, ";")
	return strings.EqualFold(strings.TrimSpace(mt), "application/json")
}

// routes registers the API. docs/api.md describes each route.
func (s *Server) routes() {
	s.mux.Handle("GET /status", jsonHandler(func(r *http.Request) (any, error) {
		return s.backend.Status(r.Context())
	}))
	s.mux.Handle("GET /status/peers", jsonHandler(func(r *http.Request) (any, error) {
		peers, err := s.backend.Peers(r.Context())
		return nonNil(peers), err
	}))
	s.mux.Handle("GET /status/connections", jsonHandler(func(r *http.Request) (any, error) {
		conns, err := s.backend.Connections(r.Context())
		return nonNil(conns), err
	}))
	s.mux.Handle("GET /endpoints", jsonHandler(func(r *http.Request) (any, error) {
		eps, err := s.backend.Endpoints(r.Context())
		return nonNil(eps), err
	}))
	s.mux.Handle("GET /version", jsonHandler(func(*http.Request) (any, error) {
		return s.version, nil
	}))
	s.mux.Handle("POST /connect", peersHandler(s.backend.Connect))
	s.mux.Handle("POST /forget", peersHandler(s.backend.Forget))
	s.mux.Handle("POST /attach", bodyHandler(func(r *http.Request, req AttachRequest) (any, error) {
		return s.backend.Attach(r.Context(), req)
	}))
	s.mux.Handle("POST /detach", bodyHandler(func(r *http.Request, req DetachRequest) (any, error) {
		return s.backend.Detach(r.Context(), req)
	}))
	s.mux.Handle("POST /stop", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := s.backend.Stop(r.Context()); err != nil {
			WriteError(w, err)
			return
		}
		WriteJSON(w, http.StatusAccepted, struct{}{})
	}))
}

// jsonHandler answers with fn's value as JSON, or its error.
type jsonHandler func(r *http.Request) (any, error)

func (h jsonHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	v, err := h(r)
	if err != nil {
		WriteError(w, err)
		return
	}
	WriteJSON(w, http.StatusOK, v)
}

// bodyHandler decodes (and validates) a request body of type T and answers
// like jsonHandler.
func bodyHandler[T any](fn func(r *http.Request, req T) (any, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req T
		if err := DecodeRequest(w, r, &req); err != nil {
			WriteError(w, err)
			return
		}
		jsonHandler(func(r *http.Request) (any, error) { return fn(r, req) }).ServeHTTP(w, r)
	})
}

func peersHandler(fn func(context.Context, []string) error) http.Handler {
	return bodyHandler(func(r *http.Request, req PeersRequest) (any, error) {
		return struct{}{}, fn(r.Context(), req.Peers)
	})
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// logWriter records what was written, for the access log.
type logWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
	err    error // the error answered, if any; set by WriteError
}

func (w *logWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *logWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

func (w *logWriter) code() int {
	if w.status == 0 {
		return http.StatusOK
	}
	return w.status
}

func (w *logWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// routeErrorWriter turns the mux's plain-text 404 and 405 into API errors
// and passes anything else (path-cleaning redirects) through.
type routeErrorWriter struct {
	http.ResponseWriter
	r        *http.Request
	replaced bool // the mux's body is being dropped
}

func (w *routeErrorWriter) WriteHeader(code int) {
	var err error
	switch code {
	case http.StatusNotFound:
		err = NotFound("no API endpoint %s %s; see docs/api.md", w.r.Method, w.r.URL.Path)
	case http.StatusMethodNotAllowed:
		err = &StatusError{Code: code, Err: fmt.Errorf("method %s is not allowed on %s; use %s",
			w.r.Method, w.r.URL.Path, w.Header().Get("Allow"))}
	default:
		w.ResponseWriter.WriteHeader(code)
		return
	}
	w.replaced = true
	w.Header().Del("Content-Length")
	WriteError(w.ResponseWriter, err)
}

func (w *routeErrorWriter) Write(b []byte) (int, error) {
	if w.replaced {
		return len(b), nil
	}
	return w.ResponseWriter.Write(b)
}
