package ipam

import (
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// needScanLocked reports whether owned space awaits verification (or
// recovered allocations a recheck) and the time has come.
func (a *Allocator) needScanLocked(now time.Time) bool {
	// Scans go on while the peer syncs: it allocates nothing then
	// (usableLocked), but what it finds in use is recorded and claimed
	// back at once, before any quarantine runs out.
	if a.ring == nil || now.Before(a.holdUntil) {
		return false
	}
	unverified := a.ownedLocked()
	for _, v := range a.verified {
		unverified = ivalsSub(unverified, v)
	}
	if len(unverified) > 0 || !a.scanned {
		return true
	}
	if now.Sub(a.lastScan) < rescanEvery {
		return false
	}
	for _, o := range a.allocs {
		if strings.HasPrefix(o, recoveredPrefix) {
			return true
		}
	}
	return false
}

// verify checks the host for addresses in use in owned space that is not
// verified yet (a lost data file, or space learned from the ring), records
// them as recovered allocations, and verifies the space. Recovered
// allocations no longer in use are released.
func (a *Allocator) verify() {
	var inUse []netip.Addr
	var err error
	if a.opts.Scan != nil {
		inUse, err = a.opts.Scan()
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.lastScan = a.opts.Now()
	if err != nil {
		if a.scanErr != err.Error() {
			a.log.Warn("cannot list the addresses in use on this host; space learned from other peers stays unused until it can", "err", err)
		}
		a.scanErr = err.Error()
		return
	}
	a.scanErr = ""
	if a.ring == nil {
		return
	}
	used := map[uint32]bool{}
	for _, ad := range inUse {
		if ad.Is4() {
			used[addrNum(ad)] = true
		}
	}
	var gone []uint32
	for n, o := range a.allocs {
		if strings.HasPrefix(o, recoveredPrefix) && !used[n] {
			gone = append(gone, n)
		}
	}
	if len(gone) > 0 {
		if err := a.store.DeleteAllocs(gone); err == nil {
			for _, n := range gone {
				delete(a.allocs, n)
			}
		}
	}
	unverified := a.ownedLocked()
	for _, v := range a.verified {
		unverified = ivalsSub(unverified, v)
	}
	// Addresses in use here that this peer has no record of are kept
	// reserved: in its own unverified space (a lost data file, space
	// learned from the ring) so it never hands them out, and in space
	// other peers own (a lost data file after a reclaim, an address given
	// by hand) so they are claimed back from their owner (claims.go).
	base := a.ring.Base()
	var found, foreign []string
	for _, n := range slices.Sorted(maps.Keys(used)) {
		addr := numAddr(n)
		if _, ok := a.allocs[n]; ok || !a.opts.Range.Contains(addr) {
			continue
		}
		off := n - base
		mine := len(ivalsIntersect(unverified, []ival{{off, off + 1}})) > 0
		if !mine && a.ring.OwnerOf(addr) == a.self {
			continue // verified space: Claim records what is given by hand
		}
		owner := recoveredPrefix + addr.String()
		if err := a.store.PutAlloc(n, owner); err != nil {
			a.log.Warn("cannot record an address found in use; not verifying space yet", "err", err)
			return
		}
		a.allocs[n] = owner
		if mine {
			found = append(found, addr.String())
		} else {
			foreign = append(foreign, addr.String())
		}
	}
	if len(foreign) > 0 {
		a.log.Warn("found addresses in use on this host in space other peers own, with no record of them here; claiming them from their owners", "addresses", foreign)
	}
	a.scanned = true
	if len(unverified) == 0 {
		return
	}
	for _, v := range unverified {
		a.verified = ivalsAdd(a.verified, v)
	}
	if err := a.saveLocked(); err != nil {
		a.log.Warn("cannot record verified space", "err", err)
		a.verified = ivalsIntersect(a.verified, nil)
		return
	}
	if len(found) > 0 {
		a.log.Warn("found addresses in use on this host in space this peer had no record of; keeping them reserved", "addresses", found)
	}
	a.log.Debug("verified address space", "addresses", ivalsSize(unverified))
	a.changedLocked()
}
