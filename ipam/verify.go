package ipam

import (
	"net/netip"
	"slices"
	"strings"
	"time"
)

// needScanLocked reports whether owned space awaits verification (or
// recovered allocations a recheck) and the time has come.
func (a *Allocator) needScanLocked(now time.Time) bool {
	if a.ring == nil || now.Before(a.holdUntil) || a.needSync {
		return false
	}
	unverified := a.ownedLocked()
	for _, v := range a.verified {
		unverified = ivalsSub(unverified, v)
	}
	if len(unverified) > 0 {
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
	if a.ring == nil || a.needSync {
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
	if len(unverified) == 0 {
		return
	}
	base := a.ring.Base()
	var found []string
	for n := range used {
		off := n - base
		if !a.opts.Range.Contains(numAddr(n)) {
			continue
		}
		for _, v := range unverified {
			if off >= v.start && off < v.end {
				if _, ok := a.allocs[n]; !ok {
					owner := recoveredPrefix + numAddr(n).String()
					if err := a.store.PutAlloc(n, owner); err != nil {
						a.log.Warn("cannot record an address found in use; not verifying space yet", "err", err)
						return
					}
					a.allocs[n] = owner
					found = append(found, numAddr(n).String())
				}
			}
		}
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
		slices.Sort(found)
		a.log.Warn("found addresses in use on this host in space this peer had no record of; keeping them reserved", "addresses", found)
	}
	a.log.Debug("verified address space", "addresses", ivalsSize(unverified))
	a.changedLocked()
}
