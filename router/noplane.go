package router

import (
	"net/http"
	"net/netip"
	"slices"

	"weavemesh.dev/weave/api"
	"weavemesh.dev/weave/feature"
	"weavemesh.dev/weave/gossip"
	"weavemesh.dev/weave/internal/clock"
	"weavemesh.dev/weave/mesh/topology"
	"weavemesh.dev/weave/peer"
)

// The parts of a router that a process running many of them uses
// (router/inproc, bench/scale): its lifetime, its state, and the link
// state a router without a data plane reports.

// Wait waits until the router has stopped and released everything.
func (r *Router) Wait() error {
	<-r.done
	return nil
}

// Done is closed once the router has stopped and released everything.
func (r *Router) Done() <-chan struct{} { return r.done }

// Kill stops the router without leaving the mesh, as a crash would: the
// other peers notice the silence and declare it dead. Wait waits for it.
func (r *Router) Kill() {
	r.killed.Store(true)
	r.requestStop()
}

// Name is the router's peer name.
func (r *Router) Name() peer.Name { return r.name }

// Gossip is the router's gossip node.
func (r *Router) Gossip() *gossip.Node { return r.gossip }

// Topology is the router's replica of the mesh's link state.
func (r *Router) Topology() *topology.Topology { return r.topo }

// Feature returns the started feature called name ("ipam", "dns").
func (r *Router) Feature(name string) (feature.Feature, bool) {
	for _, f := range r.started {
		if f.Name() == name {
			return f, true
		}
	}
	return nil, false
}

// ServeHTTP answers a request of the HTTP API in this process, whether or
// not the API listens (Config.HTTPAddr APIOff).
func (r *Router) ServeHTTP(w http.ResponseWriter, req *http.Request) { r.api.ServeHTTP(w, req) }

// SetLinksDown sets the peers a router without a data plane reports it
// cannot reach, as the sleeve's heartbeats would: the topology and routes
// change exactly as for a real broken link. The full router ignores it.
func (r *Router) SetLinksDown(down []peer.Name) {
	r.mu.Lock()
	r.simDown = slices.Clone(down)
	r.mu.Unlock()
	r.poke()
}

// linksDown are the peers this router cannot reach now.
func (r *Router) linksDown() []peer.Name {
	if r.sleeve != nil {
		return r.sleeve.Down()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.simDown)
}

func (r *Router) clock() clock.Clock { return r.cfg.Clock }

// apiAddr is where the API listens, for the log.
func (r *Router) apiAddr() string {
	if r.cfg.HTTPAddr == APIOff {
		return APIOff
	}
	return r.api.Addr()
}

// datapathName names the router's data plane, for the log.
func (r *Router) datapathName() string {
	if r.sleeve == nil {
		return DataPlaneNone
	}
	return r.cfg.Datapath
}

// errNoDataPlane answers requests that need a bridge.
func errNoDataPlane() error {
	return api.Conflict("this router runs without a data plane (datapath %s): it has no bridge to attach endpoints to", DataPlaneNone)
}

// hostBridge is the bridge as features see it; a router without a data
// plane has none, and answers as a bridge with no ports and no addresses.
func (r *Router) hostBridge() feature.Bridge {
	if r.bridge == nil {
		return noBridge{}
	}
	return hostBridge{r.bridge}
}

// noBridge is feature.Bridge for a router without a data plane.
type noBridge struct{}

func (noBridge) Name() string                                     { return DataPlaneNone }
func (noBridge) MTU() int                                         { return DefaultMTU }
func (noBridge) AddPort(string) error                             { return errNoDataPlane() }
func (noBridge) Addrs() ([]netip.Prefix, error)                   { return nil, nil }
func (noBridge) Expose(netip.Prefix) error                        { return errNoDataPlane() }
func (noBridge) Hide(netip.Prefix) error                          { return errNoDataPlane() }
func (noBridge) EndpointAddrs() ([]netip.Addr, error)             { return nil, nil }
func (noBridge) RoutesOverlapping(netip.Prefix) ([]string, error) { return nil, nil }
