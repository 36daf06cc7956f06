package ipam

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"weavemesh.dev/weave/peer"
)

// Allocator hands out addresses from this peer's share of the ring and
// keeps the ring in step with the other peers. Its methods are safe for
// concurrent use; its gossip.State methods are called by the gossip layer.
type Allocator struct {
	opts  Options
	log   *slog.Logger
	self  peer.Name
	store Store
	tr    Transport

	// mu guards everything below. Writes of ring ownership and verified
	// spans happen under mu so that no allocation or donation ever acts on
	// a state that is not yet durable; allocation writes happen outside.
	mu            sync.Mutex
	ring          *Ring
	entries       map[peer.Name]entry // other peers' entries
	mine          entry               // this peer's entry
	published     entry               // last entry broadcast
	paxos         *paxos              // consensus, while waiting for the split
	proposeAt     time.Time           // consensus: propose a new round once this passes
	majoritySince time.Time           // consensus: when this peer first heard of a majority
	allocs        map[uint32]string   // address number -> owner
	verified      []ival              // owned offsets checked free of unknown allocations
	reclaimed     []ival              // owned offsets reclaimed from others: used last
	holdUntil     time.Time           // no verification before (settle after reclaim)
	fresh         bool                // the store was empty at start
	heardFrom     map[peer.Name]bool  // owners whose full state came directly
	needSync      bool                // hear every owner's ring before allocating
	syncWhy       string
	lastAlive     map[peer.Name]time.Time
	lastSafe      time.Time
	fenced        bool
	conflicts     map[uint64]string // separately initialised rings, by id
	abandoned     map[uint64]bool   // rings this peer gave up for the mesh's
	clashes       map[uint32]string // addresses handed out twice, by address
	donations     map[netip.Prefix]*donation
	cursor        uint32 // offset where the next allocation search starts
	notify        chan struct{}
	dirty         bool
	lastBeat      time.Time
	lastScan      time.Time
	scanned       bool   // the host was listed once since start
	held          uint64 // addresses of ours in quarantine at the last tick
	lastClaim     time.Time
	lastLost      string // the lost allocations last logged
	lastRefresh   time.Time
	lastAsk       time.Time
	scanErr       string
	closed        bool
	quorumMsg     string
	counts        Counters

	inbox chan inbound  // messages for Run
	kick  chan struct{} // cap 1: Run should tick
}

// Counters count what the Allocator did since it started.
type Counters struct {
	Donated      uint64 // donations given
	Received     uint64 // donations received
	Reclaims     uint64 // reclaims of lost peers' space made here
	HandedBack   uint64 // addresses handed back to a peer that claimed them
	ClaimedBack  uint64 // addresses this peer claimed back and got
	Conflicts    uint64 // addresses found handed out twice
	RingsAdopted uint64 // rings of this peer's own given up for the mesh's
}

// donation is this peer's request for space in one subnet.
type donation struct {
	inFlight bool
	to       peer.Name
	sent     time.Time
	refused  map[peer.Name]refused
}

// refused remembers a donor's refusal: "full" until the donor's entry or
// share changes (or refuseMemory passes), the others for busyMemory.
type refused struct {
	at        time.Time
	why       refusal
	allocated uint32 // the donor's allocation count at the time
	owned     uint64 // its space in the subnet at the time
}

