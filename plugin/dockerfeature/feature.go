package dockerfeature

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"weavemesh.dev/weave/api"
	"weavemesh.dev/weave/feature"
	"weavemesh.dev/weave/plugin/docker"
)

// Options configure the Docker plugin feature.
type Options struct {
	// Socket is where to serve the plugin. Empty: docker.DefaultSocket
	// when its directory exists (Docker's plugin directory), else not at
	// all. A socket named here must be served: failing to is an error,
	// where failing on the default is only a warning.
	Socket string
	// Off turns the plugin off (--no-plugin).
	Off bool
	// EngineSocket is the Docker Engine API's socket the containers'
	// names come from; empty: docker.DefaultEngineSocket.
	EngineSocket string
}

// withDefaults validates o and says where to serve.
func (o Options) withDefaults() (Options, bool, error) {
	if o.EngineSocket == "" {
		o.EngineSocket = docker.DefaultEngineSocket
	}
	switch {
	case o.Off && o.Socket != "":
		return o, false, errors.New("--plugin-socket and --no-plugin contradict each other; give one")
	case o.Off:
		return o, false, nil
	case o.Socket != "":
		if !filepath.IsAbs(o.Socket) {
			return o, false, fmt.Errorf("--plugin-socket %q: not an absolute path", o.Socket)
		}
		return o, true, nil
	}
	if st, err := os.Stat(filepath.Dir(docker.DefaultSocket)); err == nil && st.IsDir() {
		o.Socket = docker.DefaultSocket
	}
	return o, false, nil
}

// ipamService is what the plugin needs of IP allocation (ipamfeature's
// Feature, found as "ipam").
type ipamService interface {
	Range() netip.Prefix
	DefaultSubnet() netip.Prefix
	Allocate(ctx context.Context, owner string, subnet netip.Prefix) (netip.Prefix, error)
	Claim(owner string, addr netip.Addr) string
	ReleaseAddr(owner string, addr netip.Addr)
	Release(owner string) []netip.Addr
	Allocations() []api.IPAMAllocation
}

// dnsService is what the plugin needs of weaveDNS (dnsfeature's Feature,
// found as "dns").
type dnsService interface {
	Enabled() bool
	RegisterEndpointNames(id string, names []string, addrs []netip.Addr) error
	UnregisterEndpoint(id string)
	ServeNamespace(id, netns string) error
	StopNamespace(id string)
}

// Feature is the Docker plugin in the router: it serves the socket,
// implements docker.Router over the bridge, IP allocation and weaveDNS,
// and takes part in endpoint reconciliation so that the addresses of
// Docker's pools survive a router restart.
type Feature struct {
	feature.Base
	opts     Options
	required bool // the socket was asked for: failing to serve it is an error

	host   feature.Host
	log    *slog.Logger
	ipam   ipamService
	dns    dnsService // nil with weaveDNS off
	p      *docker.Plugin
	driver string // the plugin's name: its socket's, less .sock

	srv       *docker.Server // nil when not serving
	unforward func()
	// cancel stops the name watcher, which wg counts.
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once

	mu     sync.Mutex // guards held, cancel and closed
	closed bool
	// held are the pools' allocations found at Open, before IP
	// allocation's Reconcile releases what no weave endpoint holds;
	// Reconcile claims them back.
	held []heldAddr
}

// heldAddr is an address IPAM held for a Docker pool at start.
type heldAddr struct {
	owner string
	addr  netip.Addr
}

var _ feature.Feature = (*Feature)(nil)

// New validates o and returns the Docker plugin, to be registered with
// the router after IP allocation and weaveDNS.
func New(o Options) (*Feature, error) {
	o, required, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Feature{opts: o, required: required, unforward: func() {}}, nil
}

// Name implements feature.Feature.
func (f *Feature) Name() string { return "docker" }

