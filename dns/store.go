package dns

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
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

// Transport is how the Store reaches other peers; *gossip.Channel is one.
type Transport interface {
	// Broadcast gossips a delta to every peer; key names what it updates.
	Broadcast(key string, delta []byte) error
	// SendAsync queues msg for reliable delivery to one peer and returns
	// at once; it must never block, because the Store calls it from
	// gossip callbacks. It reports false when msg was dropped.
	SendAsync(to peer.Name, msg []byte) bool
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
	// It may return the same list while membership is steady; the store
	// reads it and never modifies it.
	Peers        func() []PeerStatus
	Grace        time.Duration // optional: DefaultGrace
	TombstoneTTL time.Duration // optional: DefaultTombstoneTTL
	ForgetAfter  time.Duration // optional: DefaultForgetAfter
	Logger       *slog.Logger  // optional: discards
	// Now is the clock that grace periods, tombstone expiry, forgetting
	// and record versions are measured against; optional: time.Now.
	Now func() time.Time
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
// gossip.State; all methods are safe for concurrent use. Its methods are
// split by job: this file holds the state and its lifetime, records.go
// this peer's own changes, queries.go the read side, membership.go
// visibility, replication.go merging what other peers send.
type Store struct {
	self        peer.Name
	peersFn     func() []PeerStatus
	grace       time.Duration
	tombTTL     time.Duration
	forgetAfter time.Duration
	log         *slog.Logger
	now         func() time.Time

	lifeMu sync.Mutex // guards tr, closed
	tr     Transport
	closed bool

	mu     sync.RWMutex // guards owners, peers, clock, idx, catch
	owners map[peer.Name]*ownerState
	peers  map[peer.Name]PeerStatus // last answer of peersFn
	// peersSrc is that answer as given; Peers may return the same list
	// again while membership is steady, and the store never modifies it.
	peersSrc []PeerStatus
	clock    uint64 // the highest version this peer has issued or seen of its own
	idx      index
	catch    catchUp // until the first complete exchange (replication.go)
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
	if o.Now == nil {
		o.Now = time.Now
	}
	s := &Store{
		self: o.Self, peersFn: o.Peers, grace: o.Grace, tombTTL: o.TombstoneTTL,
		forgetAfter: o.ForgetAfter, log: o.Logger, now: o.Now,
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

// Close detaches the Store from its transport: once it returns, nothing
// is sent or broadcast any more. Idempotent.
func (s *Store) Close() {
	s.lifeMu.Lock()
	s.closed = true
	s.lifeMu.Unlock()
}

// send hands a unicast message (a pull or snapshots) to the transport,
// which queues it without blocking; a dropped one is sent again after the
// next push-pull.
func (s *Store) send(to peer.Name, msg []byte) {
	t := s.transport()
	if t == nil {
		return
	}
	if !t.SendAsync(to, msg) {
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
