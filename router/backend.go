package router

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"weavemesh.dev/weave/api"
	"weavemesh.dev/weave/feature"
	"weavemesh.dev/weave/gossip"
	"weavemesh.dev/weave/netdev"
	"weavemesh.dev/weave/peer"
	"weavemesh.dev/weave/sleeve"
)

// Connection states, as the API and CLI show them.
const (
	ConnEstablished = "established"
	ConnRelayed     = "relayed"
	ConnConnecting  = "connecting"
	ConnFailed      = "failed"
)

const datapathSleeve = "sleeve"

func (r *Router) versionInfo() api.Version {
	return api.Version{Version: r.cfg.Version, ProtoMin: int(protoMin), ProtoMax: int(protoMax), Go: runtime.Version()}
}

func (r *Router) checkReady() error {
	if !r.ready.Load() {
		return api.NotReady("the router is starting or stopping; try again in a moment")
	}
	return nil
}

// Status implements api.Backend.
func (r *Router) Status(ctx context.Context) (api.Status, error) {
	st := api.Status{
		Name: r.name.String(), Nickname: r.cfg.Nickname, Version: r.cfg.Version,
		Ready: r.ready.Load(), Port: r.cfg.Port, DataPort: r.cfg.DataPort, OverlayMTU: r.cfg.MTU,
		Encryption:  len(r.cfg.Password) > 0,
		Connections: map[string]int{ConnEstablished: 0, ConnRelayed: 0, ConnConnecting: 0, ConnFailed: 0},
		Datapaths:   map[string]int{},
		Fastdp:      r.kdp.status(),
	}
	if r.gossip == nil {
		return st, nil
	}
	st.Peers = 1
	for _, m := range r.gossip.Members() {
		if m.Name != r.name && (m.State == gossip.Alive || m.State == gossip.Suspect) {
			st.Peers++
		}
	}
	if r.sleeve == nil {
		st.Datapaths[DataPlaneNone] = st.Peers - 1
		return st, nil
	}
	conns, _ := r.Connections(ctx)
	for _, c := range conns {
		st.Connections[c.State]++
		if c.State == ConnEstablished || c.State == ConnRelayed {
			st.Datapaths[c.Datapath]++
		}
	}
	ss := r.sleeve.Stats()
	st.Drops = ss.Drops
	st.Sleeve = &api.SleeveStatus{Pipelines: r.sleeve.Pipelines(), TxDatagrams: ss.TxDatagrams, RxDatagrams: ss.RxDatagrams, Syscalls: ss.Syscalls}
	st.DatapathFailures = r.dp.counts()
	return st, nil
}

// Peers implements api.Backend.
func (r *Router) Peers(ctx context.Context) ([]api.Peer, error) {
	if r.gossip == nil {
		return nil, r.checkReady()
	}
	var out []api.Peer
	var down map[peer.Name][]peer.Name
	if r.topo != nil {
		down = r.topo.Down()
	}
	for _, m := range r.gossip.Members() {
		p := api.Peer{
			Name: m.Name.String(), Nickname: m.Nickname, Address: m.GossipAddr.String(),
			State: m.State.String(), Since: m.Since, Version: m.Version,
			ProtoMin: int(m.ProtoMin), ProtoMax: int(m.ProtoMax), Self: m.Name == r.name,
		}
		if m.DataAddr.IsValid() {
			p.DataAddr = m.DataAddr.String()
		}
		for _, d := range down[m.Name] {
			p.Unreachable = append(p.Unreachable, d.String())
		}
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b api.Peer) int {
		if a.Self != b.Self {
			if a.Self {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Name, b.Name)
	})
	return out, nil
}

// Connections implements api.Backend.
func (r *Router) Connections(ctx context.Context) ([]api.Connection, error) {
	if r.sleeve == nil {
		return nil, r.checkReady()
	}
	r.mu.Lock()
	alive := r.alive
	r.mu.Unlock()
	links := map[peer.Name]sleeve.Link{}
	for _, l := range r.sleeve.Links() {
		links[l.Peer] = l
	}
	rt := r.routes.Get()
	var out []api.Connection
	for _, m := range r.gossip.Members() {
		if m.Name == r.name || (m.State != gossip.Alive && m.State != gossip.Suspect) {
			continue
		}
		c := api.Connection{Peer: m.Name.String(), Nickname: m.Nickname, Datapath: datapathSleeve}
		if m.DataAddr.IsValid() {
			c.Address = m.DataAddr.String()
		}
		if _, ok := alive[m.Name]; !ok {
			c.State = ConnFailed
			if c.Reason = refusalReason(m); c.Reason == "" {
				c.Reason = "no data address in the peer's metadata"
			}
			out = append(out, c)
			continue
		}
		l, ok := links[m.Name]
		if !ok {
			c.State = ConnConnecting
			out = append(out, c)
			continue
		}
		c.MTU = l.OverlayMTU
		c.TxFrames, c.RxFrames, c.TxBytes, c.RxBytes = l.TxFrames, l.RxFrames, l.TxBytes, l.RxBytes
		c.RTTMillis = float64(l.RTT) / float64(time.Millisecond)
		c.Encrypted = r.sleeve.Encrypted(m.Name)
		c.Cipher = r.sleeve.Cipher(m.Name)
		c.Datapath, c.DatapathReason = r.kdp.datapathOf(m.Name)
		switch l.State {
		case sleeve.LinkUp:
			c.State = ConnEstablished
		case sleeve.LinkConnecting:
			c.State = ConnConnecting
		default:
			if via, ok := rt.NextHop(m.Name); ok && via != m.Name {
				c.State = ConnRelayed
				c.Via = via.String()
			} else {
				c.State = ConnFailed
				c.Reason = fmt.Sprintf("no heartbeat from %s, and no other peer can relay", l.Addr)
			}
		}
		out = append(out, c)
	}
	r.dp.markFailed(out)
	slices.SortFunc(out, func(a, b api.Connection) int { return strings.Compare(a.Peer, b.Peer) })
	return out, nil
}