// New opens the Allocator on its store. Call Tick periodically (Run does)
// and register its gossip.State methods with the gossip layer.
func New(opts Options) (*Allocator, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	saved, err := opts.Store.Load()
	if err != nil {
		return nil, err
	}
	now := opts.Now()
	a := &Allocator{
		opts: opts, log: opts.Logger, self: opts.Self, store: opts.Store, tr: opts.Transport,
		entries:   map[peer.Name]entry{},
		heardFrom: map[peer.Name]bool{},
		allocs:    saved.Allocs,
		verified:  saved.Verified,
		reclaimed: saved.Reclaimed,
		lastAlive: map[peer.Name]time.Time{},
		conflicts: map[uint64]string{},
		abandoned: map[uint64]bool{},
		clashes:   map[uint32]string{},
		donations: map[netip.Prefix]*donation{},
		notify:    make(chan struct{}),
		lastBeat:  now,
		fresh:     saved.Fresh,
		inbox:     make(chan inbound, inboxSize),
		kick:      make(chan struct{}, 1),
	}
	a.mine.Seq = uint64(now.UnixNano())
	// The fence clock runs from the last time this peer was known to be
	// running, not from this start: the others' reclaim clock did not stop
	// while it was down. A new data file starts fenced until the peer sees
	// a majority of the owners.
	if !saved.Beat.IsZero() && saved.Beat.Before(now) {
		a.lastSafe = saved.Beat
	}
	if saved.Ring != nil {
		r, _, err := DecodeRing(saved.Ring, true)
		if err != nil {
			return nil, fmt.Errorf("ipam: stored ring: %w", err)
		}
		if r.Range != opts.Range {
			return nil, fmt.Errorf("ipam: the stored ring covers %s, not --ipalloc-range %s", r.Range, opts.Range)
		}
		a.ring = r
		if saved.Syncing {
			a.needSync = true
			a.syncWhy = "this peer restarted before hearing the other owners' rings"
		}
		if opts.ReclaimAfter > 0 && !saved.Beat.IsZero() && now.Sub(saved.Beat) > opts.ReclaimAfter/2 {
			a.needSync = true
			a.syncWhy = fmt.Sprintf("this peer was down for %s, long enough that its space may have been reclaimed", now.Sub(saved.Beat).Round(time.Second))
		}
	}
	if a.ring == nil && opts.Init.Mode == ModeSeed {
		r, err := NewRing(opts.Range, opts.Init.Seeds)
		if err != nil {
			return nil, err
		}
		a.ring = r
		a.dirty = true
		if len(r.Owners()) > 1 && slices.Contains(opts.Init.Seeds, a.self) {
			// A fresh data file may be a lost one: the seeds' shares may
			// have moved on since they were first split.
			a.needSync = true
			a.syncWhy = "this peer has a new data file; it waits to hear every other owner's ring"
		}
	}
	if a.ring == nil && opts.Init.Mode == ModeConsensus {
		a.paxos = newPaxos(a.self, opts.Init.Quorum/2+1, saved.Paxos)
		a.mine.Paxos = saved.Paxos
	}
	if a.needSync {
		// Recorded before the heartbeat below, so a crash right after
		// this start cannot forget that the peer must sync first.
		a.dirty = true
	}
	a.pruneOwnedLocked()
	a.mine.Flags = a.flagsLocked()
	if a.ring != nil {
		a.mine.RingID = a.ring.ID
	}
	a.mine.Allocated = uint32(len(a.allocs))
	if a.dirty {
		if err := a.saveLocked(); err != nil {
			return nil, err
		}
	}
	if err := a.store.Beat(now); err != nil {
		return nil, fmt.Errorf("ipam: %w", err)
	}
	return a, nil
}

func (a *Allocator) flagsLocked() byte {
	switch {
	case a.ring != nil && a.needSync:
		return flagSyncing
	case a.ring != nil:
		return 0
	case a.opts.Init.Mode == ModeObserver:
		return flagObserver
	case a.opts.Init.Mode == ModeSeed:
		return 0
	}
	return flagWaiting
}

// saveLocked writes the peer's state durably.
func (a *Allocator) saveLocked() error {
	st := State{Verified: a.verified, Reclaimed: a.reclaimed, Syncing: a.needSync}
	if a.ring != nil {
		st.Ring = AppendRing(nil, a.ring)
	}
	if a.paxos != nil {
		st.Paxos = a.paxos.mine()
	}
	if err := a.store.SaveState(st); err != nil {
		return fmt.Errorf("ipam: save state: %w", err)
	}
	a.dirty = false
	return nil
}

// changedLocked wakes allocations waiting for space.
func (a *Allocator) changedLocked() {
	close(a.notify)
	a.notify = make(chan struct{})
}

// ownedLocked is this peer's share as offsets.
func (a *Allocator) ownedLocked() []ival {
	if a.ring == nil {
		return nil
	}
	return spansIvals(a.ring.Owned(a.self))
}

// pruneOwnedLocked drops verified and reclaimed space the ring says is
// no longer ours, and notes allocations left in space that
// others own now: they are claimed back (claims.go).
func (a *Allocator) pruneOwnedLocked() {
	owned := a.ownedLocked()
	if kept := ivalsIntersect(a.verified, owned); !ivalsEqual(kept, a.verified) {
		a.verified = kept
		a.dirty = true
	}
	if kept := ivalsIntersect(a.reclaimed, owned); !ivalsEqual(kept, a.reclaimed) {
		a.reclaimed = kept
		a.dirty = true
	}
	if a.ring == nil {
		return
	}
	lost := a.lostLocked()
	var clash []string
	for _, n := range lost {
		clash = append(clash, fmt.Sprintf("%s (%s, now owned by %s)", numAddr(n), a.allocs[n], a.ring.OwnerOf(numAddr(n))))
	}
	if msg := strings.Join(clash, ", "); msg != a.lastLost {
		a.lastLost = msg
		if len(clash) > 0 {
			a.log.Warn("addresses held by this peer's endpoints lie in space now owned by other peers (reclaimed while this peer was away, or given up for the mesh's ring); claiming them back",
				"addresses", clash)
		}
	}
}

