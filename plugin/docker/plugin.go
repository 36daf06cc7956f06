package docker

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
)

// Name is the plugin's name: Docker finds it as Name+".sock" in its plugin
// directory, and networks use it as driver and IPAM driver.
const Name = "weavemesh"

// DefaultSocket is where the router serves the plugin unless told
// otherwise.
const DefaultSocket = "/run/docker/plugins/" + Name + ".sock"

// contentType is what Docker's plugin client sends and expects back.
const contentType = "application/vnd.docker.plugins.v1.2+json"

// maxRequestBytes bounds a request body; Docker's are a few hundred bytes.
const maxRequestBytes = 1 << 20

// DstPrefix is the name Docker gives the interface inside the container,
// followed by a number.
const DstPrefix = "ethwe"

// Options configure New.
type Options struct {
	// Router gives the plugin veths, addresses and names. Required.
	Router Router
	// Logger; nil discards.
	Logger *slog.Logger
}

// Plugin serves the network and IPAM drivers. Create it with New; it is an
// http.Handler.
type Plugin struct {
	r   Router
	log *slog.Logger
	mux *http.ServeMux

	mu        sync.Mutex           // guards endpoints
	endpoints map[string]*endpoint // endpoint id -> endpoint
}

type endpoint struct {
	network string
	address string // IPv4 CIDR as Docker gave it, may be empty
	mac     string
	ownMAC  bool   // mac is ours, not Docker's
	name    string // DNS name, empty when none
	// optName is the name the weave.name option gave; it stays a name of
	// the endpoint beside the container's own name and aliases.
	optName string
}

// New returns a plugin that answers every method of both drivers.
func New(o Options) (*Plugin, error) {
	if o.Router == nil {
		return nil, errors.New("docker plugin: Options.Router is required")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	p := &Plugin{r: o.Router, log: o.Logger, mux: http.NewServeMux(), endpoints: map[string]*endpoint{}}
	p.routes()
	return p, nil
}

// ServeHTTP implements http.Handler. Every method is a POST; any other
// path answers 404.
func (p *Plugin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mux.ServeHTTP(w, r)
}

// The two error fields of the protocol: the network driver's replies carry
// Err, the IPAM driver's Error. Docker's plugin client reads Err from any
// reply whose status is not 200, so those carry it for both drivers.
type (
	netError  struct{ Err string }
	ipamError struct{ Error string }
	// httpError is a reply to a request that could not be read.
	httpError struct {
		Err   string
		Error string `json:",omitempty"`
	}
)

// driver says which error field a method's replies use.
type driver int

const (
	netDriver driver = iota
	ipamDriver
)

func (p *Plugin) routes() {
	p.mux.HandleFunc("POST /Plugin.Activate", func(w http.ResponseWriter, r *http.Request) {
		reply(w, http.StatusOK, map[string][]string{"Implements": {"NetworkDriver", "IpamDriver"}})
	})
	handle(p, netDriver, "GetCapabilities", func(struct{}) (any, error) { return p.capabilities(), nil })
	handle(p, netDriver, "CreateNetwork", p.createNetwork)
	handle(p, netDriver, "DeleteNetwork", p.deleteNetwork)
	handle(p, netDriver, "CreateEndpoint", p.createEndpoint)
	handle(p, netDriver, "DeleteEndpoint", p.deleteEndpoint)
	handle(p, netDriver, "EndpointOperInfo", p.endpointInfo)
	handle(p, netDriver, "Join", p.join)
	handle(p, netDriver, "Leave", p.leave)
	handle(p, netDriver, "DiscoverNew", noop[discovery])
	handle(p, netDriver, "DiscoverDelete", noop[discovery])
	handle(p, netDriver, "ProgramExternalConnectivity", noop[endpointRef])
	handle(p, netDriver, "RevokeExternalConnectivity", noop[endpointRef])
	handle(p, netDriver, "AllocateNetwork", func(struct{}) (any, error) {
		return nil, errors.New("weavemesh is a local-scope driver; it has no swarm networks")
	})
	handle(p, netDriver, "FreeNetwork", noop[struct{}])

	handle(p, ipamDriver, "GetCapabilities", func(struct{}) (any, error) { return ipamCapabilities{}, nil })
	handle(p, ipamDriver, "GetDefaultAddressSpaces", func(struct{}) (any, error) { return defaultAddressSpaces, nil })
	handle(p, ipamDriver, "RequestPool", p.requestPool)
	handle(p, ipamDriver, "ReleasePool", p.releasePool)
	handle(p, ipamDriver, "RequestAddress", p.requestAddress)
	handle(p, ipamDriver, "ReleaseAddress", p.releaseAddress)
	p.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		reply(w, http.StatusNotFound, httpError{Err: fmt.Sprintf("weavemesh plugin: no method %s %s", r.Method, r.URL.Path)})
	})
}

// noop answers an empty object, for notifications the plugin has no use
// for.
func noop[Req any](Req) (any, error) { return struct{}{}, nil }

// handle serves POST /<Driver>.<method>: it decodes the body into Req
// (an empty body counts as {}), calls fn and writes its answer, or its
// error in the driver's error field.
func handle[Req any](p *Plugin, d driver, method string, fn func(Req) (any, error)) {
	prefix := "NetworkDriver."
	if d == ipamDriver {
		prefix = "IpamDriver."
	}
	full := prefix + method
	p.mux.HandleFunc("POST /"+full, func(w http.ResponseWriter, r *http.Request) {
		var req Req
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRequestBytes))
		if err != nil {
			err = fmt.Errorf("read the request body (at most %d bytes): %w", maxRequestBytes, err)
		} else {
			p.log.Debug("docker plugin request", "method", full, "body", string(body))
			err = decodeBody(bytes.NewReader(body), &req)
		}
		if err != nil {
			reply(w, http.StatusBadRequest, httpError{Err: err.Error(), Error: err.Error()})
			return
		}
		resp, err := fn(req)
		if err != nil {
			p.log.Warn("docker plugin request failed", "method", full, "err", err)
			if d == ipamDriver {
				// libnetwork's IPAM client reads a 200 with Error set.
				reply(w, http.StatusOK, ipamError{Error: err.Error()})
			} else {
				reply(w, http.StatusInternalServerError, netError{Err: err.Error()})
			}
			return
		}
		reply(w, http.StatusOK, resp)
	})
}

// decodeBody reads one JSON request body into v: one value with nothing
// after it, an empty body being {}. Unknown fields are ignored, as newer
// Docker versions add some.
func decodeBody(body io.Reader, v any) error {
	dec := json.NewDecoder(body)
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return nil
		}
		return fmt.Errorf("request body is not the JSON object the method takes: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("request body has data after the JSON value")
	}
	return nil
}

func reply(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		code, b = http.StatusInternalServerError, []byte(`{"Err":"weavemesh plugin: cannot encode the reply"}`)
	}
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}
