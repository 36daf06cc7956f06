package dns

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

// Defaults for StoreOptions fields left zero.
const (
	// DefaultGrace is how long the records of a peer declared dead (or
	// gone) stay visible, so a peer that comes straight back causes no
	// flapping.
	DefaultGrace = 5 * time.Second
	// DefaultTombstoneTTL is how long a peer keeps a record it deleted as
	// a tombstone, so that stale copies elsewhere cannot bring it back.
	DefaultTombstoneTTL = 10 * time.Minute
	// DefaultForgetAfter is how long the records of a peer that left the
	// membership list entirely are kept before they are dropped.
	DefaultForgetAfter = 10 * time.Minute
)

// sendQueueLen bounds the unicast messages waiting for the sender
// goroutine; beyond it pulls are dropped and the next push-pull retries.
const sendQueueLen = 64

// Transport is how the Store reaches other peers; *gossip.Channel is one.
type Transport interface {
	// Broadcast gossips a delta to every peer; key names what it updates.
	Broadcast(key string, delta []byte) error
	// Send delivers msg to one peer reliably; it may block.
	Send(to peer.Name, msg []byte) error
}

// PeerStatus is what the membership layer says about one peer.
type PeerStatus struct {
	Name  peer.Name
	Alive bool      // alive or merely suspected
	Since time.Time // when it stopped being alive, if it did
}

// StoreOptions configures NewStore.
type StoreOptions struct {
	Self peer.Name // required: this peer, the only owner it writes for
	// Peers returns the members of the mesh; required. Records of a peer
	// not listed, or listed as not alive for longer than Grace, are hidden.
	Peers        func() []PeerStatus
	Grace        time.Duration // optional: DefaultGrace
	TombstoneTTL time.Duration // optional: DefaultTombstoneTTL
	ForgetAfter  time.Duration // optional: DefaultForgetAfter
	Logger       *slog.Logger  // optional: discards

	now func() time.Time // tests
}

// Record is one name-to-address mapping as the Store holds it.
type Record struct {
	Name     string     // canonical FQDN, e.g. "web.weave.local."
	Addr     netip.Addr // unmapped
	Owner    peer.Name  // the peer that registered it
	Endpoint string     // endpoint ID, "" for records added by hand
	Version  uint64
	Visible  bool // answered: the owner is alive or within its grace period
}

// entry is the state of one record key.
type entry struct {
	version uint64
	deleted bool
}

// ownerState is everything known about one owner's records.
type ownerState struct {
	// floor: the owner's records are complete up to this version; a
	// record with a version at or below it that is not held is gone.
	floor   uint64
	entries map[recKey]entry
	hash    uint64 // xor of recordHash over entries
	visible bool
	// absentSince is when the owner was first missing from Peers; zero
	// while listed.
	absentSince time.Time
}

// Store is this peer's replica of the mesh's DNS records. It implements
// gossip.State; all methods are safe for concurrent use.
type Store struct {
	self        peer.Name
	peersFn     func() []PeerStatus
	grace       time.Duration
	tombTTL     time.Duration
	forgetAfter time.Duration
	log         *slog.Logger
	now         func() time.Time

	sendq chan outMsg // to the sender goroutine

	lifeMu  sync.Mutex // guards tr, started, closed, cancel
	tr      Transport
	started bool
	closed  bool
	cancel  context.CancelFunc
	wg      sync.WaitGroup // the sender goroutine

	mu     sync.RWMutex // guards owners, peers, clock, idx
	owners map[peer.Name]*ownerState
	peers  map[peer.Name]PeerStatus // last answer of peersFn
	clock  uint64                   // the highest version this peer has issued or seen of its own
	idx    index
}

type outMsg struct {
	to  peer.Name
	msg []byte
}