// Connect implements api.Backend.
func (r *Router) Connect(ctx context.Context, peers []string) error {
	if err := r.checkReady(); err != nil {
		return err
	}
	for _, p := range peers {
		if err := validPeerAddr(p); err != nil {
			return api.BadRequest("%v", err)
		}
	}
	// Peers that do not answer yet stay remembered and are retried, as
	// with peers named at launch, so that is not a failure.
	if err := r.gossip.Connect(peers); err != nil {
		r.log.Info("peers do not answer yet; retrying in the background", "peers", peers, "err", err)
	}
	return nil
}

// Forget implements api.Backend.
func (r *Router) Forget(ctx context.Context, peers []string) error {
	if err := r.checkReady(); err != nil {
		return err
	}
	for _, p := range peers {
		if err := validPeerAddr(p); err != nil {
			return api.BadRequest("%v", err)
		}
	}
	return r.gossip.Forget(peers)
}

// Attach implements api.Backend.
//
// Attach is a transaction. Its steps are the features' PrepareAttach (IP
// allocation), the veth on the bridge, the registry record and the
// features' Attached (DNS registration); when one fails, every step that
// succeeded is undone, in reverse. A new endpoint's veth is deleted; an
// endpoint that was there before (a second attach adding addresses) loses
// only the addresses this attach added and keeps its previous record.
// Features whose Attached ran on an endpoint that was there before are not
// undone: Detached would drop what they held for it before this attach.
func (r *Router) Attach(ctx context.Context, req api.AttachRequest) (api.Endpoint, error) {
	if err := r.checkReady(); err != nil {
		return api.Endpoint{}, err
	}
	if r.bridge == nil {
		return api.Endpoint{}, errNoDataPlane()
	}
	if req.Netns == "" {
		return api.Endpoint{}, api.BadRequest("netns is required")
	}
	id, err := netdev.EndpointID(req.Netns)
	if err != nil {
		return api.Endpoint{}, api.BadRequest("%v", err)
	}
	plan := &feature.AttachPlan{ID: id, Netns: req.Netns, Name: req.Name, Specs: req.CIDRs, Auto: len(req.CIDRs) == 0}
	var undo []func()
	fail := func(err error) (api.Endpoint, error) {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
		return api.Endpoint{}, err
	}
	for _, h := range r.hooks {
		if err := h.PrepareAttach(ctx, plan); err != nil {
			return fail(err)
		}
		undo = append(undo, func() { h.AbortAttach(plan) })
	}
	for _, s := range plan.Specs {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return fail(api.BadRequest("address %q: want IP/PREFIX such as 10.32.0.5/12", s))
		}
		plan.Prefixes = append(plan.Prefixes, p)
	}
	if len(plan.Prefixes) == 0 {
		return fail(api.BadRequest("give at least one address as IP/PREFIX"))
	}

	// What was there before, to undo exactly what this attach adds.
	prev, err := r.bridge.Inspect(req.Netns)
	existed := err == nil
	if err != nil && !endpointGone(err) {
		return fail(fmt.Errorf("attach %s: %w", req.Netns, err))
	}
	nep, err := r.bridge.Attach(netdev.AttachOptions{Netns: req.Netns, CIDRs: plan.Prefixes, MTU: r.cfg.MTU, IfName: req.Iface})
	if err != nil {
		if errors.Is(err, netdev.ErrNotNetns) {
			err = api.BadRequest("%v", err)
		}
		return fail(err)
	}
	if existed {
		added := slices.DeleteFunc(slices.Clone(plan.Prefixes), func(p netip.Prefix) bool { return slices.Contains(prev.CIDRs, p) })
		undo = append(undo, func() {
			if err := r.bridge.RemoveAddrs(req.Netns, added); err != nil {
				r.log.Warn("attach failed; cannot remove the addresses it added", "netns", req.Netns, "cidrs", added, "err", err)
			}
		})
	} else {
		undo = append(undo, func() {
			if _, err := r.bridge.Detach(req.Netns); err != nil && !endpointGone(err) {
				r.log.Warn("attach failed; cannot remove the endpoint it made", "netns", req.Netns, "err", err)
			}
		})
	}

	ep := apiEndpoint(nep, req.Name)
	prevRec, hadRec := r.eps.get(ep.ID)
	if err := r.eps.put(endpointRecord{ID: ep.ID, Netns: req.Netns, CIDRs: ep.CIDRs, Name: req.Name}); err != nil {
		return fail(err)
	}
	undo = append(undo, func() {
		var err error
		if hadRec {
			err = r.eps.put(prevRec)
		} else {
			err = r.eps.remove(ep.ID)
		}
		if err != nil {
			r.log.Warn("attach failed; cannot restore the endpoint registry", "netns", req.Netns, "err", err)
		}
	})

	for _, h := range r.hooks {
		if err := h.Attached(ctx, plan, ep); err != nil {
			if existed {
				return ep, err
			}
			return fail(err)
		}
		undo = append(undo, func() { h.Detached(ctx, ep) })
	}
	r.log.Info("attached", "netns", req.Netns, "iface", ep.HostIface, "mac", ep.MAC, "cidrs", ep.CIDRs)
	return ep, nil
}

