package ipam

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"weavemesh.dev/weave/peer"
)

// Claims bring back addresses that a peer's endpoints still hold in space
// the peer no longer owns: space reclaimed while the peer was cut off or
// down, or space of a ring of its own that it gave up for the mesh's. The
// peer asks each address's owner, in its own view of the ring, to hand it
// back. The owner hands back what it has not handed out itself (durably,
// by writing the address into the ring under the claimer's name) and
// reports a conflict for what it has: both peers then log it, count it and
// show it in their status, and neither record is overwritten.

// lostLocked returns the allocations that lie in space others own now, not
// yet known to clash.
func (a *Allocator) lostLocked() []uint32 {
	if a.ring == nil {
		return nil
	}
	var out []uint32
	for n := range a.allocs {
		addr := numAddr(n)
		if !a.opts.Range.Contains(addr) {
			continue
		}
		if _, clash := a.clashes[n]; clash {
			continue
		}
		if o := a.ring.OwnerOf(addr); o != a.self {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

// PendingClaims counts the addresses this peer is claiming back.
func (a *Allocator) PendingClaims() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.lostLocked())
}

// claimLocked sends the claims due: to each reachable owner, the lost
// addresses it owns in this peer's view, every claimEvery.
func (a *Allocator) claimLocked(now time.Time, alive map[peer.Name]bool) []func() {
	if now.Sub(a.lastClaim) < claimEvery {
		return nil
	}
	byOwner := map[peer.Name][]uint32{}
	for _, n := range a.lostLocked() {
		if o := a.ring.OwnerOf(numAddr(n)); alive[o] && len(byOwner[o]) < maxClaimAddrs {
			byOwner[o] = append(byOwner[o], n)
		}
	}
	if len(byOwner) == 0 {
		return nil
	}
	a.lastClaim = now
	id := a.ring.ID
	return []func(){func() {
		for _, o := range slices.Sorted(maps.Keys(byOwner)) {
			a.tr.SendAsync(o, appendClaim(nil, id, byOwner[o]))
		}
	}}
}

// handleClaim answers a claim as the owner of the claimed addresses.
func (a *Allocator) handleClaim(from peer.Name, m message) {
	a.mu.Lock()
	answers, grant := a.handleClaimLocked(from, m)
	id := a.ringIDLocked()
	a.mu.Unlock()
	a.answer(from, grant, appendClaimReply(nil, id, answers, grant))
}

func (a *Allocator) handleClaimLocked(from peer.Name, m message) ([]claimAnswer, *Ring) {
	answers := make([]claimAnswer, len(m.addrs))
	for i, n := range m.addrs {
		answers[i] = claimAnswer{n, claimNotReady}
	}
	// A peer that must still hear the others may not own what its ring
	// says; a removed claimer revives itself first and then asks again.
	if a.ring == nil || m.ringID != a.ring.ID || from == a.self || a.needSync || a.ring.IsRemoved(from) || a.ring.IsRemoved(a.self) {
		return answers, nil
	}
	base := a.ring.Base()
	var pieces []Span
	for i, n := range m.addrs {
		addr := numAddr(n)
		s, ok := a.ring.spanAt(n - base)
		switch {
		case !a.opts.Range.Contains(addr) || !ok || s.Owner != a.self:
			answers[i].status = claimNotMine
		case a.allocs[n] != "":
			answers[i].status = claimConflict
			a.noteClashLocked(n, fmt.Sprintf("%s is held here by %s and also by an endpoint on peer %s (this peer had taken over that peer's space while it was unreachable); re-attach one of the two (weave detach, then weave attach) to give it a new address",
				addr, a.allocs[n], from))
		default:
			answers[i].status = claimGranted
			pieces = append(pieces, Span{Start: n - base, End: n - base + 1, Owner: from, Version: s.Version + 1})
		}
	}
	if len(pieces) == 0 {
		return answers, nil
	}
	undo := a.snapshotLocked()
	a.ring.set(slices.Clone(pieces)...)
	a.pruneOwnedLocked()
	if err := a.saveLocked(); err != nil {
		a.restoreLocked(undo)
		a.log.Error("cannot record addresses handed back; refusing the claim for now", "err", err)
		for i := range answers {
			if answers[i].status == claimGranted {
				answers[i].status = claimNotReady
			}
		}
		return answers, nil
	}
	a.counts.HandedBack += uint64(len(pieces))
	a.log.Info("handed back addresses that a returning peer's endpoints hold", "peer", from, "addresses", len(pieces))
	slices.SortFunc(pieces, func(x, y Span) int { return int(x.Start) - int(y.Start) })
	return answers, partialRing(a.ring, pieces)
}

// claimReply takes the owner's answers to this peer's claim.
func (a *Allocator) claimReply(from peer.Name, m message) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.ring == nil || m.ringID != a.ring.ID {
		return
	}
	for _, x := range m.answers {
		if x.status == claimConflict && a.allocs[x.addr] != "" {
			a.noteClashLocked(x.addr, fmt.Sprintf("%s is held here by %s and was also handed out by peer %s, which had taken over this peer's space while it was unreachable; re-attach one of the two (weave detach, then weave attach) to give it a new address",
				numAddr(x.addr), a.allocs[x.addr], from))
		}
	}
	if m.grant != nil {
		if n := a.acceptGrantLocked(m.grant); n > 0 {
			a.counts.ClaimedBack += n
			a.log.Info("claimed back addresses this peer's endpoints hold", "peer", from, "addresses", n)
		}
		a.changedLocked()
	}
}