// Open implements feature.Feature: it finds IP allocation and weaveDNS
// and notes the addresses Docker's pools hold.
func (f *Feature) Open(h feature.Host) error {
	f.host = h
	f.log = h.Logger.With("component", "docker-plugin")
	if f.opts.Socket == "" {
		return nil
	}
	ipf, ok := h.Feature("ipam")
	if !ok {
		return errors.New("the Docker plugin needs IP allocation, registered before it")
	}
	if f.ipam, ok = ipf.(ipamService); !ok {
		return fmt.Errorf("the Docker plugin cannot use feature ipam (%T)", ipf)
	}
	if df, ok := h.Feature("dns"); ok {
		if d, ok := df.(dnsService); ok && d.Enabled() {
			f.dns = d
		}
	}
	f.driver = strings.TrimSuffix(filepath.Base(f.opts.Socket), ".sock")
	for _, a := range f.ipam.Allocations() {
		if !strings.HasPrefix(a.Owner, docker.OwnerPrefix) {
			continue
		}
		if addr, err := netip.ParseAddr(a.Address); err == nil {
			f.held = append(f.held, heldAddr{owner: a.Owner, addr: addr})
		}
	}
	var err error
	f.p, err = docker.New(docker.Options{Router: (*plugRouter)(f), Logger: f.log})
	return err
}

// Start implements feature.Feature: it serves the socket, and lets
// frames cross the bridge through iptables' FORWARD chain.
func (f *Feature) Start(ctx context.Context) error {
	if f.p == nil {
		return nil
	}
	srv, err := docker.Serve(f.opts.Socket, f.p)
	if err != nil {
		if f.required {
			return fmt.Errorf("--plugin-socket: %w", err)
		}
		f.log.Warn("not serving the Docker plugin; containers on weavemesh networks need it (start one router per host, or turn it off with --no-plugin)", "err", err)
		return nil
	}
	f.srv = srv
	f.unforward = allowForwarding(f.log, f.host.Bridge.Name())
	f.log.Info("Docker plugin ready", "socket", f.opts.Socket, "driver", f.driver)
	return nil
}

// Status implements feature.Feature.
func (f *Feature) Status(ctx context.Context) (any, error) {
	st := api.DockerPluginStatus{Driver: f.driver}
	if f.srv != nil {
		st.Socket = f.srv.Path()
		st.Names = f.dns != nil
	}
	return st, nil
}

// Reconcile implements feature.EndpointHook; Docker endpoints never pass
// through the router's Attach, so only this hook matters. It claims back
// the pools' addresses IP allocation's Reconcile released: Docker still
// holds them (it releases them itself, with ReleaseAddress and
// ReleasePool). Then, weaveDNS being reconciled too, it starts following
// the Docker engine for the containers' names.
func (f *Feature) Reconcile(ctx context.Context, eps []api.Endpoint) {
	if f.srv == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, h := range f.held {
		if warn := f.ipam.Claim(h.owner, h.addr); warn != "" {
			f.log.Warn("cannot keep the address of a Docker pool", "address", h.addr, "pool", h.owner, "note", warn)
		}
	}
	f.held = nil
	if f.dns != nil && f.cancel == nil && !f.closed {
		wctx, cancel := context.WithCancel(context.Background())
		f.cancel = cancel
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			f.p.WatchNames(wctx, f.opts.EngineSocket, f.driver)
		}()
	}
}

// Close implements feature.Feature: it stops the name watcher and the
// server, removes the socket and the FORWARD rule.
func (f *Feature) Close(ctx context.Context) {
	f.closeOnce.Do(func() {
		f.mu.Lock()
		f.closed = true
		if f.cancel != nil {
			f.cancel()
		}
		f.mu.Unlock()
		f.wg.Wait()
		if f.srv != nil {
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			if err := f.srv.Close(cctx); err != nil {
				f.log.Warn("stop the Docker plugin", "err", err)
			}
		}
		f.unforward()
	})
}
