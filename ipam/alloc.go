package ipam

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"weavemesh.dev/weave/peer"
)

// Member is one peer as the membership layer sees it.
type Member struct {
	Name     peer.Name
	Nickname string
	Alive    bool
}

// Transport carries the Allocator's messages. Broadcast gossips a delta to
// every peer (best effort; push-pull repairs losses); Send delivers a
// message to one peer and must not block; Members is the membership view.
type Transport interface {
	Broadcast(key string, delta []byte) error
	Send(to peer.Name, msg []byte)
	Members() []Member
}

// Defaults for Options fields left zero.
const (
	DefaultSettle    = 10 * time.Second
	donateTimeout    = 5 * time.Second
	refuseMemory     = 10 * time.Second
	beatEvery        = 10 * time.Second
	rescanEvery      = 30 * time.Second
	askEvery         = 3 * time.Second
	recoveredPrefix  = "recovered:"
	maxConflictsKept = 8
)

// Options configure an Allocator.
type Options struct {
	Self  peer.Name    // required
	Range netip.Prefix // required: IPv4, /8 to /30
	// DefaultSubnet is where an allocation without a subnet goes; the
	// whole Range if zero.
	DefaultSubnet netip.Prefix
	Init          Init
	// ReclaimAfter is how long a ring owner must be unreachable before a
	// survivor takes its spans; 0 turns automatic reclaim off.
	ReclaimAfter time.Duration
	// Settle is how long a reclaimed span is held before use, so a
	// conflicting claim from a peer on the same side of the mesh is seen
	// first. DefaultSettle if zero.
	Settle    time.Duration
	Store     Store     // required
	Transport Transport // required
	// Scan lists the addresses in use on this host (endpoints on the
	// bridge, the bridge's own). Space this peer learns it owns without
	// having claimed it itself (a lost data file) is checked against it
	// before use. Nil means nothing is in use.
	Scan   func() ([]netip.Addr, error)
	Now    func() time.Time // optional: time.Now
	Logger *slog.Logger     // optional: discards
}