// noteClashLocked records an address handed out twice, once.
func (a *Allocator) noteClashLocked(n uint32, msg string) {
	if _, ok := a.clashes[n]; ok {
		return
	}
	a.clashes[n] = msg
	a.counts.Conflicts++
	a.log.Error("address handed out twice", "address", numAddr(n), "detail", msg)
}

// clashListLocked lists the clashes whose address is still held here.
func (a *Allocator) clashListLocked() []string {
	var out []string
	for n, msg := range a.clashes {
		if _, held := a.allocs[n]; held {
			out = append(out, msg)
		} else {
			delete(a.clashes, n)
		}
	}
	slices.Sort(out)
	return out
}

// lone reports whether r was split only among one peer that still owns it
// all, which is what a router started alone has.
func lone(r *Ring) bool {
	if len(r.Owners()) != 1 {
		return false
	}
	for _, m := range []map[peer.Name]uint64{r.Removed, r.Reclaimed} {
		for _, v := range m {
			if v > 0 {
				return false
			}
		}
	}
	return true
}

// yields reports whether the holder of ours gives it up for theirs: ours
// is lone and theirs is not, or both are and theirs has the lower id. The
// rule is the same on both sides, so exactly one side yields.
func yields(ours, theirs *Ring) bool {
	return lone(ours) && (!lone(theirs) || theirs.ID < ours.ID)
}

// adoptLocked gives up this peer's lone ring for the mesh's ring r: it
// owns nothing there at first (unless its name already owns space, a lost
// data file) and claims back the addresses its endpoints hold.
func (a *Allocator) adoptLocked(r *Ring) {
	old := a.ring
	a.abandoned[old.ID] = true
	a.ring = r.Clone()
	a.verified, a.reclaimed = nil, nil
	if len(a.ring.Owned(a.self)) > 0 {
		a.needSync = true
		a.syncWhy = "this peer gave up a ring of its own for the mesh's, in which it already owns space; it waits to hear every other owner's ring"
	}
	a.mine.RingID = a.ring.ID
	a.mine.Flags = a.flagsLocked()
	a.counts.RingsAdopted++
	a.dirty = true
	a.pruneOwnedLocked()
	held := len(a.lostLocked())
	a.log.Warn("this peer's ring was split only among itself; adopting the mesh's ring", "ours", fmt.Sprintf("%016x", old.ID), "mesh", fmt.Sprintf("%016x", r.ID), "owners", len(r.Owners()), "claiming_back", held)
	if err := a.saveLocked(); err != nil {
		a.log.Error("cannot record the adopted ring", "err", err)
	}
	a.changedLocked()
}

// conflictSteps is how to end a conflict between two real meshes.
func conflictSteps(owners []string, id uint64, rng fmt.Stringer) string {
	return fmt.Sprintf("peers %s hold a separately initialised ring %016x over %s; it is not merged. To join the two meshes: on every host of the side to give up, weave detach its containers (or note their addresses), weave stop, move %s out of the data dir, and weave launch again naming a peer of the other side; then re-attach the containers, which get addresses from the other side's ring",
		strings.Join(owners, ","), id, rng, DataFile)
}
