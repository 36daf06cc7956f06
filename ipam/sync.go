package ipam

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"weavemesh.dev/weave/peer"
)

// FullState implements gossip.State: the ring (spans and versions, never
// allocations) and every peer's entry.
func (a *Allocator) FullState() []byte {
	a.mu.Lock()
	defer a.mu.Unlock()
	entries := make(map[peer.Name]entry, len(a.entries)+1)
	for k, v := range a.entries {
		entries[k] = v
	}
	entries[a.self] = a.mine
	return appendState(nil, a.self, a.ring, entries)
}

// MergeFull implements gossip.State.
func (a *Allocator) MergeFull(data []byte) error {
	st, err := decodeState(data)
	if err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	changed := false
	for name, e := range st.entries {
		if a.mergeEntryLocked(name, e) {
			changed = true
		}
	}
	if st.ring != nil {
		c, err := a.mergeRingLocked(st.ring, true)
		if err != nil {
			return err
		}
		changed = changed || c
		if a.ring != nil && st.ring.ID == a.ring.ID {
			a.heardFrom[st.from] = true
			if a.checkSyncLocked() {
				changed = true
			}
		}
	}
	if changed {
		a.changedLocked()
	}
	return nil
}

// MergeDelta implements gossip.State.
func (a *Allocator) MergeDelta(data []byte) (bool, error) {
	if len(data) == 0 {
		return false, errors.New("empty IPAM delta")
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	switch data[0] {
	case deltaRing:
		r, rest, err := DecodeRing(data[1:], false)
		if err != nil {
			return false, err
		}
		if len(rest) != 0 {
			return false, errors.New("IPAM ring delta has trailing bytes")
		}
		if a.ring == nil {
			return false, nil // a full state will bring the whole ring
		}
		changed, err := a.mergeRingLocked(r, false)
		if changed {
			a.changedLocked()
		}
		return changed, err
	case deltaEntry:
		name, e, rest, err := decodeEntry(data[1:])
		if err != nil {
			return false, err
		}
		if len(rest) != 0 {
			return false, errors.New("IPAM entry delta has trailing bytes")
		}
		news := a.mergeEntryLocked(name, e)
		if news {
			a.changedLocked()
		}
		return news, nil
	}
	return false, fmt.Errorf("unknown IPAM delta kind %d (sent by a newer peer?)", data[0])
}

func (a *Allocator) mergeEntryLocked(name peer.Name, e entry) bool {
	if name == a.self {
		return false
	}
	old, ok := a.entries[name]
	if ok && e.Seq <= old.Seq {
		return false
	}
	a.entries[name] = e
	// A newer entry, however it came, means the peer was running after
	// the last time this one heard of it: liveness spreads through the
	// mesh, so a reclaimer cut off from a peer still hears of it through
	// the majority it needs.
	if ok {
		a.lastAlive[name] = a.opts.Now()
	}
	if e.Flags&flagWaiting != 0 && a.ring == nil {
		a.waitSet[name] = true
	}
	return true
}

// mergeRingLocked merges a peer's ring, adopting it when this peer has
// none; full says it came whole from a push-pull.
func (a *Allocator) mergeRingLocked(r *Ring, full bool) (bool, error) {
	if a.ring == nil {
		if !full || a.opts.Init.Mode == ModeSeed {
			return false, nil
		}
		if r.Range != a.opts.Range {
			a.noteConflictLocked(r)
			return false, fmt.Errorf("%w: a peer's ring covers %s, this peer's --ipalloc-range is %s; give every peer the same range", ErrForeignRing, r.Range, a.opts.Range)
		}
		a.ring = r.Clone()
		if a.fresh && len(a.ring.Owned(a.self)) > 0 && !a.proposedLocked(r) {
			// This peer's name owns space but it has no data file: it
			// lost it. Its own record of donations and allocations is
			// gone, so it waits for every other owner's account.
			a.needSync = true
			a.syncWhy = "this peer has a new data file but owns space in the ring (a lost data file?); it waits to hear every other owner's ring"
			a.log.Warn("this peer owns space in the ring but has no data file; recovering its share from the other peers and the endpoints on this host")
		}
		a.mine.Flags = a.flagsLocked()
		a.mine.RingID = a.ring.ID
		a.waitSet = map[peer.Name]bool{}
		a.dirty = true
		a.log.Info("adopted the address ring from the other peers", "range", r.Range, "owners", len(r.Owners()))
		a.pruneVerifiedLocked()
		_ = a.saveLocked()
		return true, nil
	}
	changed, err := a.ring.Merge(r)
	if err != nil {
		a.noteConflictLocked(r)
		return false, err
	}
	if changed {
		a.dirty = true
		a.pruneVerifiedLocked()
	}
	return changed, nil
}

// proposedLocked reports whether r is the ring this waiting peer was
// about to claim itself: the split among the peers it knows are waiting,
// itself included, which is a new ring, not one it lost its record of.
func (a *Allocator) proposedLocked(r *Ring) bool {
	if a.opts.Init.Mode != ModeConsensus || !a.waitSet[a.self] {
		return false
	}
	set := make([]peer.Name, 0, len(a.waitSet))
	for p := range a.waitSet {
		set = append(set, p)
	}
	return RingID(a.opts.Range, set) == r.ID
}

func (a *Allocator) noteConflictLocked(r *Ring) {
	if _, ok := a.conflicts[r.ID]; ok || len(a.conflicts) >= maxConflictsKept {
		return
	}
	var owners []string
	for o := range r.Owners() {
		owners = append(owners, o.String())
	}
	slices.Sort(owners)
	if len(owners) > 5 {
		owners = append(owners[:5], "...")
	}
	msg := fmt.Sprintf("peers %s hold a separately initialised ring %016x over %s; it is not merged. Stop one side's routers, move their %s away, and restart them pointing at the other side",
		strings.Join(owners, ","), r.ID, r.Range, DataFile)
	a.conflicts[r.ID] = msg
	a.log.Error("two differently initialised address rings met; refusing to merge them", "detail", msg)
}

// HandleMessage handles a unicast message from another peer. It may
// write to the store; the gossip layer's handler should queue messages to
// a goroutine that calls it (Run does).
func (a *Allocator) HandleMessage(from peer.Name, msg []byte) {
	m, err := decodeMessage(msg)
	if err != nil {
		a.log.Warn("dropping a malformed IPAM message", "from", from, "err", err)
		return
	}
	switch m.kind {
	case msgDonateRequest:
		a.donate(from, m)
	case msgDonateReply:
		a.received(from, m)
	case msgStateRequest:
		st := a.FullState()
		out := appendMessageHeader(nil, msgState, m.ringID)
		a.tr.Send(from, append(out, st...))
	case msgState:
		if err := a.MergeFull(m.state); err != nil {
			a.log.Debug("merge a peer's state", "from", from, "err", err)
		}
	}
}

func appendMessageHeader(b []byte, kind byte, ringID uint64) []byte {
	b = append(b, kind)
	return binary.BigEndian.AppendUint64(b, ringID)
}

// askStateLocked asks peers for their full state directly, rather than
// waiting for push-pull to come round: a waiting peer asks those holding a
// ring, a syncing one the owners it has not heard from.
func (a *Allocator) askStateLocked(now time.Time, alive map[peer.Name]bool) []func() {
	if now.Sub(a.lastAsk) < askEvery {
		return nil
	}
	var to []peer.Name
	switch {
	case a.ring == nil && a.opts.Init.Mode != ModeSeed:
		for p, e := range a.entries {
			if e.RingID != 0 && alive[p] {
				to = append(to, p)
			}
		}
	case a.ring != nil && a.needSync:
		for o := range a.ring.Owners() {
			if o != a.self && alive[o] && !a.heardFrom[o] {
				to = append(to, o)
			}
		}
	}
	if len(to) == 0 {
		return nil
	}
	a.lastAsk = now
	var id uint64
	if a.ring != nil {
		id = a.ring.ID
	}
	msg := appendMessageHeader(nil, msgStateRequest, id)
	return []func(){func() {
		for _, p := range to {
			a.tr.Send(p, msg)
		}
	}}
}

// donate answers a request for space: it gives away the upper half of its
// largest free run in the subnet, durably, before anyone hears of it.
func (a *Allocator) donate(from peer.Name, m message) {
	a.mu.Lock()
	grant := a.donateLocked(from, m)
	id := uint64(0)
	if a.ring != nil {
		id = a.ring.ID
	}
	a.mu.Unlock()
	if grant != nil {
		a.broadcastRing(grant)
	}
	a.tr.Send(from, appendDonateReply(nil, id, grant))
}

func (a *Allocator) donateLocked(from peer.Name, m message) *Ring {
	if a.ring == nil || m.ringID != a.ring.ID || from == a.self || a.usableLocked() != nil || a.ring.IsRemoved(from) {
		return nil
	}
	want, err := a.subnetIval(m.subnet)
	if err != nil {
		return nil
	}
	avail := ivalsIntersect(a.verified, []ival{want})
	base := a.ring.Base()
	var used []uint32
	for addr := range a.allocs {
		used = append(used, addr-base)
	}
	slices.Sort(used)
	var best ival
	for _, v := range avail {
		pos := v.start
		i, _ := slices.BinarySearch(used, v.start)
		for ; pos < v.end; i++ {
			next := v.end
			if i < len(used) && used[i] < v.end {
				next = used[i]
			}
			if next-pos > best.end-best.start {
				best = ival{pos, next}
			}
			if next == v.end {
				break
			}
			pos = next + 1
		}
	}
	size := best.end - best.start
	if size == 0 {
		return nil
	}
	give := ival{best.start + size/2, best.end}
	var pieces []Span
	for _, s := range a.ring.Spans {
		st, en := max(s.Start, give.start), min(s.End, give.end)
		if st < en {
			pieces = append(pieces, Span{Start: st, End: en, Owner: from, Version: s.Version + 1})
		}
	}
	a.ring.set(slices.Clone(pieces)...)
	a.verified = ivalsSub(a.verified, give)
	if err := a.saveLocked(); err != nil {
		// Not durable: undo, so a restart cannot find the space both here
		// and there.
		for i := range pieces {
			pieces[i].Owner, pieces[i].Version = a.self, pieces[i].Version-1
		}
		a.ring.set(pieces...)
		a.verified = ivalsAdd(a.verified, give)
		a.log.Error("cannot record a donation; refusing it", "err", err)
		return nil
	}
	a.log.Info("donated address space", "to", from, "first", numAddr(base+give.start), "count", give.end-give.start)
	return &Ring{ID: a.ring.ID, Range: a.ring.Range, Spans: pieces, Removed: map[peer.Name]uint64{}, Revived: map[peer.Name]uint64{}, Reclaimed: map[peer.Name]uint64{}}
}

// received handles a donation reply: the granted spans become verified
// space at once (the donor guarantees them free) once durable.
func (a *Allocator) received(from peer.Name, m message) {
	a.mu.Lock()
	defer a.mu.Unlock()
	defer a.changedLocked()
	var d *donation
	for _, x := range a.donations {
		if x.inFlight && x.to == from {
			d = x
		}
	}
	if d != nil {
		d.inFlight = false
	}
	if a.ring == nil || m.ringID != a.ring.ID {
		return
	}
	if m.grant == nil {
		if d != nil {
			d.refused[from] = a.opts.Now()
		}
		return
	}
	if _, err := a.mergeRingLocked(m.grant, false); err != nil {
		return
	}
	for _, s := range m.grant.Spans {
		if cur, ok := a.ring.spanAt(s.Start); ok && cur.Owner == a.self && cur.Version == s.Version && cur.End >= s.End {
			a.verified = ivalsAdd(a.verified, ival{s.Start, s.End})
		}
	}
	if err := a.saveLocked(); err != nil {
		a.verified = ivalsIntersect(a.verified, nil)
		a.log.Error("cannot record donated space; not using it", "err", err)
	}
}

// Tick does the periodic work: consensus, reclaim of lost peers, the
// fence, verification of learned space, heartbeat and persistence.
func (a *Allocator) Tick() {
	members := a.tr.Members()
	now := a.opts.Now()
	var out []func()
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return
	}
	alive := map[peer.Name]bool{a.self: true}
	for _, m := range members {
		if m.Alive {
			alive[m.Name] = true
			a.lastAlive[m.Name] = now
		}
	}
	out = append(out, a.askStateLocked(now, alive)...)
	if a.ring == nil {
		out = append(out, a.consensusLocked(now)...)
	} else {
		out = append(out, a.reviveLocked()...)
		a.fenceLocked(now, alive)
		out = append(out, a.reclaimLocked(now, alive)...)
	}
	a.mine.Allocated = uint32(len(a.allocs))
	if a.mine != a.published || now.Sub(a.lastRefresh) >= a.refreshEvery() {
		a.lastRefresh = now
		a.mine.Seq++
		a.published = a.mine
		b := appendEntry([]byte{deltaEntry}, a.self, a.mine)
		out = append(out, func() { _ = a.tr.Broadcast("entry", b) })
	}
	if now.Sub(a.lastBeat) >= beatEvery {
		a.lastBeat = now
		if err := a.store.Beat(now); err != nil {
			a.log.Warn("record heartbeat", "err", err)
		}
	}
	if a.dirty {
		if err := a.saveLocked(); err != nil {
			a.log.Warn("save IPAM state", "err", err)
		}
	}
	scan := a.needScanLocked(now)
	a.mu.Unlock()
	for _, f := range out {
		f()
	}
	if scan {
		a.verify()
	}
}