func (o *Options) validate() error {
	if o.Self == peer.None || o.Self == peer.Broadcast {
		return errors.New("ipam: Options.Self must be a real peer name")
	}
	if err := checkRange(o.Range); err != nil {
		return fmt.Errorf("ipam: Options.Range: %w", err)
	}
	o.Range = o.Range.Masked()
	if !o.DefaultSubnet.IsValid() {
		o.DefaultSubnet = o.Range
	}
	o.DefaultSubnet = o.DefaultSubnet.Masked()
	if !o.DefaultSubnet.Addr().Is4() || !o.Range.Contains(o.DefaultSubnet.Addr()) || o.DefaultSubnet.Bits() < o.Range.Bits() {
		return fmt.Errorf("ipam: Options.DefaultSubnet %s must lie inside the range %s", o.DefaultSubnet, o.Range)
	}
	switch o.Init.Mode {
	case ModeConsensus:
		if o.Init.Quorum < 1 {
			return errors.New("ipam: Options.Init.Quorum must be at least 1")
		}
	case ModeSeed:
		if len(o.Init.Seeds) == 0 {
			return errors.New("ipam: Options.Init.Seeds is empty")
		}
	case ModeObserver:
	default:
		return fmt.Errorf("ipam: Options.Init.Mode %d is unknown", o.Init.Mode)
	}
	if o.ReclaimAfter < 0 {
		return errors.New("ipam: Options.ReclaimAfter must not be negative")
	}
	if o.Settle == 0 {
		o.Settle = DefaultSettle
	}
	if o.Store == nil || o.Transport == nil {
		return errors.New("ipam: Options.Store and Options.Transport are required")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Errors an allocation can end with.
var (
	// ErrExhausted: every address of the subnet is in use.
	ErrExhausted = errors.New("address space exhausted")
	// ErrUnavailable: no space now (no ring yet, peers unreachable, this
	// peer fenced); it may come later.
	ErrUnavailable = errors.New("no address space available now")
	// errWaiting: a donation is on its way; try again when notified.
	errWaiting = errors.New("waiting for a donation")
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
	mu          sync.Mutex
	ring        *Ring
	entries     map[peer.Name]entry // other peers' entries
	mine        entry               // this peer's entry
	published   entry               // last entry broadcast
	waitSet     map[peer.Name]bool  // waiting peers heard of (consensus)
	allocs      map[uint32]string   // address number -> owner
	verified    []ival              // owned offsets checked free of unknown allocations
	holdUntil   time.Time           // no verification before (settle after reclaim)
	fresh       bool                // the store was empty at start
	heardFrom   map[peer.Name]bool  // owners whose full state came directly
	needSync    bool                // hear every owner's ring before allocating
	syncWhy     string
	lastAlive   map[peer.Name]time.Time
	lastSafe    time.Time
	fenced      bool
	conflicts   map[uint64]string
	donations   map[netip.Prefix]*donation
	cursor      uint32 // offset where the next allocation search starts
	notify      chan struct{}
	dirty       bool
	lastBeat    time.Time
	lastScan    time.Time
	lastRefresh time.Time
	lastAsk     time.Time
	scanErr     string
	closed      bool
	quorumMsg   string

	inbox chan inbound  // messages for Run
	kick  chan struct{} // cap 1: Run should tick
}

// donation is this peer's request for space in one subnet.
type donation struct {
	inFlight bool
	to       peer.Name
	sent     time.Time
	refused  map[peer.Name]time.Time
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
		waitSet:   map[peer.Name]bool{},
		heardFrom: map[peer.Name]bool{},
		allocs:    saved.Allocs,
		verified:  saved.Verified,
		lastAlive: map[peer.Name]time.Time{},
		lastSafe:  now,
		conflicts: map[uint64]string{},
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
	a.lastSafe = time.Time{}
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
			a.syncWhy = "this peer restarted before hearing every other owner's ring"
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
	if a.needSync {
		// Recorded before the heartbeat below, so a crash right after
		// this start cannot forget that the peer must sync first.
		a.dirty = true
	}
	a.pruneVerifiedLocked()
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
	}
	return flagWaiting
}

// saveLocked writes the ring and verified spans durably.
func (a *Allocator) saveLocked() error {
	var rb []byte
	if a.ring != nil {
		rb = AppendRing(nil, a.ring)
	}
	if err := a.store.SaveState(rb, a.verified, a.needSync); err != nil {
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

// pruneVerifiedLocked drops verified space the ring says is no longer
// ours, and complains about allocations that were in it.
func (a *Allocator) pruneVerifiedLocked() {
	owned := a.ownedLocked()
	kept := ivalsIntersect(a.verified, owned)
	if ivalsEqual(kept, a.verified) {
		return
	}
	lost := a.verified
	for _, k := range kept {
		lost = ivalsSub(lost, k)
	}
	a.verified = kept
	a.dirty = true
	if a.ring == nil {
		return
	}
	base := a.ring.Base()
	var clash []string
	for addr, owner := range a.allocs {
		off := addr - base
		for _, l := range lost {
			if off >= l.start && off < l.end {
				clash = append(clash, fmt.Sprintf("%s (%s, now owned by %s)", numAddr(addr), owner, a.ring.OwnerOf(numAddr(addr))))
			}
		}
	}
	if len(clash) > 0 {
		slices.Sort(clash)
		a.log.Error("this peer's space was reclaimed by the others while it was away; these addresses may be handed out again: re-attach their endpoints",
			"addresses", clash)
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
	base := a.ring.Base()
	avail := ivalsIntersect(a.verified, []ival{want})
	off, ok := a.findFreeLocked(avail)
	if !ok && a.ownsUnverifiedLocked(want) {
		// Our own space that is not usable yet (settling after a reclaim,
		// or being checked against the host): wait for it rather than
		// ask others.
		a.mu.Unlock()
		return netip.Prefix{}, fmt.Errorf("%w: this peer's space in %s is not verified yet (settling after a reclaim, or a check against the host); try again shortly", ErrUnavailable, subnet)
	}
	if !ok {
		send, to, err := a.requestDonationLocked(subnet, want)
		a.mu.Unlock()
		if send != nil {
			a.tr.Send(to, send)
		}
		return netip.Prefix{}, err
	}
	addr := base + off
	a.allocs[addr] = owner
	a.cursor = off + 1
	a.mu.Unlock()
	if err := a.store.PutAlloc(addr, owner); err != nil {
		a.mu.Lock()
		delete(a.allocs, addr)
		a.mu.Unlock()
		return netip.Prefix{}, fmt.Errorf("ipam: record allocation of %s: %w", numAddr(addr), err)
	}
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

// requestDonationLocked picks a peer to ask for space in subnet and
// returns the request to send, or explains why there is none.
func (a *Allocator) requestDonationLocked(subnet netip.Prefix, want ival) ([]byte, peer.Name, error) {
	now := a.opts.Now()
	d := a.donations[subnet]
	if d == nil {
		d = &donation{refused: map[peer.Name]time.Time{}}
		a.donations[subnet] = d
	}
	if d.inFlight {
		if now.Sub(d.sent) < donateTimeout {
			return nil, 0, errWaiting
		}
		a.log.Info("no answer to a request for address space; asking another peer", "peer", d.to, "subnet", subnet)
		d.refused[d.to] = now
		d.inFlight = false
	}
	for p, t := range d.refused {
		if now.Sub(t) > refuseMemory {
			delete(d.refused, p)
		}
	}
	alive := a.aliveLocked()
	own := map[peer.Name]uint64{}
	for _, s := range a.ring.Spans {
		if s.Owner == a.self {
			continue
		}
		n := ivalsSize(ivalsIntersect([]ival{{s.Start, s.End}}, []ival{want}))
		if n > 0 {
			own[s.Owner] += n
		}
	}
	var best peer.Name
	var bestScore int64 = -1 << 62
	var unreachable uint64
	for p, n := range own {
		if !alive[p] || a.ring.IsRemoved(p) {
			unreachable += n
			continue
		}
		if _, no := d.refused[p]; no {
			continue
		}
		score := int64(n) - int64(a.entries[p].Allocated)
		if score > bestScore || (score == bestScore && p < best) {
			best, bestScore = p, score
		}
	}
	if best == peer.None {
		if unreachable > 0 {
			return nil, 0, fmt.Errorf("%w: no reachable peer has free addresses in %s; %d of its addresses belong to unreachable peers (they are reclaimed after --ipalloc-reclaim-after, or with weave rmpeer once those peers are gone for good)",
				ErrUnavailable, subnet, unreachable)
		}
		return nil, 0, fmt.Errorf("%w: every address of %s is in use (%d in use here); release some with weave detach, or use a larger range or subnet",
			ErrExhausted, subnet, a.countInLocked(want))
	}
	d.inFlight, d.to, d.sent = true, best, now
	a.log.Debug("asking for address space", "peer", best, "subnet", subnet)
	return appendDonateRequest(nil, a.ring.ID, subnet), best, errWaiting
}

// ownsUnverifiedLocked reports whether this peer owns addresses in want
// that are not verified yet.
func (a *Allocator) ownsUnverifiedLocked(want ival) bool {
	for _, s := range a.ring.Spans {
		if s.Owner != a.self {
			continue
		}
		mine := ivalsIntersect([]ival{{s.Start, s.End}}, []ival{want})
		if ivalsSize(mine) > ivalsSize(ivalsIntersect(mine, a.verified)) {
			return true
		}
	}
	return false
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
	for {
		a.mu.Lock()
		wait := a.notify
		a.mu.Unlock()
		p, err := a.TryAllocate(owner, subnet)
		if err == nil || (!errors.Is(err, errWaiting) && !errors.Is(err, ErrUnavailable)) {
			return p, err
		}
		// Unavailable may pass (consensus, a sync, a verification), so
		// keep trying until ctx ends, then report why.
		t := time.NewTimer(200 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			if errors.Is(err, errWaiting) {
				err = fmt.Errorf("%w: asked peers for address space but none came in time", ErrUnavailable)
			}
			return netip.Prefix{}, err
		case <-wait:
		case <-t.C:
		}
		t.Stop()
	}
}

// Claim records addr, chosen by hand, as owner's if it lies in verified
// space of this peer and is free, so it is never handed out. It returns a
// warning when addr is in the range but cannot be recorded here.
func (a *Allocator) Claim(owner string, addr netip.Addr) string {
	a.mu.Lock()
	if !a.opts.Range.Contains(addr) {
		a.mu.Unlock()
		return ""
	}
	n := addrNum(addr)
	if cur, ok := a.allocs[n]; ok {
		a.mu.Unlock()
		if cur == owner {
			return ""
		}
		return fmt.Sprintf("%s is already allocated to %s", addr, cur)
	}
	if a.ring == nil {
		a.mu.Unlock()
		return fmt.Sprintf("%s lies in the IPAM range %s, which is not split yet; IPAM may hand it out too", addr, a.opts.Range)
	}
	off := n - a.ring.Base()
	if o := a.ring.OwnerOf(addr); o != a.self {
		a.mu.Unlock()
		return fmt.Sprintf("%s lies in the IPAM range %s, in space owned by peer %s, which may hand it out too; pick addresses outside the range or let IPAM choose", addr, a.opts.Range, o)
	}
	if len(ivalsIntersect(a.verified, []ival{{off, off + 1}})) == 0 {
		a.mu.Unlock()
		return fmt.Sprintf("%s lies in this peer's IPAM space, which is not verified yet; it was not recorded", addr)
	}
	a.allocs[n] = owner
	a.mu.Unlock()
	if err := a.store.PutAlloc(n, owner); err != nil {
		a.mu.Lock()
		delete(a.allocs, n)
		a.mu.Unlock()
		return fmt.Sprintf("record %s: %v", addr, err)
	}
	return ""
}

// Release frees every address held by owner and returns them.
func (a *Allocator) Release(owner string) []netip.Addr {
	return a.release(func(o string, _ uint32) bool { return o == owner })
}

// ReleaseAddr frees addr if owner holds it.
func (a *Allocator) ReleaseAddr(owner string, addr netip.Addr) bool {
	n := addrNum(addr)
	return len(a.release(func(o string, x uint32) bool { return o == owner && x == n })) > 0
}

func (a *Allocator) release(match func(owner string, addr uint32) bool) []netip.Addr {
	a.mu.Lock()
	var nums []uint32
	for addr, o := range a.allocs {
		if match(o, addr) {
			nums = append(nums, addr)
		}
	}
	for _, n := range nums {
		delete(a.allocs, n)
	}
	a.mu.Unlock()
	if err := a.store.DeleteAllocs(nums); err != nil {
		// The addresses stay recorded on disk: after a restart they are
		// released again by reconcile, never handed out twice.
		a.log.Warn("could not record released addresses", "err", err)
	}
	out := make([]netip.Addr, len(nums))
	for i, n := range nums {
		out[i] = numAddr(n)
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

// Owned returns owner's addresses.
func (a *Allocator) Owned(owner string) []netip.Addr {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []netip.Addr
	for n, o := range a.allocs {
		if o == owner {
			out = append(out, numAddr(n))
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

// Reconcile keeps the allocations of the owners in keep (and those
// recovered from the host, which rescans check) and releases the rest. It
// runs after a restart with the endpoints that survived.
func (a *Allocator) Reconcile(keep map[string]bool) []netip.Addr {
	return a.release(func(o string, _ uint32) bool {
		return !keep[o] && !strings.HasPrefix(o, recoveredPrefix)
	})
}

// RemovePeer marks p as gone for good (weave rmpeer): its spans are
// reclaimed by the one surviving peer the rule picks. Running it again,
// or on several hosts, changes nothing more. It refuses a peer this one
// sees alive.
func (a *Allocator) RemovePeer(p peer.Name) (string, error) {
	a.mu.Lock()
	if a.ring == nil {
		a.mu.Unlock()
		return "", fmt.Errorf("%w: the range is not split yet, so there is nothing to reclaim", ErrUnavailable)
	}
	if p == a.self {
		a.mu.Unlock()
		return "", errors.New("cannot remove this peer itself; run weave rmpeer on another peer's host")
	}
	if a.aliveLocked()[p] {
		a.mu.Unlock()
		return "", fmt.Errorf("peer %s is alive; stop its router first (weave stop on its host), then remove it", p)
	}
	owned := a.ring.Owners()[p]
	if a.ring.IsRemoved(p) {
		a.mu.Unlock()
		return fmt.Sprintf("peer %s was already removed; %d addresses left to reclaim", p, owned), nil
	}
	a.ring.Removed[p] = max(a.ring.Removed[p], a.ring.Revived[p]+1)
	delta := &Ring{ID: a.ring.ID, Range: a.ring.Range, Removed: map[peer.Name]uint64{p: a.ring.Removed[p]}, Revived: map[peer.Name]uint64{}, Reclaimed: map[peer.Name]uint64{}}
	if err := a.saveLocked(); err != nil {
		a.mu.Unlock()
		return "", err
	}
	a.mu.Unlock()
	a.broadcastRing(delta)
	a.Tick()
	return fmt.Sprintf("peer %s removed; its %d addresses are reclaimed by a surviving peer", p, owned), nil
}

func (a *Allocator) broadcastRing(delta *Ring) {
	b := append([]byte{deltaRing}, AppendRing(nil, delta)...)
	if err := a.tr.Broadcast("", b); err != nil {
		a.log.Debug("ring change too large to broadcast; push-pull carries it", "err", err)
	}
}

// Close stops allocations; it is idempotent. The store is the caller's.
func (a *Allocator) Close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return
	}
	a.closed = true
	if a.dirty {
		if err := a.saveLocked(); err != nil {
			a.log.Warn("save IPAM state at shutdown", "err", err)
		}
	}
}

// RingSnapshot returns a copy of the ring (nil before it exists).
func (a *Allocator) RingSnapshot() *Ring {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.ring.Clone()
}

// Allocations returns every allocation of this peer.
func (a *Allocator) Allocations() map[netip.Addr]string {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[netip.Addr]string, len(a.allocs))
	for n, o := range a.allocs {
		out[numAddr(n)] = o
	}
	return out
}

// usableSpace returns the offsets this peer may allocate from now.
func (a *Allocator) usableSpace() []ival {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.usableLocked() != nil {
		return nil
	}
	return slices.Clone(a.verified)
}

func (a *Allocator) conflictList() []string {
	out := slices.Collect(maps.Values(a.conflicts))
	slices.Sort(out)
	return out
}
