package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"weavemesh.dev/weave/feature"
	"weavemesh.dev/weave/ui"
)

// DefaultAddr is where the metrics are served unless told otherwise: the
// port Weave Net used, on loopback.
const DefaultAddr = "127.0.0.1:6782"

// scrapeTimeout bounds what one scrape may wait for (the connections
// view).
const scrapeTimeout = 2 * time.Second

// Options configure the metrics feature.
type Options struct {
	// Addr is host:port to serve /metrics on; DefaultAddr if empty, and
	// no listener at all if "off".
	Addr string
}

// Feature serves /metrics, and the live picture of the mesh at /ui.
type Feature struct {
	feature.Base
	opts Options
	host feature.Host
	reg  *prometheus.Registry
	ln   net.Listener
	srv  *http.Server
	done chan struct{}
}

// New checks opts.
func New(opts Options) (*Feature, error) {
	if opts.Addr == "" {
		opts.Addr = DefaultAddr
	}
	if opts.Addr != "off" {
		if _, _, err := net.SplitHostPort(opts.Addr); err != nil {
			return nil, fmt.Errorf("--metrics-addr %q: want host:port like %s, or off: %w", opts.Addr, DefaultAddr, err)
		}
	}
	return &Feature{opts: opts}, nil
}

// Name implements feature.Feature.
func (f *Feature) Name() string { return "metrics" }

// Open implements feature.Feature: it builds the registry and binds the
// listener, so a port in use fails the start with a clear error.
func (f *Feature) Open(h feature.Host) error {
	f.host = h
	f.reg = prometheus.NewRegistry()
	f.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{Namespace: "weave"}),
		&collector{h: h},
	)
	if f.opts.Addr == "off" {
		return nil
	}
	ln, err := net.Listen("tcp", f.opts.Addr)
	if err != nil {
		return fmt.Errorf("metrics: listen on %s (another router on this host? give each its own --metrics-addr, or off): %w", f.opts.Addr, err)
	}
	f.ln = ln
	return nil
}

// Handler serves the metrics in Prometheus' text format.
func (f *Feature) Handler() http.Handler {
	return promhttp.HandlerFor(f.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// Start implements feature.Feature.
func (f *Feature) Start(context.Context) error {
	if f.ln == nil {
		return nil
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", f.Handler())
	page, err := ui.New(ui.Options{Self: f.host.Self.String(), Peers: f.host.Peers, Connections: f.host.Connections, Datapaths: f.host.Datapaths})
	if err != nil {
		return fmt.Errorf("metrics: the mesh picture at /ui: %w", err)
	}
	page.Register(mux)
	f.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	f.done = make(chan struct{})
	go func() {
		defer close(f.done)
		if err := f.srv.Serve(f.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			f.host.Logger.Error("metrics listener stopped", "component", "metrics", "err", err)
		}
	}()
	f.host.Logger.Info("metrics listening", "component", "metrics", "addr", f.ln.Addr().String(),
		"mesh_picture", "http://"+f.ln.Addr().String()+"/ui/")
	return nil
}

// Addr is the address metrics are served on, empty when off.
func (f *Feature) Addr() string {
	if f.ln == nil {
		return ""
	}
	return f.ln.Addr().String()
}

// Status implements feature.Feature.
func (f *Feature) Status(context.Context) (any, error) {
	return map[string]string{"addr": f.Addr()}, nil
}

// Close implements feature.Feature.
func (f *Feature) Close(ctx context.Context) {
	switch {
	case f.srv != nil:
		_ = f.srv.Shutdown(ctx)
		<-f.done
		f.srv = nil
	case f.ln != nil:
		f.ln.Close() // opened, never served
	}
	f.ln = nil
}
