package ipam

import (
	"net/netip"
	"slices"
	"time"

	"weavemesh.dev/weave/peer"
)

// Share is one peer's part of the ring.
type Share struct {
	Name      peer.Name
	Nickname  string
	Self      bool
	Reachable bool
	Removed   bool
	Addresses uint32  // addresses it owns
	Percent   float64 // of the range
	Spans     int
	Allocated uint32 // as it last gossiped
}

// Allocation is one address this peer handed out.
type Allocation struct {
	Addr  netip.Addr
	Owner string
}

// Status describes the Allocator for weave status ipam.
type Status struct {
	Range         netip.Prefix
	DefaultSubnet netip.Prefix
	Init          string
	ReclaimAfter  time.Duration
	RingID        uint64 // 0 before the range is split
	// Ready is set when this peer can allocate now (from its own space or
	// by asking others); Reason says why not.
	Ready       bool
	Reason      string
	Peers       []Share
	Allocations []Allocation
	// Unverified counts owned addresses not yet checked against the host.
	Unverified uint64
	// Quarantined counts reclaimed addresses held back now, until
	// QuarantineUntil at the latest.
	Quarantined     uint64
	QuarantineUntil time.Time
	// PendingClaims counts addresses this peer's endpoints hold in space
	// others own, being claimed back.
	PendingClaims int
	// Consensus says how the initial split stands while there is none.
	Consensus string
	// Conflicts are separately initialised rings met on the mesh;
	// AddressConflicts addresses found handed out twice.
	Conflicts        []string
	AddressConflicts []string
	Counters         Counters
}

// Status returns the Allocator's state.
func (a *Allocator) Status() Status {
	members := a.tr.Members()
	a.mu.Lock()
	defer a.mu.Unlock()
	st := Status{
		Range: a.opts.Range, DefaultSubnet: a.opts.DefaultSubnet, Init: a.opts.Init.String(),
		ReclaimAfter: a.opts.ReclaimAfter, Conflicts: a.conflictList(),
		AddressConflicts: a.clashListLocked(), PendingClaims: len(a.lostLocked()), Counters: a.counts,
	}
	if a.ring == nil {
		st.Consensus = a.consensusStatusLocked()
	}
	now := a.opts.Now()
	if a.ring != nil {
		for _, s := range a.ring.Spans {
			if s.Owner == a.self && s.heldAt(now) {
				st.Quarantined += uint64(s.Size())
				if t := time.Unix(s.Held, 0); t.After(st.QuarantineUntil) {
					st.QuarantineUntil = t
				}
			}
		}
	}
	if err := a.usableLocked(); err != nil {
		st.Reason = err.Error()
	} else {
		st.Ready = true
	}
	for n, o := range a.allocs {
		st.Allocations = append(st.Allocations, Allocation{Addr: numAddr(n), Owner: o})
	}
	slices.SortFunc(st.Allocations, func(x, y Allocation) int { return x.Addr.Compare(y.Addr) })
	if a.ring == nil {
		return st
	}
	st.RingID = a.ring.ID
	nick := map[peer.Name]string{}
	alive := map[peer.Name]bool{a.self: true}
	for _, m := range members {
		nick[m.Name] = m.Nickname
		if m.Alive {
			alive[m.Name] = true
		}
	}
	shares := map[peer.Name]*Share{}
	get := func(p peer.Name) *Share {
		s := shares[p]
		if s == nil {
			s = &Share{Name: p, Nickname: nick[p], Self: p == a.self, Reachable: alive[p], Removed: a.ring.IsRemoved(p)}
			if p == a.self {
				s.Allocated = uint32(len(a.allocs))
			} else {
				s.Allocated = a.entries[p].Allocated
			}
			shares[p] = s
		}
		return s
	}
	get(a.self)
	for _, sp := range a.ring.Spans {
		s := get(sp.Owner)
		s.Addresses += sp.Size()
		s.Spans++
	}
	for p, e := range a.entries {
		if e.RingID == a.ring.ID && alive[p] {
			get(p)
		}
	}
	size := float64(a.ring.Size())
	for _, s := range shares {
		s.Percent = 100 * float64(s.Addresses) / size
		st.Peers = append(st.Peers, *s)
	}
	slices.SortFunc(st.Peers, func(x, y Share) int {
		switch {
		case x.Name < y.Name:
			return -1
		case x.Name > y.Name:
			return 1
		}
		return 0
	})
	unverified := a.ownedLocked()
	for _, v := range a.verified {
		unverified = ivalsSub(unverified, v)
	}
	st.Unverified = ivalsSize(unverified)
	return st
}
