package gossip

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"

	"weavemesh.dev/weave/mesh/mix"
	"weavemesh.dev/weave/peer"
)

// MemberState is what this peer believes about another.
type MemberState uint8

const (
	// Alive: the member answers probes.
	Alive MemberState = iota
	// Suspect is reserved for members that stopped answering but are not
	// yet declared dead. memberlist v0.7.0 reports no event when it starts
	// suspecting a member, so members currently go from Alive to Dead.
	Suspect
	// Dead: the member stopped answering probes and was declared failed.
	Dead
	// Left: the member left the mesh on purpose.
	Left
)

// String returns "alive", "suspect", "dead" or "left".
func (s MemberState) String() string {
	switch s {
	case Alive:
		return "alive"
	case Suspect:
		return "suspect"
	case Dead:
		return "dead"
	case Left:
		return "left"
	}
	return fmt.Sprintf("MemberState(%d)", uint8(s))
}

// Member is one peer of the mesh as this peer sees it.
type Member struct {
	Name       peer.Name
	Nickname   string
	GossipAddr netip.AddrPort // memberlist address, tcp+udp
	DataAddr   netip.AddrPort // sleeve address: the gossip IP and the advertised data port
	ProtoMin   uint8          // sleeve protocol versions spoken
	ProtoMax   uint8
	Version    string
	Fastdp     Fastdp // the peer's kernel datapath; zero: sleeve only
	State      MemberState
	Since      time.Time // when State last changed, by the local clock
	// MetaErr is set when the member's metadata could not be decoded (a
	// corrupt or incompatible peer). Nickname, DataAddr, ProtoMin,
	// ProtoMax and Version are then zero and the member must not be used
	// for data.
	MetaErr error
}

// String is for logs.
func (m Member) String() string {
	return fmt.Sprintf("%s(%s) %s %s", m.Name, m.Nickname, m.GossipAddr, m.State)
}

// memberEntry is the member table's record of one peer.
type memberEntry struct {
	m       Member
	leaving bool // the member's metadata says it is leaving on purpose
}

// applyNode fills the address and metadata fields of e from n.
func (n *Node) applyNode(e *memberEntry, mn *memberlist.Node) {
	ip, _ := netip.AddrFromSlice(mn.Addr)
	ip = ip.Unmap()
	e.m.GossipAddr = netip.AddrPortFrom(ip, mn.Port)
	md, err := decodeMeta(mn.Meta)
	if err != nil {
		e.m.MetaErr = err
		e.m.Nickname, e.m.Version = "", ""
		e.m.ProtoMin, e.m.ProtoMax = 0, 0
		e.m.DataAddr = netip.AddrPort{}
		e.m.Fastdp = Fastdp{}
		e.leaving = false
		n.stats.decodeErrors.Add(1)
		if ok, suppressed := n.logLimit.allow("meta " + mn.Name); ok {
			n.log.Warn("member has metadata this peer cannot read; it is listed but not used",
				"peer", mn.Name, "addr", e.m.GossipAddr, "err", err, "suppressed", suppressed)
		}
		return
	}
	e.m.MetaErr = nil
	e.m.Nickname, e.m.Version = md.nickname, md.version
	e.m.ProtoMin, e.m.ProtoMax = md.protoMin, md.protoMax
	e.m.DataAddr = netip.AddrPortFrom(ip, md.dataPort)
	e.m.Fastdp = md.fastdp
	e.leaving = md.leaving
}

// setState records a state change for e and keeps the alive count and
// the hash of the alive names, which anti-entropy's digests carry.
func (n *Node) setState(e *memberEntry, s MemberState, now time.Time) {
	if e.m.State == s && !e.m.Since.IsZero() {
		return
	}
	wasAlive := e.m.State == Alive && !e.m.Since.IsZero()
	if wasAlive && s != Alive {
		n.alive.Add(-1)
		n.aliveHash.Add(-mix.Mix64(uint64(e.m.Name)))
	} else if !wasAlive && s == Alive {
		n.alive.Add(1)
		n.aliveHash.Add(mix.Mix64(uint64(e.m.Name)))
	}
	e.m.State, e.m.Since = s, now
}

// events receives memberlist's membership events. memberlist calls it with
// its node lock held, one event at a time, so it only updates the member
// table and never calls back into memberlist.
type events Node

