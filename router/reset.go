package router

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"weavemesh.dev/weave/api"
	"weavemesh.dev/weave/netdev"
)

// handingOver is what the IP allocation feature offers weave reset.
type handingOver interface {
	HandOver() (to string, addresses uint32, err error)
}

// serveReset answers POST /reset: detach every endpoint this router
// attached, hand its address space to a live peer, let gossip carry that
// out, and stop. weave reset then removes the bridge, devices and data.
func (r *Router) serveReset(req *http.Request) (any, error) {
	if err := r.checkReady(); err != nil {
		return nil, err
	}
	ctx := req.Context()
	// Interfaces on the bridge that this router did not attach belong to
	// someone else (Docker containers on weavemesh networks): resetting
	// would cut them off and hand their addresses away.
	ours := map[string]bool{}
	for _, ep := range r.registered() {
		if len(ep.ID) >= 8 {
			ours[netdev.HostIfacePrefix+ep.ID[:8]] = true // how netdev names the host end
		}
	}
	if r.bridge == nil {
		return nil, errNoDataPlane()
	}
	if eps, err := r.bridge.Endpoints(); err == nil {
		var foreign []string
		for _, ep := range eps {
			if !ours[ep.HostIface] {
				foreign = append(foreign, ep.HostIface)
			}
		}
		if len(foreign) > 0 {
			return nil, api.Conflict("%d interfaces on the %s bridge were not attached by weave attach (%s; Docker containers on weavemesh networks?): stop those containers or disconnect them (docker network disconnect) first, then weave reset",
				len(foreign), BridgeName, strings.Join(foreign, ", "))
		}
	}
	var out api.ResetResponse
	for _, ep := range r.registered() {
		if _, err := r.Detach(ctx, api.DetachRequest{Netns: ep.Netns}); err != nil {
			out.Warnings = append(out.Warnings, fmt.Sprintf("detach %s: %v", ep.Netns, err))
			continue
		}
		out.Detached = append(out.Detached, ep.Netns)
	}
	if f, ok := r.feature("ipam"); ok {
		if h, ok := f.(handingOver); ok {
			to, n, err := h.HandOver()
			if err != nil {
				out.Warnings = append(out.Warnings, err.Error())
			}
			out.HandedTo, out.Addresses = to, n
		}
	}
	r.flushGossip(ctx, 3*time.Second)
	r.log.Warn("reset: endpoints detached, address space handed over; stopping", "detached", len(out.Detached), "handed_to", out.HandedTo)
	r.requestStop()
	return out, nil
}

// flushGossip waits, at most d, for queued deltas to go out, so the
// hand-over reaches the mesh before this router leaves it.
func (r *Router) flushGossip(ctx context.Context, d time.Duration) {
	deadline := time.Now().Add(d)
	for r.gossip.Stats().BroadcastsPending > 0 && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// feature finds a running feature by name.
func (r *Router) feature(name string) (any, bool) {
	for _, f := range r.started {
		if f.Name() == name {
			return f, true
		}
	}
	return nil, false
}
