package ipam

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"weavemesh.dev/weave/mesh/mix"
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

// Digest implements gossip.Digester over what FullState carries, so
// anti-entropy repairs a missed entry or ring change within seconds: every
// peer's entry (its sequence number fixes its contents) and the ring.
func (a *Allocator) Digest() uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	d := mix.Mix64(uint64(a.self) ^ mix.Mix64(a.mine.Seq))
	for name, e := range a.entries {
		if name != a.self {
			d += mix.Mix64(uint64(name) ^ mix.Mix64(e.Seq))
		}
	}
	if a.ring != nil {
		d ^= ringDigest(a.ring)
	}
	return d
}

// ringDigest hashes a ring: its spans in order, and its per-peer counters.
func ringDigest(r *Ring) uint64 {
	h := mix.Mix64(r.ID ^ 0x72696e67)
	b := r.Range.Masked().Addr().As4()
	h = mix.Mix64(h ^ uint64(binary.BigEndian.Uint32(b[:]))<<8 ^ uint64(r.Range.Bits()))
	for _, sp := range r.Spans {
		h = mix.Mix64(h ^ uint64(sp.Start)<<32 ^ uint64(sp.End))
		h = mix.Mix64(h ^ uint64(sp.Owner))
		h = mix.Mix64(h ^ sp.Version)
		h = mix.Mix64(h ^ uint64(sp.Held))
	}
	for salt, m := range []map[peer.Name]uint64{r.Removed, r.Revived, r.Reclaimed} {
		var sum uint64
		for name, v := range m {
			sum += mix.Mix64(uint64(name) ^ mix.Mix64(v^uint64(salt+1)))
		}
		h = mix.Mix64(h ^ sum)
	}
	return h
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
	a.mergeClaimsLocked(name, e)
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
		a.mine.Paxos = claims{}
		a.paxos = nil
		a.dirty = true
		a.log.Info("adopted the address ring from the other peers", "range", r.Range, "owners", len(r.Owners()))
		a.pruneOwnedLocked()
		_ = a.saveLocked()
		return true, nil
	}
	if r.ID != a.ring.ID && r.Range == a.ring.Range {
		switch {
		case a.abandoned[r.ID]:
			return false, nil // this peer's own former ring, still echoing
		case yields(a.ring, r):
			if full {
				a.adoptLocked(r)
				return true, nil
			}
			return false, nil // a delta is not the whole ring: wait for a full state
		case yields(r, a.ring):
			return false, nil // its holders will adopt ours
		}
	}
	changed, err := a.ring.Merge(r)
	if err != nil {
		a.noteConflictLocked(r)
		return false, err
	}
	if changed {
		a.dirty = true
		a.pruneOwnedLocked()
	}
	return changed, nil
}

// proposedLocked reports whether r is a ring this waiting peer took part
// in agreeing on: a new ring, not one it lost its record of.
func (a *Allocator) proposedLocked(r *Ring) bool {
	if a.paxos == nil {
		return false
	}
	if RingID(a.opts.Range, slices.Collect(maps.Keys(a.paxos.knows))) == r.ID {
		return true
	}
	for _, c := range a.paxos.knows {
		if set, err := decodeNames(c.Value); err == nil && len(set) > 0 && RingID(a.opts.Range, set) == r.ID {
			return true
		}
	}
	return false
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
	msg := conflictSteps(owners, r.ID, r.Range)
	if r.Range != a.opts.Range {
		msg = fmt.Sprintf("peers %s use --ipalloc-range %s, this peer %s; give every peer the same range", strings.Join(owners, ","), r.Range, a.opts.Range)
	}
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
		a.tr.SendAsync(from, append(out, st...))
	case msgState:
		if err := a.MergeFull(m.state); err != nil {
			a.log.Debug("merge a peer's state", "from", from, "err", err)
		}
	case msgClaim:
		a.handleClaim(from, m)
	case msgClaimReply:
		a.claimReply(from, m)
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
	case a.ring != nil && lone(a.ring):
		// A router started alone meets a mesh: get the mesh's ring at
		// once to see which of the two gives way.
		for p, e := range a.entries {
			if alive[p] && e.RingID != 0 && e.RingID != a.ring.ID && !a.abandoned[e.RingID] && a.conflicts[e.RingID] == "" {
				to = append(to, p)
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
			a.tr.SendAsync(p, msg)
		}
	}}
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
		a.expireQuarantineLocked(now)
		out = append(out, a.claimLocked(now, alive)...)
		if a.checkSyncLocked() {
			a.changedLocked()
		}
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

// expireQuarantineLocked wakes allocations waiting for space when a
// quarantine of this peer's has ended since the last tick.
func (a *Allocator) expireQuarantineLocked(now time.Time) {
	var n uint64
	for _, s := range a.ring.Spans {
		if s.Owner == a.self && s.heldAt(now) {
			n += uint64(s.Size())
		}
	}
	if n < a.held {
		a.changedLocked()
	}
	a.held = n
}

// refreshEvery is how often this peer re-gossips its entry, which tells
// the others it is alive.
//
// Anti-entropy (Digest) repairs a missed entry within seconds, so this
// refresh only has to keep a peer's liveness spreading through the mesh
// well within the reclaim timeout: a broadcast costs every peer a few
// receipts, and with the earlier 30 s cap these refreshes were most of a
// steady 250-peer mesh's broadcasts.
func (a *Allocator) refreshEvery() time.Duration {
	if a.opts.ReclaimAfter == 0 {
		return maxRefresh
	}
	return min(max(a.opts.ReclaimAfter/8, time.Second), maxRefresh)
}

// maxRefresh bounds refreshEvery.
const maxRefresh = 5 * time.Minute

// startSyncLocked makes this peer hear the other owners' rings before it
// allocates again. Every owner is waited for, reachable now or not, but
// one gone for the reclaim timeout: the peer that reclaimed space, and so
// knows of it first, is an owner too.
func (a *Allocator) startSyncLocked(why string) {
	a.needSync = true
	a.syncWhy = why
	a.heardFrom = map[peer.Name]bool{}
	a.lastAsk = time.Time{}
	a.mine.Flags = a.flagsLocked()
	a.dirty = true
}

// checkSyncLocked ends the wait for the other owners' state once every
// owner of the ring (removed ones aside) has sent its own full state.
func (a *Allocator) checkSyncLocked() bool {
	if !a.needSync || a.fenced {
		return false
	}
	now := a.opts.Now()
	for o := range a.ring.Owners() {
		if o == a.self || a.heardFrom[o] || a.ring.IsRemoved(o) {
			continue
		}
		// An owner gone for the reclaim timeout is not waited for: its
		// space is reclaimed, perhaps by this very peer once it is synced.
		if t, ok := a.lastAlive[o]; ok && a.opts.ReclaimAfter > 0 && now.Sub(t) >= a.opts.ReclaimAfter {
			continue
		}
		return false
	}
	a.needSync = false
	a.dirty = true
	a.mine.Flags = a.flagsLocked()
	a.log.Info("heard every other owner's ring; allocating")
	return true
}