// NewStore validates o and returns an empty store.
func NewStore(o StoreOptions) (*Store, error) {
	if o.Self == peer.None || o.Self == peer.Broadcast {
		return nil, fmt.Errorf("dns: StoreOptions.Self %s: must be a real peer name", o.Self)
	}
	if o.Peers == nil {
		return nil, errors.New("dns: StoreOptions.Peers is required")
	}
	if o.Grace == 0 {
		o.Grace = DefaultGrace
	}
	if o.TombstoneTTL == 0 {
		o.TombstoneTTL = DefaultTombstoneTTL
	}
	if o.ForgetAfter == 0 {
		o.ForgetAfter = DefaultForgetAfter
	}
	if o.Grace < 0 || o.TombstoneTTL < 0 || o.ForgetAfter < 0 {
		return nil, errors.New("dns: StoreOptions.Grace, TombstoneTTL and ForgetAfter must not be negative")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.now == nil {
		o.now = time.Now
	}
	s := &Store{
		self: o.Self, peersFn: o.Peers, grace: o.Grace, tombTTL: o.TombstoneTTL,
		forgetAfter: o.ForgetAfter, log: o.Logger, now: o.now,
		sendq:  make(chan outMsg, sendQueueLen),
		owners: map[peer.Name]*ownerState{},
		peers:  map[peer.Name]PeerStatus{},
		idx:    newIndex(),
	}
	s.owners[s.self] = &ownerState{entries: map[recKey]entry{}, visible: true}
	return s, nil
}

// SetTransport sets how the Store reaches other peers. Until it is set,
// local changes are not sent anywhere (push-pull catches up later).
func (s *Store) SetTransport(t Transport) {
	s.lifeMu.Lock()
	s.tr = t
	s.lifeMu.Unlock()
}

func (s *Store) transport() Transport {
	s.lifeMu.Lock()
	defer s.lifeMu.Unlock()
	if s.closed {
		return nil
	}
	return s.tr
}

// Start runs the goroutine that sends pulls and snapshots until Close.
func (s *Store) Start() {
	s.lifeMu.Lock()
	defer s.lifeMu.Unlock()
	if s.started || s.closed {
		return
	}
	s.started = true
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.wg.Add(1)
	go s.sender(ctx)
}

// Close stops the sender goroutine and waits for it. Idempotent.
func (s *Store) Close() {
	s.lifeMu.Lock()
	if s.closed {
		s.lifeMu.Unlock()
		return
	}
	s.closed = true
	if s.cancel != nil {
		s.cancel()
	}
	s.lifeMu.Unlock()
	s.wg.Wait()
}

func (s *Store) sender(ctx context.Context) {
	defer s.wg.Done()
	for {
		select {
		case <-ctx.Done():
			return
		case m := <-s.sendq:
			t := s.transport()
			if t == nil {
				continue
			}
			if err := t.Send(m.to, m.msg); err != nil {
				s.log.Debug("dns: send to peer failed; the next state exchange retries", "peer", m.to, "err", err)
			}
		}
	}
}

// queue hands a unicast message to the sender without blocking.
func (s *Store) queue(to peer.Name, msg []byte) {
	select {
	case s.sendq <- outMsg{to, msg}:
	default:
		s.log.Debug("dns: send queue full; dropping a message", "peer", to)
	}
}

// tickLocked issues the next version of this peer's records: above
// everything issued or seen before, and at least the clock, so a restarted
// peer outranks its previous life.
func (s *Store) tickLocked() uint64 {
	v := uint64(s.now().UnixNano())
	if v <= s.clock {
		v = s.clock + 1
	}
	s.clock = v
	return v
}

// ---- local changes (this peer's records) ----

// SetEndpoint makes the records of endpoint ep exactly name at addrs; an
// empty name or no addresses removes them. name must be canonical (see
// Normalize).
func (s *Store) SetEndpoint(ep, name string, addrs []netip.Addr) error {
	if ep == "" {
		return errors.New("dns: endpoint id is empty")
	}
	if err := checkKeyParts(name, ep, addrs); err != nil {
		return err
	}
	want := map[recKey]bool{}
	if name != "" {
		for _, a := range addrs {
			want[recKey{name: name, addr: a.Unmap(), endpoint: ep}] = true
		}
	}
	s.mu.Lock()
	own := s.owners[s.self]
	var out []wireRecord
	for k, e := range own.entries {
		if k.endpoint == ep && !e.deleted && !want[k] {
			out = append(out, s.putOwnLocked(k, true))
		}
	}
	for k := range want {
		if e, ok := own.entries[k]; !ok || e.deleted {
			out = append(out, s.putOwnLocked(k, false))
		}
	}
	s.mu.Unlock()
	s.broadcast(out)
	return nil
}

// RemoveEndpoint removes the records of endpoint ep.
func (s *Store) RemoveEndpoint(ep string) {
	if ep == "" {
		return
	}
	_ = s.SetEndpoint(ep, "", nil)
}

// Add registers name at addrs as records of no endpoint (added by hand)
// and returns how many were new.
func (s *Store) Add(name string, addrs []netip.Addr) (int, error) {
	if name == "" || len(addrs) == 0 {
		return 0, errors.New("dns: give a name and at least one address")
	}
	if err := checkKeyParts(name, "", addrs); err != nil {
		return 0, err
	}
	s.mu.Lock()
	own := s.owners[s.self]
	var out []wireRecord
	for _, a := range addrs {
		k := recKey{name: name, addr: a.Unmap()}
		if e, ok := own.entries[k]; !ok || e.deleted {
			out = append(out, s.putOwnLocked(k, false))
		}
	}
	s.mu.Unlock()
	s.broadcast(out)
	return len(out), nil
}

// Remove deletes this peer's records of name (added by hand or by an
// endpoint) at addrs, or at every address when addrs is empty, and returns
// how many there were. Removing what is not there is not an error.
func (s *Store) Remove(name string, addrs []netip.Addr) (int, error) {
	if err := checkKeyParts(name, "", addrs); err != nil {
		return 0, err
	}
	match := map[netip.Addr]bool{}
	for _, a := range addrs {
		match[a.Unmap()] = true
	}
	s.mu.Lock()
	own := s.owners[s.self]
	var out []wireRecord
	for k, e := range own.entries {
		if k.name == name && !e.deleted && (len(match) == 0 || match[k.addr]) {
			out = append(out, s.putOwnLocked(k, true))
		}
	}
	s.mu.Unlock()
	s.broadcast(out)
	return len(out), nil
}

func checkKeyParts(name, ep string, addrs []netip.Addr) error {
	if name != "" && !canonical(name) {
		return fmt.Errorf("dns: name %q is not canonical; use Normalize", name)
	}
	if len(ep) > maxEndpointLen {
		return fmt.Errorf("dns: endpoint id %q is longer than %d bytes", ep, maxEndpointLen)
	}
	for _, a := range addrs {
		if !a.IsValid() || a.Zone() != "" {
			return fmt.Errorf("dns: address %v: want an IPv4 or IPv6 address without zone", a)
		}
	}
	return nil
}

// putOwnLocked writes a new version of one of this peer's records and
// returns it for broadcast.
func (s *Store) putOwnLocked(k recKey, deleted bool) wireRecord {
	own := s.owners[s.self]
	v := s.tickLocked()
	s.setLocked(s.self, own, k, entry{version: v, deleted: deleted})
	return wireRecord{key: k, version: v, deleted: deleted}
}

// setLocked stores e under k for owner, keeping the hash and the index.
func (s *Store) setLocked(owner peer.Name, os *ownerState, k recKey, e entry) {
	old, had := os.entries[k]
	if had {
		os.hash ^= recordHash(k, old)
	}
	os.entries[k] = e
	os.hash ^= recordHash(k, e)
	if os.visible {
		wasLive, isLive := had && !old.deleted, !e.deleted
		switch {
		case isLive && !wasLive:
			s.idx.add(k)
		case wasLive && !isLive:
			s.idx.remove(k)
		}
	}
}

// dropLocked forgets k for owner entirely.
func (s *Store) dropLocked(os *ownerState, k recKey) {
	old, had := os.entries[k]
	if !had {
		return
	}
	os.hash ^= recordHash(k, old)
	delete(os.entries, k)
	if os.visible && !old.deleted {
		s.idx.remove(k)
	}
}

// broadcast gossips this peer's changed records.
func (s *Store) broadcast(recs []wireRecord) {
	t := s.transport()
	if t == nil {
		return
	}
	for _, r := range recs {
		if err := t.Broadcast(broadcastKey(r.key), encodeDelta(s.self, r)); err != nil {
			s.log.Warn("dns: cannot broadcast a record change; the next state exchange spreads it", "name", r.key.name, "err", err)
		}
	}
}

// broadcastKey names a record for the gossip queue: a newer change of the
// same record replaces one still queued. A hash keeps it short.
func broadcastKey(k recKey) string {
	return fmt.Sprintf("%016x", recordHash(k, entry{}))
}

// recordHash hashes a record key and its state with FNV-1a; every peer
// computes the same value, so xor-ed together they form a digest.
func recordHash(k recKey, e entry) uint64 {
	const (
		offset = 14695981039346656037
		prime  = 1099511628211
	)
	h := uint64(offset)
	add := func(b byte) { h ^= uint64(b); h *= prime }
	for i := 0; i < len(k.name); i++ {
		add(k.name[i])
	}
	add(0)
	a := k.addr.As16()
	for _, b := range a {
		add(b)
	}
	for i := 0; i < len(k.endpoint); i++ {
		add(k.endpoint[i])
	}
	add(0)
	for i := 0; i < 8; i++ {
		add(byte(e.version >> (8 * i)))
	}
	if e.deleted {
		add(1)
	} else {
		add(2)
	}
	return h
}

// ---- queries ----

// AppendAddrs appends the addresses of the lower-case name to dst and
// reports whether the name exists (it may exist with no address, as the
// parent of other names). It does not allocate when dst has room.
func (s *Store) AppendAddrs(dst []netip.Addr, name string) ([]netip.Addr, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	ns, ok := s.idx.byName[name]
	if !ok {
		return dst, s.idx.parents[name] > 0
	}
	for _, r := range ns.addrs {
		dst = append(dst, r.addr)
	}
	return dst, true
}

// appendAddrsBytes is AppendAddrs for a name held in bytes; the map
// lookups convert it without allocating.
func (s *Store) appendAddrsBytes(dst []netip.Addr, name []byte) ([]netip.Addr, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	ns, ok := s.idx.byName[string(name)]
	if !ok {
		return dst, s.idx.parents[string(name)] > 0
	}
	for _, r := range ns.addrs {
		dst = append(dst, r.addr)
	}
	return dst, true
}

// AppendNames appends the names of addr to dst.
func (s *Store) AppendNames(dst []string, addr netip.Addr) []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, r := range s.idx.byAddr[addr.Unmap()] {
		dst = append(dst, r.name)
	}
	return dst
}