// refreshEvery is how often this peer re-gossips its entry, which tells
// the others it is alive.
func (a *Allocator) refreshEvery() time.Duration {
	if a.opts.ReclaimAfter == 0 {
		return 30 * time.Second
	}
	return min(max(a.opts.ReclaimAfter/8, time.Second), 30*time.Second)
}

// checkSyncLocked ends the wait for the other owners' state once every
// owner of the ring (removed ones aside) has sent its own full state.
func (a *Allocator) checkSyncLocked() bool {
	if !a.needSync {
		return false
	}
	for o := range a.ring.Owners() {
		if o != a.self && !a.heardFrom[o] && !a.ring.IsRemoved(o) {
			return false
		}
	}
	a.needSync = false
	a.dirty = true
	a.mine.Flags = a.flagsLocked()
	a.log.Info("heard every other owner's ring; allocating")
	return true
}

// consensusLocked advertises this peer's proposal and claims once every
// peer in it advertises the same one.
func (a *Allocator) consensusLocked(now time.Time) []func() {
	if a.opts.Init.Mode != ModeConsensus {
		return nil
	}
	a.waitSet[a.self] = true
	set := slices.Sorted(func(yield func(peer.Name) bool) {
		for p := range a.waitSet {
			if !yield(p) {
				return
			}
		}
	})
	h := proposalHash(set)
	a.mine.PropHash, a.mine.PropSize = h, uint32(len(set))
	if len(set) < a.opts.Init.Quorum {
		return nil
	}
	for _, p := range set {
		if p == a.self {
			continue
		}
		e := a.entries[p]
		agrees := e.Flags&flagWaiting != 0 && e.PropHash == h && e.PropSize == uint32(len(set))
		if !agrees && e.RingID != RingID(a.opts.Range, set) {
			return nil
		}
	}
	r, err := NewRing(a.opts.Range, set)
	if err != nil {
		a.log.Error("cannot split the range", "err", err)
		return nil
	}
	a.ring = r
	a.mine.Flags = a.flagsLocked()
	a.mine.RingID = r.ID
	a.waitSet = map[peer.Name]bool{}
	if err := a.saveLocked(); err != nil {
		a.log.Error("cannot record the split range", "err", err)
	}
	a.changedLocked()
	a.log.Info("peers agreed; address range split", "range", r.Range, "peers", len(set))
	return nil
}

