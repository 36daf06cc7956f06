// Package macs owns the table that says which peer each Ethernet address
// lives behind. The datapath learns source addresses on every frame and
// looks destinations up on every frame, so lookups and refreshes of a known
// address take only a read lock and atomics; only a new address takes the
// write lock.
package macs

import (
	"net"
	"sync"
	"sync/atomic"
	"time"

	"weavemesh.dev/weave/peer"
)

// DefaultTTL is how long an address stays known without being seen, as for
// a switch's forwarding database. After that, frames to it are flooded until
// it speaks again.
const DefaultTTL = 10 * time.Minute

// Addr is an Ethernet address packed into the low 48 bits.
type Addr uint64

// AddrFrom reads an address from 6 bytes.
func AddrFrom(b []byte) Addr {
	_ = b[5]
	return Addr(uint64(b[0])<<40 | uint64(b[1])<<32 | uint64(b[2])<<24 | uint64(b[3])<<16 | uint64(b[4])<<8 | uint64(b[5]))
}

// Multicast reports whether the group bit is set (broadcast included).
func (a Addr) Multicast() bool { return a&(1<<40) != 0 }

func (a Addr) String() string {
	b := make(net.HardwareAddr, 6)
	for i := 5; i >= 0; i-- {
		b[i] = byte(a)
		a >>= 8
	}
	return b.String()
}

type entry struct {
	owner atomic.Uint64 // peer.Name
	seen  atomic.Int64  // unix seconds; coarse on purpose, refreshed at most once a second
}

// Table maps addresses to the peer that owns them. Safe for concurrent use.
type Table struct {
	ttl   int64
	moved func(a Addr, from, to peer.Name)

	mu sync.RWMutex // guards m (the map, not the entries, whose fields are atomic)
	m  map[Addr]*entry
}

// New returns a table whose entries expire after ttl (DefaultTTL if zero).
// moved, if not nil, is called when an address changes owner; it must not block.
func New(ttl time.Duration, moved func(a Addr, from, to peer.Name)) *Table {
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	return &Table{ttl: int64(ttl / time.Second), moved: moved, m: make(map[Addr]*entry)}
}

// Learn records that a lives behind owner, as seen at now (unix seconds).
// A known address that shows up behind another peer moves at once.
func (t *Table) Learn(a Addr, owner peer.Name, now int64) {
	if a.Multicast() {
		return
	}
	t.mu.RLock()
	e := t.m[a]
	t.mu.RUnlock()
	if e == nil {
		t.mu.Lock()
		if e = t.m[a]; e == nil {
			e = &entry{}
			e.owner.Store(uint64(owner))
			e.seen.Store(now)
			t.m[a] = e
			t.mu.Unlock()
			return
		}
		t.mu.Unlock()
	}
	if old := peer.Name(e.owner.Load()); old != owner {
		e.owner.Store(uint64(owner))
		if t.moved != nil {
			t.moved(a, old, owner)
		}
	}
	if e.seen.Load() != now {
		e.seen.Store(now)
	}
}

// Lookup returns the owner of a, if a was seen within the TTL.
func (t *Table) Lookup(a Addr, now int64) (peer.Name, bool) {
	t.mu.RLock()
	e := t.m[a]
	t.mu.RUnlock()
	if e == nil || now-e.seen.Load() > t.ttl {
		return peer.None, false
	}
	return peer.Name(e.owner.Load()), true
}

// Expire deletes entries not seen within the TTL and returns how many.
func (t *Table) Expire(now int64) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for a, e := range t.m {
		if now-e.seen.Load() > t.ttl {
			delete(t.m, a)
			n++
		}
	}
	return n
}

// ForgetPeer deletes every address owned by p, so frames to them are
// flooded (and relearned) instead of sent to a peer that is gone.
func (t *Table) ForgetPeer(p peer.Name) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for a, e := range t.m {
		if peer.Name(e.owner.Load()) == p {
			delete(t.m, a)
			n++
		}
	}
	return n
}

// Entry is one row of the table, for status output.
type Entry struct {
	Addr  Addr
	Owner peer.Name
	Seen  time.Time
}

// Entries returns a snapshot of the table.
func (t *Table) Entries() []Entry {
	t.mu.RLock()
	defer t.mu.RUnlock()
	out := make([]Entry, 0, len(t.m))
	for a, e := range t.m {
		out = append(out, Entry{Addr: a, Owner: peer.Name(e.owner.Load()), Seen: time.Unix(e.seen.Load(), 0)})
	}
	return out
}

// Len returns the number of entries, expired ones included until Expire.
func (t *Table) Len() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return len(t.m)
}