// Lookup returns the addresses of a canonical name, sorted.
func (s *Store) Lookup(name string) []netip.Addr {
	addrs, _ := s.AppendAddrs(nil, name)
	slices.SortFunc(addrs, func(a, b netip.Addr) int { return a.Compare(b) })
	return addrs
}

// Names returns the names of addr, sorted.
func (s *Store) Names(addr netip.Addr) []string {
	names := s.AppendNames(nil, addr)
	slices.Sort(names)
	return names
}

// Records returns every live record, visible or not, sorted by name,
// address and owner.
func (s *Store) Records() []Record {
	s.mu.RLock()
	var out []Record
	for owner, os := range s.owners {
		for k, e := range os.entries {
			if !e.deleted {
				out = append(out, Record{Name: k.name, Addr: k.addr, Owner: owner, Endpoint: k.endpoint,
					Version: e.version, Visible: os.visible})
			}
		}
	}
	s.mu.RUnlock()
	slices.SortFunc(out, func(a, b Record) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		if c := a.Addr.Compare(b.Addr); c != 0 {
			return c
		}
		switch {
		case a.Owner < b.Owner:
			return -1
		case a.Owner > b.Owner:
			return 1
		}
		return strings.Compare(a.Endpoint, b.Endpoint)
	})
	return out
}

