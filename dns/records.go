package dns

import (
	"errors"
	"fmt"
	"net/netip"

	"weavemesh.dev/weave/peer"
)

// Local changes: the records this peer owns, written with a new version
// each, and broadcast as deltas; record hashing for digests and queue keys.

// SetEndpoint makes the records of endpoint ep exactly name at addrs; an
// empty name or no addresses removes them. name must be canonical (see
// Normalize).
func (s *Store) SetEndpoint(ep, name string, addrs []netip.Addr) error {
	var names []string
	if name != "" {
		names = []string{name}
	}
	return s.SetEndpointNames(ep, names, addrs)
}

// SetEndpointNames is SetEndpoint for an endpoint known by several names
// (a Docker container's name and its network aliases): its records become
// exactly every name at every address.
func (s *Store) SetEndpointNames(ep string, names []string, addrs []netip.Addr) error {
	if ep == "" {
		return errors.New("dns: endpoint id is empty")
	}
	if len(names) == 0 {
		if err := checkKeyParts("", ep, addrs); err != nil {
			return err
		}
	}
	want := map[recKey]bool{}
	for _, name := range names {
		if name == "" {
			return errors.New("dns: an endpoint's name is empty")
		}
		if err := checkKeyParts(name, ep, addrs); err != nil {
			return err
		}
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
