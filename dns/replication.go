package dns

import (
	"slices"
	"time"

	"weavemesh.dev/weave/mesh/mix"
	"weavemesh.dev/weave/peer"
)

// Replication: merging other peers' deltas, the digest exchange of
// push-pull, the pulls and snapshots that repair differences, and the
// catch-up of a store that has not yet had a complete exchange.

// Catch-up timings.
const (
	// catchUpReply is how long the snapshots answering a push-pull's pull
	// may take before a store still catching up asks. It is short: a
	// peer that dropped them because it listed this one as dead learns
	// otherwise from gossip within a few hundred milliseconds.
	catchUpReply = 500 * time.Millisecond
	// catchUpRetry is the first wait between asks, doubling up to
	// catchUpMax, about gossip's push-pull interval.
	catchUpRetry = time.Second
	catchUpMax   = 30 * time.Second
)

// catchUp tracks a store's first complete exchange with another peer.
// Gossip's join push-pull normally is one, but it can be lost: a peer
// that rejoins this one before its channels are registered exchanges
// state without them, and the snapshots that answer the pull are dropped
// by a peer that still lists this one as dead from its previous life
// (until gossip spreads the refutation the push-pull set off). Without
// catch-up, the mesh's records would then appear only at the next
// periodic push-pull, half a minute later. Until done, Refresh asks one
// alive peer for the records of every owner the membership lists.
type catchUp struct {
	done bool          // a snapshot arrived, or a push-pull found nothing to pull
	next time.Time     // no ask before
	wait time.Duration // between asks: catchUpRetry, doubling up to catchUpMax
	turn int           // rotates the peer asked
}

// catchUpLocked returns, when one is due, the peer to ask and the pull to
// send it.
func (s *Store) catchUpLocked(now time.Time) (peer.Name, []byte) {
	c := &s.catch
	if c.done || now.Before(c.next) {
		return peer.None, nil
	}
	owners := []peer.Name{s.self}
	var alive []peer.Name
	for name, p := range s.peers {
		if name == s.self {
			continue
		}
		owners = append(owners, name)
		if p.Alive {
			alive = append(alive, name)
		}
	}
	if len(alive) == 0 {
		return peer.None, nil
	}
	slices.Sort(alive)
	slices.Sort(owners)
	to := alive[c.turn%len(alive)]
	c.turn++
	c.wait = min(max(2*c.wait, catchUpRetry), catchUpMax)
	c.next = now.Add(c.wait)
	return to, encodePull(owners)
}

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
	now := s.now()
	s.mu.Lock()
	for _, o := range differ {
		if _, listed := s.peers[o]; listed || o == s.self {
			pull = append(pull, o)
		}
	}
	if len(pull) == 0 {
		s.catch.done = true
	} else if !s.catch.done {
		// The pull is a catch-up of its own: give its snapshots time.
		s.catch.next = now.Add(catchUpReply)
	}
	s.mu.Unlock()
	if len(pull) > 0 {
		s.send(sender, encodePull(pull))
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
		s.send(from, encodeSnapshots(s.snapshots(owners)))
	case kindSnapshot:
		ss, err := decodeSnapshots(msg)
		if err != nil {
			s.log.Debug("dns: bad snapshot from peer", "peer", from, "err", err)
			return
		}
		s.mergeSnapshots(ss)
		s.mu.Lock()
		s.catch.done = true
		s.mu.Unlock()
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
		if _, listed := s.peers[sn.owner]; !listed {
			// Forgotten since the pull asked for it (or never asked for):
			// merging would bring it back.
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

// Digest summarises what FullState lists, for the gossip layer's
// anti-entropy (gossip.Digester): equal per-owner digests give an equal
// sum whatever the order.
func (s *Store) Digest() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var d uint64
	for owner, os := range s.owners {
		if len(os.entries) == 0 && os.floor == 0 {
			continue
		}
		d += mix.Mix64(uint64(owner) ^ mix.Mix64(os.floor^mix.Mix64(os.hash)))
	}
	return d
}