// OwnEndpoints returns the endpoints this peer has live records for.
func (s *Store) OwnEndpoints() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	seen := map[string]bool{}
	var out []string
	for k, e := range s.owners[s.self].entries {
		if k.endpoint != "" && !e.deleted && !seen[k.endpoint] {
			seen[k.endpoint] = true
			out = append(out, k.endpoint)
		}
	}
	slices.Sort(out)
	return out
}

// Manual returns this peer's records added by hand: name to addresses.
func (s *Store) Manual() map[string][]netip.Addr {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := map[string][]netip.Addr{}
	for k, e := range s.owners[s.self].entries {
		if k.endpoint == "" && !e.deleted {
			out[k.name] = append(out[k.name], k.addr)
		}
	}
	for _, as := range out {
		slices.SortFunc(as, func(a, b netip.Addr) int { return a.Compare(b) })
	}
	return out
}

// ---- membership ----

// Refresh asks Peers who is alive, hides or shows owners accordingly,
// drops owners gone for ForgetAfter, and expires this peer's old
// tombstones. Call it about once a second.
func (s *Store) Refresh() {
	peers := s.peersFn()
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.setPeersLocked(peers)
	for owner, os := range s.owners {
		if owner == s.self {
			continue
		}
		if _, listed := s.peers[owner]; listed {
			os.absentSince = time.Time{}
		} else if os.absentSince.IsZero() {
			os.absentSince = now
		} else if now.Sub(os.absentSince) >= s.forgetAfter {
			s.setVisibleLocked(os, false)
			delete(s.owners, owner)
			s.log.Debug("dns: forgot the records of a peer long gone", "peer", owner)
			continue
		}
		s.setVisibleLocked(os, s.visibleLocked(owner, now))
	}
	s.expireTombstonesLocked(now)
}

