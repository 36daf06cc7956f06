// Package topology owns the gossiped state of the data-plane links: each
// peer publishes the neighbours it currently cannot reach directly. Healthy
// links are the default and cost nothing, so in a healthy mesh the state
// grows with the number of peers, not with its square.
//
// The state is a CRDT: a map from peer to its latest entry, merged by
// keeping the highest version. Only a peer writes its own entry.
package topology

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"weavemesh.dev/weave/mesh/mix"
	"weavemesh.dev/weave/peer"
)

// Entry is one peer's published view of its links.
type Entry struct {
	Peer    peer.Name
	Version uint64
	Down    []peer.Name // sorted, no duplicates
}

// Encoded sizes.
const (
	formatVersion = 1
	entryFixedLen = 6 + 8 + 2
	// MaxDown bounds the down list of one entry so a decoder never
	// allocates from a forged count.
	MaxDown = 1 << 14
)

// ErrFormat is wrapped by every decoding error.
var ErrFormat = errors.New("topology: malformed state")

func appendEntry(b []byte, e *Entry) []byte {
	var fixed [entryFixedLen]byte
	e.Peer.PutBytes(fixed[0:6])
	binary.BigEndian.PutUint64(fixed[6:], e.Version)
	binary.BigEndian.PutUint16(fixed[14:], uint16(len(e.Down)))
	b = append(b, fixed[:]...)
	for _, d := range e.Down {
		var n [6]byte
		d.PutBytes(n[:])
		b = append(b, n[:]...)
	}
	return b
}

func decodeEntry(b []byte) (Entry, []byte, error) {
	if len(b) < entryFixedLen {
		return Entry{}, nil, fmt.Errorf("%w: entry of %d bytes, need %d", ErrFormat, len(b), entryFixedLen)
	}
	e := Entry{Peer: peer.FromBytes(b[0:6]), Version: binary.BigEndian.Uint64(b[6:14])}
	n := int(binary.BigEndian.Uint16(b[14:16]))
	b = b[entryFixedLen:]
	if e.Peer == peer.None || e.Peer == peer.Broadcast {
		return Entry{}, nil, fmt.Errorf("%w: reserved peer name %v", ErrFormat, e.Peer)
	}
	if n > MaxDown || len(b) < 6*n {
		return Entry{}, nil, fmt.Errorf("%w: %d down peers, %d bytes present", ErrFormat, n, len(b))
	}
	if n > 0 {
		e.Down = make([]peer.Name, n)
		for i := range e.Down {
			e.Down[i] = peer.FromBytes(b[6*i:])
			if i > 0 && e.Down[i] <= e.Down[i-1] {
				return Entry{}, nil, fmt.Errorf("%w: down list of %v not sorted", ErrFormat, e.Peer)
			}
		}
	}
	return e, b[6*n:], nil
}

// Topology is the local replica. Safe for concurrent use.
type Topology struct {
	self     peer.Name
	onChange func()

	mu      sync.Mutex // guards the fields below
	entries map[peer.Name]*Entry
	// digest is Digest's sum, kept as entries change: anti-entropy asks
	// for it every round, and the sum over hundreds of entries showed in
	// profiles of 500-peer meshes.
	digest uint64
	// gen counts changes; down is Down's map as of downGen.
	gen, downGen uint64
	down         map[peer.Name][]peer.Name
}

func entryTerm(e *Entry) uint64 { return mix.Mix64(uint64(e.Peer) ^ mix.Mix64(e.Version)) }

// setLocked stores e in place of p's entry, keeping digest and gen.
func (t *Topology) setLocked(e *Entry) {
	if cur := t.entries[e.Peer]; cur != nil {
		t.digest -= entryTerm(cur)
	}
	t.entries[e.Peer] = e
	t.digest += entryTerm(e)
	t.gen++
}

// New returns a replica for self holding an empty entry of its own.
// onChange, if set, is called after a merge changed the state; it must not
// block.
func New(self peer.Name, onChange func()) *Topology {
	t := &Topology{self: self, onChange: onChange, entries: make(map[peer.Name]*Entry)}
	t.setLocked(&Entry{Peer: self, Version: uint64(time.Now().UnixNano())})
	return t
}

// SetLocal publishes self's down list, returning the delta to broadcast, or
// nil when nothing changed. Versions come from the clock so a restarted
// peer, which remembers nothing, still outranks its previous life.
func (t *Topology) SetLocal(down []peer.Name) []byte {
	down = slices.Clone(down)
	slices.Sort(down)
	down = slices.Compact(down)
	t.mu.Lock()
	defer t.mu.Unlock()
	cur := t.entries[t.self]
	if slices.Equal(cur.Down, down) {
		return nil
	}
	v := max(cur.Version+1, uint64(time.Now().UnixNano()))
	t.setLocked(&Entry{Peer: t.self, Version: v, Down: down})
	return t.deltaLocked(t.self)
}