func (ev *events) NotifyJoin(n *memberlist.Node)   { (*Node)(ev).nodeEvent(n, Alive, false) }
func (ev *events) NotifyUpdate(n *memberlist.Node) { (*Node)(ev).nodeEvent(n, Alive, false) }
func (ev *events) NotifyLeave(n *memberlist.Node)  { (*Node)(ev).nodeEvent(n, Dead, true) }

// nodeEvent applies one membership event. memberlist does not say whether a
// member that went away failed or left on purpose; a peer that leaves
// first sets the leaving flag in its metadata, which tells the two apart.
func (n *Node) nodeEvent(mn *memberlist.Node, s MemberState, gone bool) {
	name, err := peer.ParseName(mn.Name)
	if err != nil {
		return // refused by aliveCheck; never in the table
	}
	now := n.cfg.Clock.Now()
	n.mu.Lock()
	e, ok := n.members[name]
	if !ok {
		e = &memberEntry{m: Member{Name: name}}
		n.members[name] = e
		i, _ := slices.BinarySearchFunc(n.order, name, byName)
		n.order = slices.Insert(n.order, i, e)
	}
	n.applyNode(e, mn)
	if gone && e.leaving {
		s = Left
	}
	n.setState(e, s, now)
	n.tableChanged()
	addr := e.m.GossipAddr
	n.mu.Unlock()

	if s == Alive && name != n.cfg.Name && addr.IsValid() {
		n.known.learn(addr.String(), now)
	}
	n.changed()
}

// changed signals Changes without blocking.
func (n *Node) changed() {
	select {
	case n.changes <- struct{}{}:
	default:
	}
}

// Members returns every member this peer knows, itself included: alive
// ones, and dead or left ones for Config.DeadRetention after they went,
// sorted by name.
//
// The slice is shared by every caller until membership changes, so that
// the once-a-second rounds of the router, weaveDNS and IP allocation cost
// nothing while a large mesh is steady: callers must not modify it (or
// append to it in place); copy it to change it.
func (n *Node) Members() []Member {
	ms, _ := n.MemberView()
	return ms
}

// MemberView returns what Members returns, read-only, and its generation:
// a number that changes whenever the list does, so a caller that derives
// state from the members can skip the work while the generation stays
// the one it last saw.
func (n *Node) MemberView() ([]Member, uint64) {
	now := n.cfg.Clock.Now()
	if v := n.view.Load(); v != nil && v.version == n.tableVersion.Load() && v.current(now) {
		return v.list, v.gen
	}
	v := n.buildView(now)
	return v.list, v.gen
}

// memberView is an immutable, sorted copy of the member table.
type memberView struct {
	version uint64    // the table's version it was built from
	gen     uint64    // this view's generation, see MemberView
	built   time.Time // the local clock when it was built
	// expires is when the oldest gone member listed passes
	// DeadRetention and leaves the list; zero: none listed.
	expires time.Time
	list    []Member
}

// current reports whether the view still holds at now: no gone member
// has aged out, and the clock has not stepped back past its build (which
// would bring back members already aged out).
func (v *memberView) current(now time.Time) bool {
	if now.Before(v.built) {
		return false
	}
	return v.expires.IsZero() || now.Before(v.expires)
}

// buildView rebuilds the shared view from the member table.
func (n *Node) buildView(now time.Time) *memberView {
	cutoff := now.Add(-n.cfg.DeadRetention)
	n.mu.RLock()
	v := &memberView{version: n.tableVersion.Load(), built: now, list: make([]Member, 0, len(n.order))}
	for _, e := range n.order {
		if gone(e.m.State) {
			if e.m.Since.Before(cutoff) {
				continue
			}
			if exp := e.m.Since.Add(n.cfg.DeadRetention); v.expires.IsZero() || exp.Before(v.expires) {
				v.expires = exp
			}
		}
		v.list = append(v.list, e.m)
	}
	n.mu.RUnlock()
	v.gen = n.viewGen.Add(1)
	n.view.Store(v)
	return v
}

// byName orders member entries by name.
func byName(e *memberEntry, name peer.Name) int { return cmp.Compare(e.m.Name, name) }

// tableChanged marks the member table changed; the caller holds mu for
// writing.
func (n *Node) tableChanged() { n.tableVersion.Add(1) }

