package feature

import (
	"context"
	"log/slog"
	"net/netip"

	"weavemesh.dev/weave/api"
	"weavemesh.dev/weave/gossip"
	"weavemesh.dev/weave/peer"
)

// Feature is something the router runs on top of the mesh: weaveDNS, IP
// allocation, the Docker plugin, metrics. The router calls its methods
// in this order, one feature after the other in registration order:
//
//	Open(host)      set up with what the host gives; no goroutines yet
//	Channels()      registered with gossip, each then bound (Channel.Bind)
//	Start(ctx)      goroutines start; they run until Close
//	Routes()        served by the HTTP API, with Status at GET /status/NAME
//	...             the endpoint hooks (EndpointHook), Status, requests
//	Close(ctx)      in reverse registration order, on the way out
//
// Open, Channels, Start and Routes run before gossip starts and before the
// API serves, so peers never see the router without the feature's state.
// When Open or Start fails the router stops starting and closes the
// features already started, this one included: Close must cope with a
// feature that only got part way.
//
// Embed Base for the parts a feature does not need.
type Feature interface {
	// Name names the feature in the API (its status section is GET
	// /status/NAME) and in logs ("component"). Lower case, unique.
	Name() string
	// Open sets the feature up: files opened, state built, sockets bound.
	Open(h Host) error
	// Channels are the gossip channels the feature keeps its replicated
	// state in; called once, after Open.
	Channels() []Channel
	// Start starts the feature's goroutines. ctx bounds start-up only;
	// what Start starts runs until Close.
	Start(ctx context.Context) error
	// Routes are the HTTP routes the feature adds to the API; called once,
	// after Start. Build handlers with api.JSON and api.Body so that they
	// follow the API's conventions (docs/api.md).
	Routes() []api.Route
	// Status is the feature's status section, the answer to GET
	// /status/NAME, as a JSON-encodable value. Errors follow the kinds
	// of api/errors.go.
	Status(ctx context.Context) (any, error)
	EndpointHook
	// Close stops what Start started and releases what Open took. It is
	// idempotent and returns once the feature's goroutines have ended.
	Close(ctx context.Context)
}

// Channel is one gossip channel a feature declares.
type Channel struct {
	// Name is the channel name, the same on every peer.
	Name string
	// State is the replicated state (see gossip.State).
	State gossip.State
	// OnMessage receives the channel's unicast messages; it must not
	// block (see gossip.Channel.OnMessage). Optional.
	OnMessage func(from peer.Name, msg []byte)
	// Bind receives the registered channel, to broadcast and send on.
	// It runs before OnMessage is set. Optional.
	Bind func(ch *gossip.Channel)
}

// AttachPlan is an attach request on its way to the bridge. Hooks may
// consume address specs they understand and add prefixes.
type AttachPlan struct {
	ID    string // endpoint id (from the namespace file)
	Netns string
	Name  string // DNS name, may be empty
	// Specs are the request's address items not yet handled: IP/PREFIX, or
	// forms a feature understands (e.g. "net:default"). Whatever is left
	// after the hooks must parse as IP/PREFIX.
	Specs []string
	// Prefixes are the addresses to give the endpoint.
	Prefixes []netip.Prefix
	// Auto is set when the request named no address at all: a feature
	// that can choose one (IP allocation) should.
	Auto bool
}

// EndpointHook is the part of a feature that takes part in the life of
// endpoints. Hooks run in registration order on attach, and in reverse on
// detach. Attach is a transaction (router's Attach): when a step fails,
// the hooks that took part are undone in reverse, Detached for those
// whose Attached ran, then AbortAttach for all whose PrepareAttach
// succeeded. Hooks are called concurrently for different endpoints.
type EndpointHook interface {
	// PrepareAttach may consume specs and add prefixes.
	PrepareAttach(ctx context.Context, p *AttachPlan) error
	// AbortAttach undoes PrepareAttach when the attach failed. It also
	// runs after Attached and Detached in a rolled-back attach, so what
	// Attached took over must not be undone twice.
	AbortAttach(p *AttachPlan)
	// Attached runs once the endpoint exists.
	Attached(ctx context.Context, p *AttachPlan, ep api.Endpoint) error
	// Detached runs once the endpoint is gone.
	Detached(ctx context.Context, ep api.Endpoint)
	// Reconcile runs at start-up, after gossip started, with the
	// endpoints that survived the restart, so a feature can drop state of
	// the ones that did not.
	Reconcile(ctx context.Context, eps []api.Endpoint)
}

