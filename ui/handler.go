package ui

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"weavemesh.dev/weave/api"
	"weavemesh.dev/weave/feature"
)

//go:embed assets
var assets embed.FS

// Defaults of Options.
const (
	DefaultInterval = time.Second
	defaultTimeout  = 2 * time.Second
)

// securityHeaders keep the page to its own files: no inline script, no
// other origin, no framing. Peer-supplied strings are inserted as text
// by the script; this is the second line of defence.
var securityHeaders = map[string]string{
	"Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; " +
		"img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
	"X-Content-Type-Options": "nosniff",
	"Referrer-Policy":        "no-referrer",
}

// Options configure the handler.
type Options struct {
	// Self is this peer's name. Required.
	Self string
	// Peers, Connections and Datapaths read the router's view of the mesh
	// (feature.Host has them). Optional: what is nil is left out.
	Peers       func(ctx context.Context) ([]api.Peer, error)
	Connections func(ctx context.Context) ([]api.Connection, error)
	Datapaths   func() []feature.DatapathStats
	// Now is the clock the rates are measured by. Optional: time.Now.
	Now func() time.Time
	// Interval is the shortest time rates are measured over, and how
	// often the page polls. Optional: DefaultInterval.
	Interval time.Duration
	// MaxRemotePeers bounds the other peers whose every pair is listed.
	// Optional: DefaultMaxRemotePeers.
	MaxRemotePeers int
	// Timeout bounds reading the router's view for one request.
	// Optional: 2s.
	Timeout time.Duration
}

// Handler serves the page and mesh.json.
type Handler struct {
	o     Options
	rates *rater
}

// New checks o and fills in the defaults.
func New(o Options) (*Handler, error) {
	if o.Self == "" {
		return nil, errors.New("ui: Options.Self (this peer's name) is required")
	}
	if o.Interval < 0 || o.MaxRemotePeers < 0 || o.Timeout < 0 {
		return nil, fmt.Errorf("ui: Options.Interval (%v), MaxRemotePeers (%d) and Timeout (%v) must not be negative", o.Interval, o.MaxRemotePeers, o.Timeout)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Interval == 0 {
		o.Interval = DefaultInterval
	}
	if o.MaxRemotePeers == 0 {
		o.MaxRemotePeers = DefaultMaxRemotePeers
	}
	if o.Timeout == 0 {
		o.Timeout = defaultTimeout
	}
	return &Handler{o: o, rates: newRater(o.Interval)}, nil
}

// Register adds the page's routes to mux: /ui (a redirect to /ui/, so
// the page's own files resolve relative to it wherever a proxy mounts
// it), /ui/, /ui/mesh.json and the page's script and style.
func (h *Handler) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /ui", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/ui/", http.StatusMovedPermanently)
	})
	mux.Handle("GET /ui/{$}", static("assets/index.html", "text/html; charset=utf-8"))
	mux.Handle("GET /ui/mesh.js", static("assets/mesh.js", "text/javascript; charset=utf-8"))
	mux.Handle("GET /ui/mesh.css", static("assets/mesh.css", "text/css; charset=utf-8"))
	mux.HandleFunc("GET /ui/mesh.json", h.serveMesh)
}

func static(name, contentType string) http.Handler {
	body, err := assets.ReadFile(name)
	if err != nil {
		panic(fmt.Sprintf("ui: embedded %s missing: %v", name, err)) // a build without its assets
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		setHeaders(w, contentType)
		w.Header().Set("Cache-Control", "no-cache")
		_, _ = w.Write(body)
	})
}

func setHeaders(w http.ResponseWriter, contentType string) {
	for k, v := range securityHeaders {
		w.Header().Set(k, v)
	}
	w.Header().Set("Content-Type", contentType)
}

// Mesh builds the picture now.
func (h *Handler) Mesh(ctx context.Context) Mesh {
	ctx, cancel := context.WithTimeout(ctx, h.o.Timeout)
	defer cancel()
	in := input{self: h.o.Self, now: h.o.Now(), maxRemote: h.o.MaxRemotePeers}
	var errs []string
	if h.o.Peers != nil {
		ps, err := h.o.Peers(ctx)
		if err != nil {
			errs = append(errs, fmt.Sprintf("peers: %v", err))
		}
		in.peers = ps
	}
	if h.o.Connections != nil {
		cs, err := h.o.Connections(ctx)
		if err != nil {
			errs = append(errs, fmt.Sprintf("connections: %v", err))
		}
		in.conns = cs
	}
	if h.o.Datapaths != nil {
		in.datapaths = h.o.Datapaths()
	}
	m := build(in)
	m.Errors = errs
	m.IntervalMillis = int(h.o.Interval / time.Millisecond)
	h.addRates(&m, in.now)
	return m
}

// addRates measures the rates of every local edge and datapath.
func (h *Handler) addRates(m *Mesh, now time.Time) {
	cur := make(map[string][2]uint64, len(m.Edges)+len(m.Datapaths))
	for _, e := range m.Edges {
		if e.Traffic != nil {
			cur["peer/"+e.To] = [2]uint64{e.Traffic.TxBytes, e.Traffic.RxBytes}
		}
	}
	for _, d := range m.Datapaths {
		cur["datapath/"+d.Name] = [2]uint64{d.Traffic.TxBytes, d.Traffic.RxBytes}
	}
	rates := h.rates.update(now, cur)
	set := func(t *Traffic, key string) {
		if r, ok := rates[key]; ok {
			t.TxBps, t.RxBps = &r[0], &r[1]
		}
	}
	for i := range m.Edges {
		if t := m.Edges[i].Traffic; t != nil {
			set(t, "peer/"+m.Edges[i].To)
		}
	}
	for i := range m.Datapaths {
		set(&m.Datapaths[i].Traffic, "datapath/"+m.Datapaths[i].Name)
	}
}

func (h *Handler) serveMesh(w http.ResponseWriter, r *http.Request) {
	body, err := json.Marshal(h.Mesh(r.Context()))
	if err != nil {
		http.Error(w, fmt.Sprintf("encode the mesh: %v", err), http.StatusInternalServerError)
		return
	}
	setHeaders(w, "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(append(body, '\n'))
}