// Local returns this peer's own member record.
func (n *Node) Local() Member {
	n.mu.RLock()
	defer n.mu.RUnlock()
	if e, ok := n.members[n.cfg.Name]; ok {
		return e.m
	}
	return Member{Name: n.cfg.Name, Nickname: n.cfg.Nickname, ProtoMin: n.cfg.ProtoMin,
		ProtoMax: n.cfg.ProtoMax, Version: n.cfg.Version}
}

// member returns the record of name.
func (n *Node) member(name peer.Name) (Member, bool) {
	n.mu.RLock()
	defer n.mu.RUnlock()
	e, ok := n.members[name]
	if !ok {
		return Member{}, false
	}
	return e.m, true
}

// pruneMembers drops dead and left members older than DeadRetention.
func (n *Node) pruneMembers(now time.Time) {
	cutoff := now.Add(-n.cfg.DeadRetention)
	pruned := false
	n.mu.Lock()
	for name, e := range n.members {
		if gone(e.m.State) && e.m.Since.Before(cutoff) {
			delete(n.members, name)
			n.tableChanged()
			pruned = true
		}
	}
	if pruned {
		n.order = slices.DeleteFunc(n.order, func(e *memberEntry) bool { return n.members[e.m.Name] != e })
	}
	n.mu.Unlock()
	if pruned {
		n.changed()
	}
}

// aliveAddrs returns the gossip addresses of alive members.
func (n *Node) aliveAddrs() map[string]peer.Name {
	n.mu.RLock()
	defer n.mu.RUnlock()
	out := make(map[string]peer.Name, len(n.members))
	for _, e := range n.members {
		if !gone(e.m.State) && e.m.GossipAddr.IsValid() {
			out[e.m.GossipAddr.String()] = e.m.Name
		}
	}
	return out
}

// recentlyFailed lists the gossip addresses of members declared dead less
// than d ago. memberlist keeps gossiping to a dead member for a while
// (GossipToTheDeadTime), so a peer declared dead by mistake (a CPU-starved
// one that missed its probes) hears of it and refutes without a join;
// joining it as well had every router push-pull with it, which at 500
// peers fed the starvation that caused the mistake.
func (n *Node) recentlyFailed(now time.Time, d time.Duration) map[string]bool {
	n.mu.RLock()
	defer n.mu.RUnlock()
	var out map[string]bool
	for _, e := range n.members {
		if e.m.State == Dead && now.Sub(e.m.Since) < d && e.m.GossipAddr.IsValid() {
			if out == nil {
				out = map[string]bool{}
			}
			out[e.m.GossipAddr.String()] = true
		}
	}
	return out
}

func gone(s MemberState) bool { return s == Dead || s == Left }

// aliveCheck refuses memberlist nodes whose names are not peer names: they
// are not weave peers, and every message about them would be useless.
type aliveCheck Node

func (a *aliveCheck) NotifyAlive(mn *memberlist.Node) error {
	if _, err := peer.ParseName(mn.Name); err != nil {
		n := (*Node)(a)
		if ok, suppressed := n.logLimit.allow("name " + mn.Name); ok {
			n.log.Warn("refusing a gossip member whose name is not a peer name",
				"name", mn.Name, "addr", mn.Address(), "suppressed", suppressed)
		}
		return fmt.Errorf("%q is not a peer name", mn.Name)
	}
	return nil
}

// conflicts explains a peer name claimed by two addresses.
type conflicts Node

func (c *conflicts) NotifyConflict(existing, other *memberlist.Node) {
	n := (*Node)(c)
	if ok, suppressed := n.logLimit.allow("conflict " + existing.Name); ok {
		n.log.Error("two hosts claim the same peer name; give each host its own data directory (peer name)",
			"peer", existing.Name, "known_addr", existing.Address(), "other_addr", other.Address(),
			"suppressed", suppressed)
	}
}

// MembersCache holds a value derived from a member list and derives it
// again only when Members returns a different list: the list is shared
// until membership changes, so the same list means the same members. The
// zero value is ready; it is safe for concurrent use, and derive must not
// keep or modify the list.
type MembersCache[T any] struct {
	mu  sync.Mutex
	src []Member
	val T
	set bool
}

// Get returns derive(ms), computed again only when ms is not the list of
// the last call.
func (c *MembersCache[T]) Get(ms []Member, derive func([]Member) T) T {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.set && sameList(c.src, ms) {
		return c.val
	}
	c.src, c.val, c.set = ms, derive(ms), true
	return c.val
}

// sameList reports whether a and b are the same slice (not merely equal).
func sameList[T any](a, b []T) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}
