package ipam

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"weavemesh.dev/weave/peer"
)

// Store keeps what must survive a restart: the ring, the spans this peer
// has verified as its own to allocate from, and every allocation. Writes
// return once durable.
type Store interface {
	// Load returns what was saved; Fresh is set when nothing ever was.
	Load() (Saved, error)
	// SaveState replaces the peer's state: the ring, its verified and
	// reclaimed spans, whether it still has to hear every
	// other owner before allocating, and its consensus claims.
	SaveState(st State) error
	// PutAlloc records an allocation.
	PutAlloc(addr uint32, owner string) error
	// DeleteAllocs forgets allocations.
	DeleteAllocs(addrs []uint32) error
	// Beat records that this peer was running at t.
	Beat(t time.Time) error
	Close() error
}

// State is what SaveState writes as one unit.
type State struct {
	Ring     []byte // encoded; nil before the range is split
	Verified []ival
	// Reclaimed is owned space that was reclaimed from another peer:
	// allocated from, and donated, only when nothing else is free.
	Reclaimed []ival
	Syncing   bool
	Paxos     claims
}

// Saved is a Store's content.
type Saved struct {
	State
	Fresh  bool
	Allocs map[uint32]string
	Beat   time.Time
}

// ival is a run of offsets [start, end) of the range.
type ival struct{ start, end uint32 }

func appendIvals(b []byte, iv []ival) []byte {
	b = binary.AppendUvarint(b, uint64(len(iv)))
	for _, v := range iv {
		b = binary.AppendUvarint(b, uint64(v.start))
		b = binary.AppendUvarint(b, uint64(v.end-v.start))
	}
	return b
}

func decodeIvals(b []byte) ([]ival, error) {
	count, n := binary.Uvarint(b)
	if n <= 0 || count > uint64(len(b)) {
		return nil, errors.New("span list count is malformed")
	}
	b = b[n:]
	out := make([]ival, 0, count)
	for i := uint64(0); i < count; i++ {
		s, n1 := binary.Uvarint(b)
		if n1 <= 0 {
			return nil, errors.New("span list is malformed")
		}
		l, n2 := binary.Uvarint(b[n1:])
		if n2 <= 0 || l == 0 || s+l > 1<<32 {
			return nil, errors.New("span list is malformed")
		}
		b = b[n1+n2:]
		out = append(out, ival{uint32(s), uint32(s + l)})
	}
	if len(b) != 0 {
		return nil, errors.New("span list has trailing bytes")
	}
	return out, nil
}

// DataFile is the name of the IPAM data file in the data dir.
const DataFile = "ipam.db"

var (
	bucketMeta  = []byte("meta")
	bucketState = []byte("state")
	bucketAlloc = []byte("alloc")

	keyFormat   = []byte("format")
	keyPeer     = []byte("peer")
	keyRange    = []byte("range")
	keyBeat     = []byte("beat")
	keyRing     = []byte("ring")
	keyVerified = []byte("verified")
	keySyncing  = []byte("syncing")
	// Added after the first release; files without them read as empty.
	keyReclaimed = []byte("reclaimed")
	keyPaxos     = []byte("paxos")
)

const storeFormat = 1

// BoltStore is the Store on an embedded bbolt database.
type BoltStore struct {
	path string
	db   *bolt.DB
	once sync.Once

	// Group commit: writers queue in pending; whoever holds commitMu
	// writes everything queued in one transaction and one fsync. A lone
	// writer commits at once (bbolt's Batch would wait for company).
	commitMu sync.Mutex
	mu       sync.Mutex // guards pending
	pending  []*write
}

type write struct {
	fn   func(*bolt.Bucket) error
	done chan error // cap 1
}

// commit runs fn on the allocation bucket durably, sharing the
// transaction with writers that arrive meanwhile.
func (s *BoltStore) commit(fn func(*bolt.Bucket) error) error {
	w := &write{fn: fn, done: make(chan error, 1)}
	s.mu.Lock()
	s.pending = append(s.pending, w)
	s.mu.Unlock()
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	select {
	case err := <-w.done: // committed by the writer before us
		return err
	default:
	}
	s.mu.Lock()
	batch := s.pending
	s.pending = nil
	s.mu.Unlock()
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketAlloc)
		for _, x := range batch {
			if err := x.fn(b); err != nil {
				return err
			}
		}
		return nil
	})
	for _, x := range batch {
		x.done <- err
	}
	return <-w.done
}