// usableLocked says why this peer may not allocate, or nil.
func (a *Allocator) usableLocked() error {
	switch {
	case a.ring == nil && a.opts.Init.Mode == ModeObserver:
		return fmt.Errorf("%w: this peer is an observer and has not heard from a peer holding the ring yet", ErrUnavailable)
	case a.ring == nil:
		return fmt.Errorf("%w: the address range is not split yet: %s", ErrUnavailable, a.consensusStatusLocked())
	case a.ring.IsRemoved(a.self):
		return fmt.Errorf("%w: this peer was removed with weave rmpeer; its space is being reclaimed", ErrUnavailable)
	case a.needSync && a.othersHoldSpace():
		return fmt.Errorf("%w: %s; waiting to exchange state with another peer", ErrUnavailable, a.syncWhy)
	case a.fenced:
		return fmt.Errorf("%w: this peer reaches %s of the peers owning the range for more than half of --ipalloc-reclaim-after, so the others may reclaim its space; it allocates again once it reaches them", ErrUnavailable, a.quorumMsg)
	}
	return nil
}

// refusalLocked is the reason a donor gives when it cannot give space.
func (a *Allocator) refusalLocked() refusal {
	switch {
	case a.ring == nil || a.ring.IsRemoved(a.self):
		return refusedNotReady
	case a.needSync && a.othersHoldSpace():
		return refusedSyncing
	case a.fenced:
		return refusedFenced
	}
	return refusedNotReady
}

func (a *Allocator) othersHoldSpace() bool {
	for o := range a.ring.Owners() {
		if o != a.self {
			return true
		}
	}
	return false
}

// subnetIval is subnet's part of the range as offsets, less its network
// and broadcast addresses.
func (a *Allocator) subnetIval(subnet netip.Prefix) (ival, error) {
	rng := a.opts.Range
	subnet = subnet.Masked()
	if !subnet.Addr().Is4() || !rng.Contains(subnet.Addr()) || subnet.Bits() < rng.Bits() {
		return ival{}, fmt.Errorf("subnet %s is not inside the allocation range %s", subnet, rng)
	}
	base := addrNum(rng.Addr())
	start := addrNum(subnet.Addr()) - base
	end := start + rangeSize32(subnet.Bits())
	if subnet.Bits() <= 30 {
		start++
		end--
	}
	return ival{start, end}, nil
}

func rangeSize32(bits int) uint32 {
	if bits == 0 {
		return 0
	}
	return uint32(1) << (32 - bits)
}

// availableLocked is the verified space in want that this peer may hand
// out now, split into what it owned before (first choice) and what it
// reclaimed from others (used only when the first is full).
func (a *Allocator) availableLocked(want ival, now time.Time) (first, last []ival) {
	avail := ivalsIntersect(a.verified, []ival{want})
	for _, s := range a.ring.Spans {
		if s.Owner == a.self && s.heldAt(now) {
			avail = ivalsSub(avail, ival{s.Start, s.End})
		}
	}
	first = avail
	for _, r := range a.reclaimed {
		first = ivalsSub(first, r)
	}
	return first, ivalsIntersect(avail, a.reclaimed)
}

// quarantinedLocked counts the addresses of want held in quarantine now,
// and when the first of them is released.
func (a *Allocator) quarantinedLocked(want ival, now time.Time) (uint64, time.Time) {
	var n uint64
	var next time.Time
	for _, s := range a.ring.Spans {
		if s.Owner != a.self || !s.heldAt(now) {
			continue
		}
		if k := ivalsSize(ivalsIntersect([]ival{{s.Start, s.End}}, []ival{want})); k > 0 {
			n += k
			if t := time.Unix(s.Held, 0); next.IsZero() || t.Before(next) {
				next = t
			}
		}
	}
	return n, next
}

