package router

import (
	"context"
	"net/netip"

	"weavemesh.dev/weave/api"
)

// attachPlan is an attach request on its way to the bridge. Hooks may
// consume address specs they understand and add prefixes.
type attachPlan struct {
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

// endpointHook is a feature that takes part in the life of endpoints.
// Hooks run in registration order on attach, and in reverse on detach.
// Attach is a transaction (Router.Attach): when a step fails, the hooks
// that took part are undone in reverse, detached for those whose attached
// ran, then abortAttach for all whose prepareAttach succeeded.
type endpointHook interface {
	// prepareAttach may consume specs and add prefixes.
	prepareAttach(ctx context.Context, p *attachPlan) error
	// abortAttach undoes prepareAttach when the attach failed. It also
	// runs after attached and detached in a rolled-back attach, so what
	// attached took over must not be undone twice.
	abortAttach(p *attachPlan)
	// attached runs once the endpoint exists.
	attached(ctx context.Context, p *attachPlan, ep api.Endpoint) error
	// detached runs once the endpoint is gone.
	detached(ctx context.Context, ep api.Endpoint)
	// reconcile runs at start-up with the endpoints that survived the
	// restart, so a feature can drop state of the ones that did not.
	reconcile(ctx context.Context, eps []api.Endpoint)
}
