package ipam

import (
	"fmt"
	"slices"

	"weavemesh.dev/weave/peer"
)

// HandOver gives all of this peer's space to one live peer, for weave
// reset: the host leaves the mesh for good and its space should not wait
// for the reclaim timeout. Every allocation is released first (the router
// detached the endpoints), the space is written into the ring under the
// recipient's name at version + 1 and recorded before anyone hears of it,
// like a donation, then broadcast and sent to the recipient, which uses
// it at once. It returns the recipient and how many addresses it got;
// peer.None when this peer owns nothing.
func (a *Allocator) HandOver() (peer.Name, uint32, error) {
	a.mu.Lock()
	if a.ring == nil || len(a.ring.Owned(a.self)) == 0 {
		a.mu.Unlock()
		return peer.None, 0, nil
	}
	alive := a.aliveLocked()
	to := peer.None
	for p, e := range a.entries {
		if p != a.self && alive[p] && e.RingID == a.ring.ID && !a.ring.IsRemoved(p) && e.Flags&flagObserver == 0 && (to == peer.None || p < to) {
			to = p
		}
	}
	if to == peer.None {
		a.mu.Unlock()
		return peer.None, 0, fmt.Errorf("no live peer holds the ring to hand this peer's space to; the others reclaim it after --ipalloc-reclaim-after, or at once with weave rmpeer %s on one of them", a.self)
	}
	nums := make([]uint32, 0, len(a.allocs))
	for n := range a.allocs {
		nums = append(nums, n)
	}
	var pieces []Span
	var n uint32
	for _, s := range a.ring.Owned(a.self) {
		pieces = append(pieces, Span{Start: s.Start, End: s.End, Owner: to, Version: s.Version + 1, Held: s.Held})
		n += s.Size()
	}
	undo := a.snapshotLocked()
	allocs := a.allocs
	a.allocs = map[uint32]string{}
	a.ring.set(slices.Clone(pieces)...)
	a.pruneOwnedLocked()
	if err := a.saveLocked(); err != nil {
		a.restoreLocked(undo)
		a.allocs = allocs
		a.mu.Unlock()
		return peer.None, 0, fmt.Errorf("ipam: record the hand-over: %w", err)
	}
	a.counts.Donated++
	grant := partialRing(a.ring, pieces)
	id := a.ring.ID
	a.mu.Unlock()
	if err := a.store.DeleteAllocs(nums); err != nil {
		a.log.Warn("could not record released addresses", "err", err)
	}
	a.log.Info("handed this peer's address space over", "to", to, "addresses", n)
	a.answer(to, grant, appendDonateReply(nil, id, grant, 0))
	return to, n, nil
}
