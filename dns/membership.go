package dns

import (
	"time"

	"weavemesh.dev/weave/peer"
)

// Membership: which owners' records are visible, from what the
// membership layer says about each peer, and the expiry of what is gone.

// Refresh asks Peers who is alive, hides or shows owners accordingly,
// drops owners gone for ForgetAfter, expires this peer's old tombstones,
// and, until this store has caught up with the mesh, asks a peer for its
// records (see catchUp). Call it about once a second.
func (s *Store) Refresh() {
	peers := s.peersFn()
	now := s.now()
	s.mu.Lock()
	s.refreshLocked(peers, now)
	to, pull := s.catchUpLocked(now)
	s.mu.Unlock()
	if pull != nil {
		s.send(to, pull)
	}
}

func (s *Store) refreshLocked(peers []PeerStatus, now time.Time) {
	// Peers may hand back the same list while membership is steady; the
	// index of it is then still right.
	if !sameList(peers, s.peersSrc) {
		s.setPeersLocked(peers)
	}
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
	s.peers, s.peersSrc = m, peers
}

// sameList reports whether a and b are the same slice (not merely equal).
func sameList(a, b []PeerStatus) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
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