// OpenBolt opens (or creates) the data file in dir for peer self and range
// rng. A file that cannot be read, or that was written by another peer or
// for another range, is refused with an error naming the file and what to
// do; it is never replaced.
func OpenBolt(dir string, self peer.Name, rng netip.Prefix) (_ *BoltStore, err error) {
	path := filepath.Join(dir, DataFile)
	moveAway := fmt.Sprintf("restore %s from a backup, or move it away (mv %s %s.bad) so this peer starts afresh and recovers its share from the other peers and from the endpoints still on this host", path, path, path)
	if fi, statErr := os.Stat(path); statErr == nil && fi.Size() > 0 && fi.Size() < 4096 {
		return nil, fmt.Errorf("IPAM data file %s is corrupt (only %d bytes); %s", path, fi.Size(), moveAway)
	}
	defer func() {
		// bbolt may panic on a damaged page; never take the router down.
		if p := recover(); p != nil {
			err = fmt.Errorf("IPAM data file %s is corrupt (%v); %s", path, p, moveAway)
		}
	}()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("IPAM data file %s is locked by another process; stop the other router using this --data-dir", path)
		}
		return nil, fmt.Errorf("IPAM data file %s cannot be opened (%v); %s", path, err, moveAway)
	}
	s := &BoltStore{path: path, db: db}
	var nb [6]byte
	self.PutBytes(nb[:])
	rb := rng.Masked().Addr().As4()
	rangeKey := append(rb[:], byte(rng.Bits()))
	err = db.Update(func(tx *bolt.Tx) error {
		m := tx.Bucket(bucketMeta)
		if m == nil {
			// New file: stamp it with its owner and range.
			var err error
			if m, err = tx.CreateBucket(bucketMeta); err != nil {
				return err
			}
			if _, err := tx.CreateBucket(bucketState); err != nil {
				return err
			}
			if _, err := tx.CreateBucket(bucketAlloc); err != nil {
				return err
			}
			if err := m.Put(keyFormat, []byte{storeFormat}); err != nil {
				return err
			}
			if err := m.Put(keyPeer, nb[:]); err != nil {
				return err
			}
			return m.Put(keyRange, rangeKey)
		}
		f := m.Get(keyFormat)
		if len(f) != 1 || f[0] != storeFormat {
			return fmt.Errorf("IPAM data file %s has format %v, not %d (written by another version?); %s", path, f, storeFormat, moveAway)
		}
		if p := m.Get(keyPeer); len(p) != 6 || peer.FromBytes(p) != self {
			owner := "an unknown peer"
			if len(p) == 6 {
				owner = "peer " + peer.FromBytes(p).String()
			}
			return fmt.Errorf("IPAM data file %s belongs to %s, not to this peer %s: start with that --name, or give this peer its own --data-dir", path, owner, self)
		}
		if r := m.Get(keyRange); len(r) != 5 || string(r) != string(rangeKey) {
			was := "an unreadable range"
			if len(r) == 5 {
				was = netip.PrefixFrom(netip.AddrFrom4([4]byte(r[:4])), int(r[4])).String()
			}
			return fmt.Errorf("IPAM data file %s was written for range %s, not %s: start with --ipalloc-range %s, or move the file away (mv %s %s.old) to start over in the new range; containers keep their old addresses until re-attached", path, was, rng, was, path, path)
		}
		if tx.Bucket(bucketState) == nil || tx.Bucket(bucketAlloc) == nil {
			return fmt.Errorf("IPAM data file %s is incomplete; %s", path, moveAway)
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// Path is the data file's path.
func (s *BoltStore) Path() string { return s.path }

func (s *BoltStore) corrupt(what string, err error) error {
	return fmt.Errorf("IPAM data file %s is corrupt (%s: %v); restore it from a backup, or move it away (mv %s %s.bad) so this peer starts afresh and recovers its share from the other peers and the endpoints on this host", s.path, what, err, s.path, s.path)
}

// Load implements Store.
func (s *BoltStore) Load() (out Saved, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = s.corrupt("reading", fmt.Errorf("%v", p))
		}
	}()
	out.Allocs = map[uint32]string{}
	err = s.db.View(func(tx *bolt.Tx) error {
		st := tx.Bucket(bucketState)
		if r := st.Get(keyRing); r != nil {
			if _, _, err := DecodeRing(r, true); err != nil {
				return s.corrupt("ring", err)
			}
			out.Ring = slices.Clone(r)
		}
		if v := st.Get(keyVerified); v != nil {
			iv, err := decodeIvals(v)
			if err != nil {
				return s.corrupt("verified spans", err)
			}
			out.Verified = iv
		}
		if v := st.Get(keyReclaimed); v != nil {
			iv, err := decodeIvals(v)
			if err != nil {
				return s.corrupt("reclaimed spans", err)
			}
			out.Reclaimed = iv
		}
		if v := st.Get(keyPaxos); v != nil {
			c, rest, err := decodeClaims(v)
			if err == nil && len(rest) != 0 {
				err = errors.New("trailing bytes")
			}
			if err != nil {
				return s.corrupt("consensus claims", err)
			}
			out.Paxos = c
		}
		out.Syncing = len(st.Get(keySyncing)) == 1 && st.Get(keySyncing)[0] == 1
		if b := tx.Bucket(bucketMeta).Get(keyBeat); len(b) == 8 {
			out.Beat = time.Unix(0, int64(binary.BigEndian.Uint64(b)))
		}
		return tx.Bucket(bucketAlloc).ForEach(func(k, v []byte) error {
			if len(k) != 4 || len(v) == 0 {
				return s.corrupt("allocation", fmt.Errorf("key %x", k))
			}
			out.Allocs[binary.BigEndian.Uint32(k)] = string(v)
			return nil
		})
	})
	out.Fresh = out.Ring == nil && len(out.Allocs) == 0 && !out.Paxos.Promise.valid()
	return out, err
}

// SaveState implements Store.
func (s *BoltStore) SaveState(state State) error {
	sy := []byte{0}
	if state.Syncing {
		sy[0] = 1
	}
	kv := [][2][]byte{
		{keyRing, state.Ring},
		{keySyncing, sy},
		{keyVerified, appendIvals(nil, state.Verified)},
		{keyReclaimed, appendIvals(nil, state.Reclaimed)},
		{keyPaxos, appendClaims(nil, state.Paxos)},
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		st := tx.Bucket(bucketState)
		for _, x := range kv {
			if err := st.Put(x[0], x[1]); err != nil {
				return err
			}
		}
		return nil
	})
}

