package ipamfeature

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"time"

	"weavemesh.dev/weave/api"
	"weavemesh.dev/weave/ipam"
	"weavemesh.dev/weave/peer"
)

// Routes implements feature.Feature: weave rmpeer, expose and hide
// (docs/api.md).
func (f *Feature) Routes() []api.Route {
	return []api.Route{
		{Pattern: "POST /ipam/rmpeer", Handler: api.Body(f.rmpeer)},
		{Pattern: "POST /expose", Handler: api.Body(f.expose)},
		{Pattern: "POST /hide", Handler: api.Body(f.hide)},
	}
}

// Status implements feature.Feature: GET /status/ipam, an api.IPAMStatus.
func (f *Feature) Status(ctx context.Context) (any, error) {
	st := f.a.Status()
	out := api.IPAMStatus{
		Range: st.Range.String(), DefaultSubnet: st.DefaultSubnet.String(), Init: st.Init,
		ReclaimAfterSeconds: st.ReclaimAfter.Seconds(), Ready: st.Ready, Reason: st.Reason,
		Unverified: st.Unverified, Conflicts: st.Conflicts, AddressConflicts: st.AddressConflicts,
		Consensus: st.Consensus, Quarantined: st.Quarantined, PendingClaims: st.PendingClaims,
		Counters: api.IPAMCounters(st.Counters),
		Peers:    []api.IPAMPeer{}, Allocations: []api.IPAMAllocation{},
	}
	if !st.QuarantineUntil.IsZero() {
		out.QuarantineUntil = st.QuarantineUntil.UTC().Format(time.RFC3339)
	}
	if st.RingID != 0 {
		out.RingID = fmt.Sprintf("%016x", st.RingID)
	}
	for _, s := range st.Peers {
		nick := s.Nickname
		if s.Self {
			nick = f.host.Nickname
		}
		out.Peers = append(out.Peers, api.IPAMPeer{
			Name: s.Name.String(), Nickname: nick, Self: s.Self, Reachable: s.Reachable, Removed: s.Removed,
			Addresses: s.Addresses, Percent: s.Percent, Spans: s.Spans, Allocated: s.Allocated,
		})
	}
	for _, a := range st.Allocations {
		out.Allocations = append(out.Allocations, api.IPAMAllocation{Address: a.Addr.String(), Owner: a.Owner})
	}
	return out, nil
}

func (f *Feature) rmpeer(r *http.Request, req api.RmpeerRequest) (any, error) {
	var resp api.RmpeerResponse
	for _, s := range req.Peers {
		name, err := f.resolvePeer(s)
		if err != nil {
			return nil, err
		}
		msg, err := f.a.RemovePeer(name)
		if err != nil {
			if errors.Is(err, ipam.ErrUnavailable) {
				return nil, api.NotReady("%v", err)
			}
			return nil, api.Conflict("%v", err)
		}
		f.log.Warn("peer removed by weave rmpeer", "peer", name)
		resp.Messages = append(resp.Messages, msg)
	}
	return resp, nil
}

// resolvePeer accepts a peer name or the nickname of exactly one member.
func (f *Feature) resolvePeer(s string) (peer.Name, error) {
	if n, err := peer.ParseName(s); err == nil {
		return n, nil
	}
	var found []peer.Name
	for _, m := range f.host.Members() {
		if m.Nickname == s {
			found = append(found, m.Name)
		}
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		return 0, api.BadRequest("%q is neither a peer name (aa:bb:cc:dd:ee:ff) nor the nickname of a known peer; see weave status ipam", s)
	}
	return 0, api.BadRequest("nickname %q names %d peers; give the peer name instead (see weave status ipam)", s, len(found))
}

func (f *Feature) expose(r *http.Request, req api.ExposeRequest) (any, error) {
	if err := f.host.Ready(); err != nil {
		return nil, err
	}
	items := req.CIDRs
	if len(items) == 0 {
		items = []string{"net:default"}
	}
	resp := api.ExposeResponse{CIDRs: []string{}}
	for _, item := range items {
		p, err := f.exposeOne(r.Context(), item)
		if err != nil {
			return nil, err
		}
		resp.CIDRs = append(resp.CIDRs, p.String())
	}
	return resp, nil
}

// exposeOne gives the bridge an address: the one it already has in the
// subnet, a new allocation, or the one given.
func (f *Feature) exposeOne(ctx context.Context, item string) (netip.Prefix, error) {
	sub, isNet, err := f.subnetOf(item)
	if err != nil {
		return netip.Prefix{}, err
	}
	br := f.host.Bridge
	if !isNet {
		p, err := netip.ParsePrefix(item)
		if err != nil {
			return p, api.BadRequest("%q: want IP/PREFIX, net:CIDR or net:default", item)
		}
		if err := br.Expose(p); err != nil {
			return p, api.Conflict("%v", err)
		}
		if warn := f.a.Claim(exposeOwner, p.Addr()); warn != "" {
			f.log.Warn("exposed address chosen by hand", "address", p, "note", warn)
		}
		return p, nil
	}
	have, err := br.Addrs()
	if err != nil {
		return netip.Prefix{}, err
	}
	mine := f.a.Owned(exposeOwner)
	for _, q := range have {
		if q.Bits() == sub.Bits() && sub.Contains(q.Addr()) && slices.Contains(mine, q.Addr()) {
			return q, nil
		}
	}
	p, err := f.allocate(ctx, exposeOwner, sub)
	if err != nil {
		return p, err
	}
	if err := br.Expose(p); err != nil {
		f.a.ReleaseAddr(exposeOwner, p.Addr())
		return p, err
	}
	f.log.Info("exposed the host on the overlay", "address", p)
	return p, nil
}

func (f *Feature) hide(r *http.Request, req api.ExposeRequest) (any, error) {
	have, err := f.host.Bridge.Addrs()
	if err != nil {
		return nil, err
	}
	var targets []netip.Prefix
	for _, q := range have {
		hit := len(req.CIDRs) == 0
		for _, item := range req.CIDRs {
			sub, isNet, err := f.subnetOf(item)
			if err != nil {
				return nil, err
			}
			if isNet {
				hit = hit || (q.Bits() == sub.Bits() && sub.Contains(q.Addr()))
			} else if p, err := netip.ParsePrefix(item); err == nil {
				hit = hit || p == q
			}
		}
		if hit {
			targets = append(targets, q)
		}
	}
	resp := api.ExposeResponse{CIDRs: []string{}}
	for _, q := range targets {
		if err := f.host.Bridge.Hide(q); err != nil {
			return nil, err
		}
		f.a.ReleaseAddr(exposeOwner, q.Addr())
		resp.CIDRs = append(resp.CIDRs, q.String())
	}
	return resp, nil
}