func (s *Store) setPeersLocked(peers []PeerStatus) {
	m := make(map[peer.Name]PeerStatus, len(peers))
	for _, p := range peers {
		m[p.Name] = p
	}
	s.peers = m
}

// visibleLocked decides whether owner's records are answered.
func (s *Store) visibleLocked(owner peer.Name, now time.Time) bool {
	if owner == s.self {
		return true
	}
	p, ok := s.peers[owner]
	if !ok {
		return false
	}
	return p.Alive || now.Sub(p.Since) < s.grace
}

// setVisibleLocked moves an owner's live records into or out of the index.
func (s *Store) setVisibleLocked(os *ownerState, v bool) {
	if os.visible == v {
		return
	}
	os.visible = v
	for k, e := range os.entries {
		if e.deleted {
			continue
		}
		if v {
			s.idx.add(k)
		} else {
			s.idx.remove(k)
		}
	}
}

// expireTombstonesLocked drops this peer's tombstones older than
// TombstoneTTL and raises its floor past them: a peer that receives the
// raised floor with our records drops the tombstones too, and anything
// at or below the floor that we do not hold stays gone.
func (s *Store) expireTombstonesLocked(now time.Time) {
	cutoff := now.Add(-s.tombTTL).UnixNano()
	if cutoff <= 0 {
		return
	}
	own := s.owners[s.self]
	for k, e := range own.entries {
		if e.deleted && e.version < uint64(cutoff) {
			s.dropLocked(own, k)
			own.floor = max(own.floor, e.version)
		}
	}
}

// ownerLocked returns the state of owner, created if new.
func (s *Store) ownerLocked(owner peer.Name, now time.Time) *ownerState {
	os := s.owners[owner]
	if os == nil {
		os = &ownerState{entries: map[recKey]entry{}}
		os.visible = s.visibleLocked(owner, now)
		s.owners[owner] = os
	}
	return os
}

// knowPeers makes sure the membership snapshot lists owners the
// membership layer knows, so records of a peer that just joined show at
// once rather than at the next Refresh.
func (s *Store) knowPeers(owners ...peer.Name) {
	s.mu.RLock()
	missing := false
	for _, o := range owners {
		if _, ok := s.peers[o]; !ok && o != s.self {
			missing = true
			break
		}
	}
	s.mu.RUnlock()
	if !missing {
		return
	}
	peers := s.peersFn()
	now := s.now()
	s.mu.Lock()
	s.setPeersLocked(peers)
	for _, o := range owners {
		if os := s.owners[o]; os != nil && o != s.self {
			s.setVisibleLocked(os, s.visibleLocked(o, now))
		}
	}
	s.mu.Unlock()
}

