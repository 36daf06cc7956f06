package dns

import (
	"net/netip"
	"slices"
	"strings"
)

// Queries: read-only views of the visible records, for the DNS handler
// and the HTTP API.

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