// Host is what the router gives a feature in Open: who this peer is,
// where its files go, and small views of the mesh, the bridge and the
// endpoint registry. Every field is set.
type Host struct {
	Self     peer.Name
	Nickname string
	// DataDir is the router's data directory; a feature keeps its files
	// there under names of its own.
	DataDir string
	// Logger is the router's (it names this peer); a feature's parts
	// add "component" for their lines (dns, ipam).
	Logger *slog.Logger
	// Members is gossip's membership, this peer included.
	Members func() []gossip.Member
	// Ready is nil once the router serves, else an api.NotReady error to
	// answer requests that change state with.
	Ready func() error
	// Endpoints lists the records of the endpoint registry (ID, Netns,
	// CIDRs, Name), the endpoints this router attached.
	Endpoints func() []api.Endpoint
	Bridge    Bridge
	// Feature finds another feature by name, for a feature that uses
	// another's services (a plugin uses IP allocation and weaveDNS).
	// During Open only those registered before this one are there.
	// Assert the result to a small interface of the caller's own; ok is
	// false when there is no such feature.
	Feature func(name string) (f Feature, ok bool)
	// Connections is the router's view of its connections to the other
	// peers (as GET /status/connections shows them).
	Connections func(ctx context.Context) ([]api.Connection, error)
	// Peers is the mesh as gossip tells it (as GET /status/peers shows
	// it): every member, and the peers each cannot reach directly.
	Peers func(ctx context.Context) ([]api.Peer, error)
	// Datapaths are the counters of the datapaths that carry frames.
	Datapaths func() []DatapathStats
	// Gossip are the gossip layer's counters.
	Gossip func() gossip.Stats
	// Terminations counts the established connections that ended since
	// the router started, by reason (peer_left, peer_dead, refused,
	// heartbeat_timeout).
	Terminations func() map[string]uint64
}

// DatapathStats are one datapath's counters since the router started.
type DatapathStats struct {
	Name               string // "sleeve", "fastdp"
	TxFrames, RxFrames uint64
	TxBytes, RxBytes   uint64
	Relayed            uint64            // frames passed on for other peers
	Drops              map[string]uint64 // frames dropped, by reason
	Failures           uint64            // times the datapath stopped on an error and was restarted
}

// Bridge is what features may do with the host's weave bridge.
type Bridge interface {
	// Name is the bridge's interface name; MTU is the overlay MTU, the
	// bridge's and its ports'.
	Name() string
	MTU() int
	// AddPort makes the existing interface iface a port of the bridge at
	// the bridge's MTU and brings it up (the Docker plugin's veths).
	// Idempotent.
	AddPort(iface string) error
	// Addrs lists the bridge's own addresses (weave expose adds them).
	Addrs() ([]netip.Prefix, error)
	// Expose gives the bridge an address; Hide takes one away.
	Expose(p netip.Prefix) error
	Hide(p netip.Prefix) error
	// EndpointAddrs lists the addresses of every endpoint on the bridge,
	// failing when one's cannot be read.
	EndpointAddrs() ([]netip.Addr, error)
	// RoutesOverlapping describes the host's routes, other than the
	// bridge's own, that overlap p.
	RoutesOverlapping(p netip.Prefix) ([]string, error)
}

// Base implements every method of Feature but Name, Open and Status as
// doing nothing, for features to embed.
type Base struct{}

func (Base) Channels() []Channel                                       { return nil }
func (Base) Start(context.Context) error                               { return nil }
func (Base) Routes() []api.Route                                       { return nil }
func (Base) PrepareAttach(context.Context, *AttachPlan) error          { return nil }
func (Base) AbortAttach(*AttachPlan)                                   {}
func (Base) Attached(context.Context, *AttachPlan, api.Endpoint) error { return nil }
func (Base) Detached(context.Context, api.Endpoint)                    {}
func (Base) Reconcile(context.Context, []api.Endpoint)                 {}
func (Base) Close(context.Context)                                     {}