// ---- merging what other peers send ----

// mergeLocked merges one record of owner and reports whether it changed
// the state. Records of this peer from elsewhere are answered with a newer
// version of our own truth, returned for broadcast.
func (s *Store) mergeLocked(owner peer.Name, r wireRecord, now time.Time) (news bool, reply *wireRecord) {
	if owner == s.self {
		return false, s.assertOwnLocked(r)
	}
	os := s.ownerLocked(owner, now)
	cur, had := os.entries[r.key]
	if !had && r.version <= os.floor {
		return false, nil // gone: the owner's records are complete up to floor
	}
	if had && cur.version >= r.version {
		return false, nil
	}
	s.setLocked(owner, os, r.key, entry{version: r.version, deleted: r.deleted})
	return true, nil
}

// assertOwnLocked handles a record of this peer that another peer holds.
// This peer's records are the truth about them: a newer version than ours,
// or a record we do not hold, comes from a previous life of this peer
// (before a restart) and is overruled by a newer version of what we hold
// now, returned for broadcast.
func (s *Store) assertOwnLocked(r wireRecord) *wireRecord {
	own := s.owners[s.self]
	cur, had := own.entries[r.key]
	if had && cur.version >= r.version {
		return nil
	}
	s.clock = max(s.clock, r.version)
	switch {
	case had && !cur.deleted:
		// We hold it: restate it above theirs.
		w := s.putOwnLocked(r.key, false)
		return &w
	case !had && r.version <= own.floor:
		// Below our floor and not held: peers that get our floor drop it.
		return nil
	case r.deleted:
		// Both say it is gone: adopt their tombstone, which then expires
		// like our own.
		s.setLocked(s.self, own, r.key, entry{version: r.version, deleted: true})
		return nil
	default:
		// A live copy of a record we no longer hold.
		w := s.putOwnLocked(r.key, true)
		return &w
	}
}

// MergeDelta implements gossip.State.
func (s *Store) MergeDelta(data []byte) (bool, error) {
	owner, r, err := decodeDelta(data)
	if err != nil {
		return false, err
	}
	s.knowPeers(owner)
	s.mu.Lock()
	news, reply := s.mergeLocked(owner, r, s.now())
	s.mu.Unlock()
	if reply != nil {
		s.broadcast([]wireRecord{*reply})
	}
	return news, nil
}

// FullState implements gossip.State: a digest per owner, compact however
// many records there are; a peer whose digest differs pulls the records.
func (s *Store) FullState() []byte {
	s.mu.RLock()
	ds := make([]digest, 0, len(s.owners))
	for owner, os := range s.owners {
		if len(os.entries) == 0 && os.floor == 0 {
			continue
		}
		ds = append(ds, digest{owner: owner, floor: os.floor, hash: os.hash})
	}
	s.mu.RUnlock()
	slices.SortFunc(ds, func(a, b digest) int {
		switch {
		case a.owner < b.owner:
			return -1
		case a.owner > b.owner:
			return 1
		}
		return 0
	})
	return encodeDigests(s.self, ds)
}

// MergeFull implements gossip.State: it compares the sender's digests with
// ours and pulls the owners that differ from the sender.
func (s *Store) MergeFull(data []byte) error {
	sender, ds, err := decodeDigests(data)
	if err != nil {
		return err
	}
	if sender == s.self {
		return nil
	}
	var differ []peer.Name
	s.mu.RLock()
	for _, d := range ds {
		os := s.owners[d.owner]
		if os == nil || os.floor != d.floor || os.hash != d.hash {
			differ = append(differ, d.owner)
		}
	}
	s.mu.RUnlock()
	// Owners the membership no longer lists are being forgotten: pulling
	// them would only bring them back.
	s.knowPeers(differ...)
	var pull []peer.Name
	s.mu.RLock()
	for _, o := range differ {
		if _, listed := s.peers[o]; listed || o == s.self {
			pull = append(pull, o)
		}
	}
	s.mu.RUnlock()
	if len(pull) > 0 {
		s.queue(sender, encodePull(pull))
	}
	return nil
}