// PutAlloc implements Store. Concurrent calls share one transaction and
// one fsync.
func (s *BoltStore) PutAlloc(addr uint32, owner string) error {
	var k [4]byte
	binary.BigEndian.PutUint32(k[:], addr)
	return s.commit(func(b *bolt.Bucket) error { return b.Put(k[:], []byte(owner)) })
}

// DeleteAllocs implements Store.
func (s *BoltStore) DeleteAllocs(addrs []uint32) error {
	if len(addrs) == 0 {
		return nil
	}
	return s.commit(func(b *bolt.Bucket) error {
		for _, a := range addrs {
			var k [4]byte
			binary.BigEndian.PutUint32(k[:], a)
			if err := b.Delete(k[:]); err != nil {
				return err
			}
		}
		return nil
	})
}

// Beat implements Store.
func (s *BoltStore) Beat(t time.Time) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keyBeat, binary.BigEndian.AppendUint64(nil, uint64(t.UnixNano())))
	})
}

// Close implements Store; it is idempotent.
func (s *BoltStore) Close() error {
	var err error
	s.once.Do(func() { err = s.db.Close() })
	return err
}

// MemStore is a Store in memory, for tests and simulations: it outlives
// the Allocator using it, as a data file outlives a crashed process.
type MemStore struct {
	mu    sync.Mutex // guards the fields below
	saved Saved
	fresh bool
}

// NewMemStore returns an empty MemStore.
func NewMemStore() *MemStore {
	return &MemStore{saved: Saved{Allocs: map[uint32]string{}}, fresh: true}
}

// Load implements Store.
func (m *MemStore) Load() (Saved, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := m.saved
	out.State = cloneState(m.saved.State)
	out.Allocs = maps.Clone(m.saved.Allocs)
	out.Fresh = m.fresh && len(out.Allocs) == 0 && out.Ring == nil
	return out, nil
}

func cloneState(st State) State {
	st.Ring = slices.Clone(st.Ring)
	st.Verified = slices.Clone(st.Verified)
	st.Reclaimed = slices.Clone(st.Reclaimed)
	return st
}

// SaveState implements Store.
func (m *MemStore) SaveState(st State) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.saved.State = cloneState(st)
	m.fresh = false
	return nil
}

// PutAlloc implements Store.
func (m *MemStore) PutAlloc(addr uint32, owner string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.saved.Allocs[addr] = owner
	m.fresh = false
	return nil
}

// DeleteAllocs implements Store.
func (m *MemStore) DeleteAllocs(addrs []uint32) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, a := range addrs {
		delete(m.saved.Allocs, a)
	}
	return nil
}

// Beat implements Store.
func (m *MemStore) Beat(t time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.saved.Beat = t
	return nil
}

// Close implements Store.
func (m *MemStore) Close() error { return nil }