// LocalDelta returns the encoded entry of self, for re-broadcast.
func (t *Topology) LocalDelta() []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.deltaLocked(t.self)
}

func (t *Topology) deltaLocked(p peer.Name) []byte {
	return appendEntry([]byte{formatVersion}, t.entries[p])
}

// FullState encodes every entry, for push-pull.
func (t *Topology) FullState() []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := make([]byte, 5, 5+len(t.entries)*entryFixedLen)
	b[0] = formatVersion
	binary.BigEndian.PutUint32(b[1:], uint32(len(t.entries)))
	for _, e := range t.entries {
		b = appendEntry(b, e)
	}
	return b
}

// MergeDelta merges one broadcast entry and reports whether it was news.
func (t *Topology) MergeDelta(data []byte) (bool, error) {
	if len(data) < 1 || data[0] != formatVersion {
		return false, fmt.Errorf("%w: unknown format", ErrFormat)
	}
	e, rest, err := decodeEntry(data[1:])
	if err != nil {
		return false, err
	}
	if len(rest) != 0 {
		return false, fmt.Errorf("%w: %d trailing bytes", ErrFormat, len(rest))
	}
	return t.merge([]Entry{e}), nil
}

// MergeFull merges a peer's full state. Nothing is merged unless all of it
// decodes.
func (t *Topology) MergeFull(data []byte) error {
	if len(data) < 5 || data[0] != formatVersion {
		return fmt.Errorf("%w: unknown format or truncated header", ErrFormat)
	}
	n := binary.BigEndian.Uint32(data[1:])
	rest := data[5:]
	if uint64(n)*entryFixedLen > uint64(len(rest)) {
		return fmt.Errorf("%w: %d entries cannot fit in %d bytes", ErrFormat, n, len(rest))
	}
	es := make([]Entry, 0, n)
	for i := uint32(0); i < n; i++ {
		e, r, err := decodeEntry(rest)
		if err != nil {
			return err
		}
		es = append(es, e)
		rest = r
	}
	if len(rest) != 0 {
		return fmt.Errorf("%w: %d trailing bytes", ErrFormat, len(rest))
	}
	t.merge(es)
	return nil
}

func (t *Topology) merge(es []Entry) bool {
	changed := false
	t.mu.Lock()
	for i := range es {
		e := &es[i]
		cur := t.entries[e.Peer]
		if cur != nil && cur.Version >= e.Version {
			continue
		}
		if e.Peer == t.self {
			// A newer entry of our own from a previous life: outrank it
			// with what we believe now, and let the owner re-broadcast.
			t.setLocked(&Entry{Peer: t.self, Version: e.Version + 1, Down: cur.Down})
		} else {
			t.setLocked(&Entry{Peer: e.Peer, Version: e.Version, Down: e.Down})
		}
		changed = true
	}
	t.mu.Unlock()
	if changed && t.onChange != nil {
		t.onChange()
	}
	return changed
}

// Down returns every peer's down list. The map and the slices are shared
// (the same map until the state changes); do not modify them.
func (t *Topology) Down() map[peer.Name][]peer.Name {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.down != nil && t.downGen == t.gen {
		return t.down
	}
	m := make(map[peer.Name][]peer.Name)
	for p, e := range t.entries {
		if len(e.Down) > 0 {
			m[p] = e.Down
		}
	}
	t.down, t.downGen = m, t.gen
	return m
}

// Gen counts the changes to the state: equal generations, equal state.
func (t *Topology) Gen() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.gen
}

// Prune deletes the entries of peers for which keep returns false (peers
// gone from the mesh for good). Self is always kept.
func (t *Topology) Prune(keep func(peer.Name) bool) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for p, e := range t.entries {
		if p != t.self && !keep(p) {
			t.digest -= entryTerm(e)
			delete(t.entries, p)
			n++
		}
	}
	if n > 0 {
		t.gen++
	}
	return n
}

// Entry returns a copy of p's entry.
func (t *Topology) Entry(p peer.Name) (Entry, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.entries[p]
	if !ok {
		return Entry{}, false
	}
	return Entry{Peer: e.Peer, Version: e.Version, Down: slices.Clone(e.Down)}, true
}

// Digest summarises the state for anti-entropy (gossip.Digester): equal
// states give equal digests whatever order their entries came in. An
// entry's version fixes its contents, so peer and version stand for it.
func (t *Topology) Digest() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.digest
}