// Detach implements api.Backend.
func (r *Router) Detach(ctx context.Context, req api.DetachRequest) (api.Endpoint, error) {
	if err := r.checkReady(); err != nil {
		return api.Endpoint{}, err
	}
	if r.bridge == nil {
		return api.Endpoint{}, errNoDataPlane()
	}
	if req.Netns == "" {
		return api.Endpoint{}, api.BadRequest("netns is required")
	}
	nep, err := r.bridge.Detach(req.Netns)
	var ep api.Endpoint
	switch {
	case err == nil:
		rec, _ := r.eps.get(nep.ID)
		ep = apiEndpoint(nep, rec.Name)
	case endpointGone(err):
		// The namespace is gone (its veth went with it) or never had
		// our endpoint: release what the registry still holds for it.
		rec, ok := r.eps.byNetns(req.Netns)
		if !ok {
			return api.Endpoint{}, api.NotFound("%v", err)
		}
		ep = api.Endpoint{ID: rec.ID, Netns: rec.Netns, CIDRs: rec.CIDRs, Name: rec.Name}
	default:
		return api.Endpoint{}, err
	}
	r.forgetEndpoint(ctx, ep)
	r.log.Info("detached", "netns", req.Netns, "iface", ep.HostIface)
	return ep, nil
}

// forgetEndpoint drops an endpoint from the registry and tells the
// features, in reverse order of attach.
func (r *Router) forgetEndpoint(ctx context.Context, ep api.Endpoint) {
	if err := r.eps.remove(ep.ID); err != nil {
		r.log.Warn("update endpoints", "err", err)
	}
	for i := len(r.hooks) - 1; i >= 0; i-- {
		r.hooks[i].Detached(ctx, ep)
	}
}

// sweepEndpoints forgets endpoints whose namespace has gone away (the
// container exited without weave detach), so their addresses and names are
// released.
func (r *Router) sweepEndpoints(ctx context.Context) {
	if r.bridge == nil {
		return
	}
	for _, rec := range r.eps.list() {
		if _, err := r.bridge.Inspect(rec.Netns); endpointGone(err) {
			r.log.Info("endpoint's namespace is gone; releasing it", "netns", rec.Netns, "cidrs", rec.CIDRs)
			r.forgetEndpoint(ctx, api.Endpoint{ID: rec.ID, Netns: rec.Netns, CIDRs: rec.CIDRs, Name: rec.Name})
		}
	}
}

// Endpoints implements api.Backend.
func (r *Router) Endpoints(ctx context.Context) ([]api.Endpoint, error) {
	if r.eps == nil {
		return nil, r.checkReady()
	}
	var out []api.Endpoint
	for _, rec := range r.eps.list() {
		if r.bridge == nil {
			out = append(out, api.Endpoint{ID: rec.ID, Netns: rec.Netns, CIDRs: rec.CIDRs, Name: rec.Name})
			continue
		}
		ep, err := r.bridge.Inspect(rec.Netns)
		if err != nil {
			out = append(out, api.Endpoint{ID: rec.ID, Netns: rec.Netns, CIDRs: rec.CIDRs, Name: rec.Name})
			continue
		}
		out = append(out, apiEndpoint(ep, rec.Name))
	}
	return out, nil
}

// Stop implements api.Backend.
func (r *Router) Stop(ctx context.Context) error {
	r.requestStop()
	return nil
}

func apiEndpoint(ep netdev.Endpoint, name string) api.Endpoint {
	return api.Endpoint{
		ID: ep.ID, Netns: ep.Netns, HostIface: ep.HostIface, Iface: ep.Iface,
		MAC: ep.MAC.String(), CIDRs: prefixStrings(ep.CIDRs), MTU: ep.MTU, Name: name,
	}
}

func prefixStrings(ps []netip.Prefix) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	return out
}

// endpointGone reports an error saying the namespace no longer exists, or
// holds no endpoint of ours.
func endpointGone(err error) bool {
	return errors.Is(err, netdev.ErrNotNetns) || errors.Is(err, netdev.ErrNotAttached) || errors.Is(err, os.ErrNotExist)
}