// HandleMessage takes the Store's unicast messages (pulls and snapshots);
// give it to the gossip channel's OnMessage. It never blocks.
func (s *Store) HandleMessage(from peer.Name, msg []byte) {
	kind, err := msgKind(msg)
	if err != nil {
		s.log.Debug("dns: bad message from peer", "peer", from, "err", err)
		return
	}
	switch kind {
	case kindPull:
		owners, err := decodePull(msg)
		if err != nil {
			s.log.Debug("dns: bad pull from peer", "peer", from, "err", err)
			return
		}
		s.queue(from, encodeSnapshots(s.snapshots(owners)))
	case kindSnapshot:
		ss, err := decodeSnapshots(msg)
		if err != nil {
			s.log.Debug("dns: bad snapshot from peer", "peer", from, "err", err)
			return
		}
		s.mergeSnapshots(ss)
	default:
		s.log.Debug("dns: unknown message kind from peer", "peer", from, "kind", kind)
	}
}

// snapshots copies the records of owners, with their floors.
func (s *Store) snapshots(owners []peer.Name) []snapshot {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]snapshot, 0, len(owners))
	for _, o := range owners {
		os := s.owners[o]
		if os == nil {
			continue
		}
		sn := snapshot{owner: o, floor: os.floor, recs: make([]wireRecord, 0, len(os.entries))}
		for k, e := range os.entries {
			sn.recs = append(sn.recs, wireRecord{key: k, version: e.version, deleted: e.deleted})
		}
		out = append(out, sn)
	}
	return out
}

// mergeSnapshots merges owners' records as another peer holds them.
func (s *Store) mergeSnapshots(ss []snapshot) {
	owners := make([]peer.Name, len(ss))
	for i, sn := range ss {
		owners[i] = sn.owner
	}
	s.knowPeers(owners...)
	now := s.now()
	var replies []wireRecord
	s.mu.Lock()
	for _, sn := range ss {
		if sn.owner == s.self {
			replies = append(replies, s.mergeOwnSnapshotLocked(sn)...)
			continue
		}
		os := s.ownerLocked(sn.owner, now)
		if sn.floor > os.floor {
			// The snapshot is complete up to its floor: what we hold at or
			// below it and it lacks is gone.
			in := make(map[recKey]bool, len(sn.recs))
			for _, r := range sn.recs {
				in[r.key] = true
			}
			for k, e := range os.entries {
				if e.version <= sn.floor && !in[k] {
					s.dropLocked(os, k)
				}
			}
			os.floor = sn.floor
		}
		for _, r := range sn.recs {
			s.mergeLocked(sn.owner, r, now)
		}
		// Tombstones at or below the floor are no longer needed.
		for k, e := range os.entries {
			if e.deleted && e.version <= os.floor {
				s.dropLocked(os, k)
			}
		}
	}
	s.mu.Unlock()
	s.broadcast(replies)
}

// mergeOwnSnapshotLocked handles our own records as another peer holds
// them: it adopts a higher floor (from a previous life of this peer) and
// overrules every record that differs from ours.
func (s *Store) mergeOwnSnapshotLocked(sn snapshot) []wireRecord {
	own := s.owners[s.self]
	var out []wireRecord
	if sn.floor > own.floor {
		own.floor = sn.floor
		s.clock = max(s.clock, sn.floor)
		// Our own records must stay above the floor, or peers that hold
		// the floor but not the records would take them for gone.
		for k, e := range own.entries {
			if e.version <= own.floor {
				if e.deleted {
					s.dropLocked(own, k)
				} else {
					out = append(out, s.putOwnLocked(k, false))
				}
			}
		}
	}
	for _, r := range sn.recs {
		if w := s.assertOwnLocked(r); w != nil {
			out = append(out, *w)
		}
	}
	return out
}
