package gossip

import (
	"hash/maphash"
	"sync"
	"time"

	"weavemesh.dev/weave/peer"
)

// relaySeen remembers, per channel, origin and key, the newest delta
// sequence number seen, so each peer passes a delta on at most once and
// never passes on one older than what it already passed on (which would
// replace newer news in its queue), whatever its State reports. Unkeyed
// deltas are remembered one by one. Entries expire after seenTTL, long after every copy of a delta has
// used up its transmissions.
type relaySeen struct {
	seed maphash.Seed

	mu      sync.Mutex // guards entries
	entries map[seenKey]seenEntry
}

// seenKey hashes the key so lookups do not allocate; a collision only
// costs a missed relay, which push-pull repairs.
type seenKey struct {
	ch      *Channel
	origin  peer.Name
	keyHash uint64
	seq     uint64 // unkeyed deltas only
}

type seenEntry struct {
	seq uint64
	at  time.Time
}

const (
	seenTTL  = 5 * time.Minute
	maxSeen  = 1 << 16 // bounds memory against a flood of distinct keys
	evictFew = 1024
)

func newRelaySeen() *relaySeen {
	return &relaySeen{seed: maphash.MakeSeed(), entries: make(map[seenKey]seenEntry)}
}

// firstSight records a delta and reports whether it is newer than any seen
// from origin with key on ch.
func (r *relaySeen) firstSight(ch *Channel, origin peer.Name, seq uint64, key []byte, now time.Time) bool {
	k := seenKey{ch: ch, origin: origin, keyHash: maphash.Bytes(r.seed, key)}
	if len(key) == 0 {
		k.seq = seq
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if e, ok := r.entries[k]; ok && (len(key) == 0 || e.seq >= seq) {
		return false
	}
	if len(r.entries) >= maxSeen {
		r.expireLocked(now)
		for victim := range r.entries {
			if len(r.entries) < maxSeen-evictFew {
				break
			}
			delete(r.entries, victim)
		}
	}
	r.entries[k] = seenEntry{seq: seq, at: now}
	return true
}

// expire drops entries older than seenTTL.
func (r *relaySeen) expire(now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.expireLocked(now)
}

func (r *relaySeen) expireLocked(now time.Time) {
	for k, e := range r.entries {
		if now.Sub(e.at) > seenTTL {
			delete(r.entries, k)
		}
	}
}