func (a *Allocator) consensusStatusLocked() string {
	if a.opts.Init.Mode == ModeSeed {
		return "seeded"
	}
	n := len(a.waitSet)
	if !a.waitSet[a.self] {
		n++
	}
	return fmt.Sprintf("waiting for %d peers to agree (--ipalloc-init consensus=%d); %d known so far", a.opts.Init.Quorum, a.opts.Init.Quorum, n)
}

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
			a.log.Warn("too few peers reachable; no allocation until they are", "reachable_owners", a.quorumMsg)
		} else {
			a.log.Info("peers reachable again; allocating")
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
	claimer := a.self
	for o := range owners {
		if alive[o] && !slices.Contains(gone, o) && o < claimer && a.entries[o].Flags&flagSyncing == 0 {
			claimer = o
		}
	}
	for p, e := range a.entries {
		if alive[p] && e.RingID == a.ring.ID && e.Flags&flagSyncing == 0 && !a.ring.IsRemoved(p) && p < claimer && !slices.Contains(gone, p) {
			claimer = p
		}
	}
	if claimer != a.self {
		return nil
	}
	slices.Sort(gone)
	var pieces []Span
	for _, g := range gone {
		for _, s := range a.ring.Owned(g) {
			pieces = append(pieces, Span{Start: s.Start, End: s.End, Owner: a.self, Version: s.Version + reclaimBump})
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
	if err := a.saveLocked(); err != nil {
		a.log.Error("cannot record reclaimed space", "err", err)
	}
	var n uint32
	for _, p := range pieces {
		n += p.Size()
	}
	a.log.Warn("reclaimed the space of peers gone for good", "peers", gone, "addresses", n, "settle", a.opts.Settle)
	delta := &Ring{ID: a.ring.ID, Range: a.ring.Range, Spans: pieces, Removed: map[peer.Name]uint64{}, Revived: map[peer.Name]uint64{}, Reclaimed: reclaimed}
	return []func(){func() { a.broadcastRing(delta) }}
}

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