// TryAllocate allocates an address in subnet (zero: the default subnet)
// for owner without waiting: from verified space of this peer only. When
// there is none it asks a peer for a donation and returns an error
// matching errWaiting, ErrUnavailable or ErrExhausted.
func (a *Allocator) TryAllocate(owner string, subnet netip.Prefix) (netip.Prefix, error) {
	if !subnet.IsValid() {
		subnet = a.opts.DefaultSubnet
	}
	subnet = subnet.Masked()
	a.mu.Lock()
	if err := a.usableLocked(); err != nil {
		a.mu.Unlock()
		return netip.Prefix{}, err
	}
	want, err := a.subnetIval(subnet)
	if err != nil {
		a.mu.Unlock()
		return netip.Prefix{}, err
	}
	now := a.opts.Now()
	first, last := a.availableLocked(want, now)
	off, ok := a.findFreeLocked(first)
	if !ok {
		off, ok = a.findFreeLocked(last)
	}
	if !ok && a.ownsUnverifiedLocked(want) {
		// Our own space that is not verified yet (settling after a
		// reclaim, or being checked against the host): wait for it
		// rather than ask others.
		a.mu.Unlock()
		return netip.Prefix{}, fmt.Errorf("%w: this peer's space in %s is not verified yet (settling after a reclaim, or a check against the host); try again shortly", ErrUnavailable, subnet)
	}
	if !ok {
		send, to, err := a.requestDonationLocked(subnet, want, now)
		a.mu.Unlock()
		if send != nil {
			a.tr.SendAsync(to, send)
		}
		return netip.Prefix{}, err
	}
	addr := a.ring.Base() + off
	a.allocs[addr] = owner
	a.cursor = off + 1
	a.mu.Unlock()
	if err := a.store.PutAlloc(addr, owner); err != nil {
		a.mu.Lock()
		delete(a.allocs, addr)
		a.mu.Unlock()
		return netip.Prefix{}, fmt.Errorf("ipam: record allocation of %s: %w", numAddr(addr), err)
	}
	// The next tick gossips the new count now rather than within a second.
	a.Kick()
	return netip.PrefixFrom(numAddr(addr), subnet.Bits()), nil
}

// findFreeLocked returns a free offset in avail, searching from the
// cursor so released addresses are not reused at once.
func (a *Allocator) findFreeLocked(avail []ival) (uint32, bool) {
	base := a.ring.Base()
	try := func(s, e uint32) (uint32, bool) {
		for off := s; off < e; off++ {
			if _, used := a.allocs[base+off]; !used {
				return off, true
			}
		}
		return 0, false
	}
	for _, v := range avail {
		if v.end > a.cursor {
			if off, ok := try(max(v.start, a.cursor), v.end); ok {
				return off, true
			}
		}
	}
	for _, v := range avail {
		if v.start < a.cursor {
			if off, ok := try(v.start, min(v.end, a.cursor)); ok {
				return off, true
			}
		}
	}
	return 0, false
}

// ownsUnverifiedLocked reports whether this peer owns addresses in want
// that are not verified yet (quarantined space aside: that waits far
// longer, so other peers are asked first).
func (a *Allocator) ownsUnverifiedLocked(want ival) bool {
	mine := ivalsIntersect(a.ownedLocked(), []ival{want})
	for _, v := range a.verified {
		mine = ivalsSub(mine, v)
	}
	now := a.opts.Now()
	for _, s := range a.ring.Spans {
		if s.Owner == a.self && s.heldAt(now) {
			mine = ivalsSub(mine, ival{s.Start, s.End})
		}
	}
	return len(mine) > 0
}

func (a *Allocator) countInLocked(want ival) int {
	base := a.ring.Base()
	n := 0
	for addr := range a.allocs {
		if off := addr - base; off >= want.start && off < want.end {
			n++
		}
	}
	return n
}

// aliveLocked returns the membership view; this peer is always alive.
func (a *Allocator) aliveLocked() map[peer.Name]bool {
	out := map[peer.Name]bool{a.self: true}
	for _, m := range a.tr.Members() {
		if m.Alive {
			out[m.Name] = true
		}
	}
	return out
}

// Allocate allocates an address in subnet (zero: the default subnet) for
// owner, asking peers for space when this peer has none, until ctx ends.
// The allocation is durable when it returns.
func (a *Allocator) Allocate(ctx context.Context, owner string, subnet netip.Prefix) (netip.Prefix, error) {
	start := a.opts.Now()
	for {
		a.mu.Lock()
		wait := a.notify
		a.mu.Unlock()
		p, err := a.TryAllocate(owner, subnet)
		if err == nil || (!errors.Is(err, errWaiting) && !errors.Is(err, ErrUnavailable)) {
			return p, err
		}
		// Unavailable may pass (consensus, a sync, a verification, a
		// donor that is not ready), so keep trying until ctx ends, then
		// report why.
		t := time.NewTimer(200 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			if errors.Is(err, errWaiting) {
				err = fmt.Errorf("%w: asked peers for address space but none came in time", ErrUnavailable)
			}
			return netip.Prefix{}, fmt.Errorf("%w (gave up after waiting %s)", err, a.opts.Now().Sub(start).Round(100*time.Millisecond))
		case <-wait:
		case <-t.C:
		}
		t.Stop()
	}
}
