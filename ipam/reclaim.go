package ipam

import (
	"fmt"
	"slices"
	"time"

	"weavemesh.dev/weave/peer"
)

// reviveLocked ends this peer's removal once its old spans are gone.
func (a *Allocator) reviveLocked() []func() {
	if !a.ring.IsRemoved(a.self) || len(a.ring.Owned(a.self)) > 0 {
		return nil
	}
	a.ring.Revived[a.self] = a.ring.Removed[a.self]
	a.dirty = true
	delta := &Ring{ID: a.ring.ID, Range: a.ring.Range, Removed: map[peer.Name]uint64{}, Revived: map[peer.Name]uint64{a.self: a.ring.Revived[a.self]}, Reclaimed: map[peer.Name]uint64{}}
	a.log.Info("this peer was removed while away and its space reclaimed; it starts again with no space")
	return []func(){func() { a.broadcastRing(delta) }}
}

// quorumLocked counts the ring's voters (Ring.Voters) and how many of
// them are alive.
func (a *Allocator) quorumLocked(alive map[peer.Name]bool) (live, total int) {
	for o := range a.ring.Voters() {
		total++
		if alive[o] {
			live++
		}
	}
	return live, total
}

// fenceLocked stops allocation while this peer reaches fewer than half
// of the owners for ReclaimAfter/2: the others may be a majority that will
// reclaim its space after ReclaimAfter.
func (a *Allocator) fenceLocked(now time.Time, alive map[peer.Name]bool) {
	if a.opts.ReclaimAfter == 0 {
		a.fenced = false
		return
	}
	live, total := a.quorumLocked(alive)
	a.quorumMsg = fmt.Sprintf("%d of %d", live, total)
	if 2*live >= total {
		a.lastSafe = now
	}
	was := a.fenced
	a.fenced = now.Sub(a.lastSafe) >= a.opts.ReclaimAfter/2
	if a.fenced != was {
		if a.fenced {
			// The others may reclaim this peer's space meanwhile: once it
			// reaches them again it hears their rings before allocating.
			// Recorded durably, so a restart does not forget it.
			a.startSyncLocked("this peer was cut off from most peers for more than half of --ipalloc-reclaim-after")
			a.log.Warn("too few peers reachable; no allocation until they are", "reachable_owners", a.quorumMsg)
		} else {
			a.heardFrom = map[peer.Name]bool{}
			a.lastAsk = time.Time{}
			a.log.Info("peers reachable again; allocating once their rings are heard")
		}
	}
}

// reclaimLocked takes the spans of owners gone for ReclaimAfter (or
// removed), if this peer is the one to do it: it sees a strict majority of
// the owners alive (owners removed with rmpeer not counted) and is the
// lowest-named live peer holding the ring.
func (a *Allocator) reclaimLocked(now time.Time, alive map[peer.Name]bool) []func() {
	owners := a.ring.Owners()
	var gone []peer.Name
	for o := range owners {
		if o == a.self {
			continue
		}
		if a.ring.IsRemoved(o) {
			gone = append(gone, o)
			continue
		}
		if alive[o] {
			continue
		}
		since, ok := a.lastAlive[o]
		if !ok {
			a.lastAlive[o] = now
			continue
		}
		if a.opts.ReclaimAfter > 0 && now.Sub(since) >= a.opts.ReclaimAfter {
			gone = append(gone, o)
		}
	}
	if len(gone) == 0 || a.needSync || a.ring.IsRemoved(a.self) {
		return nil
	}
	live, total := a.quorumLocked(alive)
	if total > 0 && 2*live <= total {
		return nil
	}
	// The claimer is the lowest-named live peer holding the ring, whether
	// or not it is syncing (it then reclaims once synced): a rule that
	// does not depend on flags still in flight gives every peer of one
	// side the same claimer.
	claimer := a.self
	for o := range owners {
		if alive[o] && !slices.Contains(gone, o) && o < claimer {
			claimer = o
		}
	}
	for p, e := range a.entries {
		if alive[p] && e.RingID == a.ring.ID && !a.ring.IsRemoved(p) && p < claimer && !slices.Contains(gone, p) {
			claimer = p
		}
	}
	if claimer != a.self {
		return nil
	}
	slices.Sort(gone)
	var pieces []Span
	// Space reclaimed because its owner went quiet may still hold that
	// owner's live containers, if it was only cut off: it is held for the
	// quarantine, so the owner can come back and claim them, and after
	// that it is used only when nothing else is free. Space of a peer
	// removed with rmpeer is known to be gone; it keeps only what
	// quarantine it already had (space that peer had reclaimed itself).
	until := now.Add(a.opts.Quarantine).Unix()
	for _, g := range gone {
		for _, s := range a.ring.Owned(g) {
			p := Span{Start: s.Start, End: s.End, Owner: a.self, Version: s.Version + reclaimBump, Held: s.Held}
			if !a.ring.IsRemoved(g) {
				a.reclaimed = ivalsAdd(a.reclaimed, ival{s.Start, s.End})
				if a.opts.Quarantine > 0 {
					p.Held = max(p.Held, until)
				}
			}
			pieces = append(pieces, p)
		}
	}
	slices.SortFunc(pieces, func(x, y Span) int { return int(x.Start) - int(y.Start) })
	a.ring.set(slices.Clone(pieces)...)
	reclaimed := map[peer.Name]uint64{}
	for _, g := range gone {
		if !a.ring.IsRemoved(g) {
			a.ring.Reclaimed[g] = max(a.ring.Reclaimed[g], 1)
			reclaimed[g] = a.ring.Reclaimed[g]
		}
	}
	a.holdUntil = now.Add(a.opts.Settle)
	a.counts.Reclaims++
	// Should another peer have claimed the same space in a moment when
	// views differed, the merge settles it; this peer hears the others'
	// rings before it allocates again, so it sees such a claim first.
	a.startSyncLocked("this peer has just reclaimed a lost peer's space and hears the other owners' rings first")
	if err := a.saveLocked(); err != nil {
		a.log.Error("cannot record reclaimed space", "err", err)
	}
	var n uint32
	for _, p := range pieces {
		n += p.Size()
	}
	a.log.Warn("reclaimed the space of peers gone for good", "peers", gone, "addresses", n, "settle", a.opts.Settle, "quarantine", a.opts.Quarantine)
	delta := partialRing(a.ring, pieces)
	delta.Reclaimed = reclaimed
	return []func(){func() { a.broadcastRing(delta) }}
}
