package ipam

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"net/netip"
	"slices"
	"time"

	"weavemesh.dev/weave/peer"
)

// reclaimBump is added to a span's version when a surviving peer reclaims
// a lost peer's span. An owner bumps a version by one per change, so the
// lost owner could never have written a version this high.
const reclaimBump = 1 << 32

// Span is a run of addresses [Start, End) of the range, as offsets from the
// range's first address, owned by one peer at a version. Held, when set,
// is the time (Unix seconds) before which its owner must not hand out or
// give away any of it: the quarantine of space reclaimed from a peer that
// may only have been cut off. It travels with the span, so whoever owns
// the span next keeps to it.
type Span struct {
	Start, End uint32
	Owner      peer.Name
	Version    uint64
	Held       int64
}

// Size is the number of addresses in s.
func (s Span) Size() uint32 { return s.End - s.Start }

// beats reports whether s wins over o where both cover an address: the
// higher version wins, and between equal versions (two conflicting claims)
// the lower owner name wins, so every peer picks the same one.
func (s Span) beats(o Span) bool {
	switch {
	case s.Version != o.Version:
		return s.Version > o.Version
	case s.Owner != o.Owner:
		return s.Owner < o.Owner
	}
	return s.Held > o.Held
}

// heldAt reports whether s is quarantined at t.
func (s Span) heldAt(t time.Time) bool { return s.Held > 0 && t.Unix() < s.Held }

// Ring is the address range split into spans, each owned by one peer. It is
// a state-based CRDT: every address carries the (version, owner) of the
// span covering it, and a merge keeps, address by address, the winner
// under Span.beats. That order is total, so merges are commutative,
// associative and idempotent. Only a span's owner changes it (bumping the
// version by one), except a reclaim of a lost peer's span, which bumps it
// by reclaimBump.
//
// Removed and Revived are grow-only counters per peer (merge takes the
// maximum): a peer is removed (weave rmpeer) while Removed > Revived.
// Reclaimed marks peers whose space was reclaimed automatically: they
// stay voters in the reclaim quorum (see Voters) until removed.
//
// A Ring is not safe for concurrent use; the Allocator guards it.
type Ring struct {
	ID        uint64
	Range     netip.Prefix
	Spans     []Span // sorted, contiguous, covering [0, size)
	Removed   map[peer.Name]uint64
	Revived   map[peer.Name]uint64
	Reclaimed map[peer.Name]uint64
}

// ErrForeignRing is returned when a peer's ring was initialised apart from
// this one (another range, or another set of peers).
var ErrForeignRing = errors.New("ring was initialised separately")

// RingID is the identity of a ring split among peers over rng: the same
// inputs give the same ring on every peer.
func RingID(rng netip.Prefix, peers []peer.Name) uint64 {
	h := fnv.New64a()
	b := rng.Masked().Addr().As4()
	h.Write(b[:])
	h.Write([]byte{byte(rng.Bits())})
	for _, p := range sortedNames(peers) {
		var nb [6]byte
		p.PutBytes(nb[:])
		h.Write(nb[:])
	}
	id := h.Sum64()
	if id == 0 {
		id = 1
	}
	return id
}

// NewRing splits rng evenly among peers (sorted by name, duplicates
// dropped) at version 1.
func NewRing(rng netip.Prefix, peers []peer.Name) (*Ring, error) {
	if err := checkRange(rng); err != nil {
		return nil, err
	}
	ps := sortedNames(peers)
	if len(ps) == 0 {
		return nil, errors.New("ipam: a ring needs at least one peer")
	}
	size := rangeSize(rng)
	if uint64(len(ps)) > uint64(size) {
		return nil, fmt.Errorf("ipam: range %s is too small for %d peers", rng, len(ps))
	}
	r := &Ring{ID: RingID(rng, ps), Range: rng.Masked(), Removed: map[peer.Name]uint64{}, Revived: map[peer.Name]uint64{}, Reclaimed: map[peer.Name]uint64{}}
	share := size / uint32(len(ps))
	extra := size % uint32(len(ps))
	var start uint32
	for i, p := range ps {
		n := share
		if uint32(i) < extra {
			n++
		}
		r.Spans = append(r.Spans, Span{Start: start, End: start + n, Owner: p, Version: 1})
		start += n
	}
	return r, nil
}

func sortedNames(ps []peer.Name) []peer.Name {
	out := slices.Clone(ps)
	slices.Sort(out)
	return slices.Compact(out)
}

// checkRange accepts IPv4 prefixes of /8 to /30.
func checkRange(p netip.Prefix) error {
	switch {
	case !p.IsValid() || !p.Addr().Is4():
		return fmt.Errorf("ipam: range %v: want an IPv4 prefix like 10.32.0.0/12", p)
	case p.Bits() < 8 || p.Bits() > 30:
		return fmt.Errorf("ipam: range %v: prefix length must be 8-30", p)
	}
	return nil
}

func rangeSize(p netip.Prefix) uint32 { return uint32(1) << (32 - p.Bits()) }

// Clone returns a deep copy.
func (r *Ring) Clone() *Ring {
	if r == nil {
		return nil
	}
	c := *r
	c.Spans = slices.Clone(r.Spans)
	c.Removed = cloneMap(r.Removed)
	c.Revived = cloneMap(r.Revived)
	c.Reclaimed = cloneMap(r.Reclaimed)
	return &c
}

func cloneMap(m map[peer.Name]uint64) map[peer.Name]uint64 {
	out := make(map[peer.Name]uint64, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// Size is the number of addresses in the range.
func (r *Ring) Size() uint32 { return rangeSize(r.Range) }

// Base is the range's first address as a number.
func (r *Ring) Base() uint32 { return addrNum(r.Range.Addr()) }

// Owner returns the span covering offset off.
func (r *Ring) spanAt(off uint32) (Span, bool) {
	i, ok := slices.BinarySearchFunc(r.Spans, off, func(s Span, o uint32) int {
		switch {
		case s.End <= o:
			return -1
		case s.Start > o:
			return 1
		}
		return 0
	})
	if !ok {
		return Span{}, false
	}
	return r.Spans[i], true
}

// OwnerOf returns the owner of addr, or peer.None outside the range.
func (r *Ring) OwnerOf(addr netip.Addr) peer.Name {
	if !r.Range.Contains(addr) {
		return peer.None
	}
	s, _ := r.spanAt(addrNum(addr) - r.Base())
	return s.Owner
}

// Owned returns the spans owned by p.
func (r *Ring) Owned(p peer.Name) []Span {
	var out []Span
	for _, s := range r.Spans {
		if s.Owner == p {
			out = append(out, s)
		}
	}
	return out
}

// Owners returns each owner with its number of addresses.
func (r *Ring) Owners() map[peer.Name]uint32 {
	out := map[peer.Name]uint32{}
	for _, s := range r.Spans {
		out[s.Owner] += s.Size()
	}
	return out
}

// Voters are the peers the reclaim quorum counts: every owner and every
// peer whose space was reclaimed, less those removed with rmpeer. Counting
// reclaimed peers keeps the quorum from shrinking as one side of a
// partition reclaims, so two sides never both hold a majority.
func (r *Ring) Voters() map[peer.Name]bool {
	out := map[peer.Name]bool{}
	for _, s := range r.Spans {
		out[s.Owner] = true
	}
	for p, v := range r.Reclaimed {
		if v > 0 {
			out[p] = true
		}
	}
	for p := range out {
		if r.IsRemoved(p) {
			delete(out, p)
		}
	}
	return out
}

// IsRemoved reports whether p was removed with rmpeer and has not come back.
func (r *Ring) IsRemoved(p peer.Name) bool { return r.Removed[p] > r.Revived[p] }

// Merge merges o (a full ring or a partial one, as a delta) into r and
// reports whether r changed. Rings of different identity do not merge.
func (r *Ring) Merge(o *Ring) (bool, error) {
	if o.ID != r.ID || o.Range != r.Range {
		return false, fmt.Errorf("%w: ours is %016x over %s, theirs %016x over %s", ErrForeignRing, r.ID, r.Range, o.ID, o.Range)
	}
	changed := mergeCounters(r.Removed, o.Removed)
	if mergeCounters(r.Revived, o.Revived) {
		changed = true
	}
	if mergeCounters(r.Reclaimed, o.Reclaimed) {
		changed = true
	}
	merged := mergeSpans(r.Spans, o.Spans, Span.beats)
	if !slices.Equal(merged, r.Spans) {
		r.Spans = merged
		changed = true
	}
	return changed, nil
}

func mergeCounters(dst, src map[peer.Name]uint64) bool {
	changed := false
	for k, v := range src {
		if v > dst[k] {
			dst[k] = v
			changed = true
		}
	}
	return changed
}

// mergeSpans overlays b (sorted, disjoint, possibly partial) on a (a full
// cover of the range): where b covers an address and wins(b, a) holds, b's
// owner and version replace a's. Neighbours with the same owner and
// version are coalesced, which changes no address's value.
func mergeSpans(a, b []Span, wins func(sb, sa Span) bool) []Span {
	out := make([]Span, 0, len(a)+2*len(b))
	j := 0
	for _, sa := range a {
		pos := sa.Start
		for pos < sa.End {
			for j < len(b) && b[j].End <= pos {
				j++
			}
			if j < len(b) && b[j].Start <= pos {
				end := min(sa.End, b[j].End)
				win := sa
				if wins(b[j], sa) {
					win = b[j]
				}
				out = appendCoalesced(out, Span{Start: pos, End: end, Owner: win.Owner, Version: win.Version, Held: win.Held})
				pos = end
				continue
			}
			end := sa.End
			if j < len(b) {
				end = min(end, b[j].Start)
			}
			out = appendCoalesced(out, Span{Start: pos, End: end, Owner: sa.Owner, Version: sa.Version, Held: sa.Held})
			pos = end
		}
	}
	return out
}

func appendCoalesced(out []Span, s Span) []Span {
	if n := len(out); n > 0 && out[n-1].Owner == s.Owner && out[n-1].Version == s.Version && out[n-1].Held == s.Held && out[n-1].End == s.Start {
		out[n-1].End = s.End
		return out
	}
	return append(out, s)
}

// set overwrites the addresses spans cover, without version checks:
// callers have checked that they may.
func (r *Ring) set(spans ...Span) {
	slices.SortFunc(spans, func(a, b Span) int { return cmp.Compare(a.Start, b.Start) })
	r.Spans = mergeSpans(r.Spans, spans, func(Span, Span) bool { return true })
}

// Check verifies the structural invariants: spans sorted, non-empty,
// contiguous, covering the range, with real owners and versions.
func (r *Ring) Check() error {
	if err := checkRange(r.Range); err != nil {
		return err
	}
	pos := uint32(0)
	for i, s := range r.Spans {
		switch {
		case s.Start != pos:
			return fmt.Errorf("span %d starts at %d, want %d", i, s.Start, pos)
		case s.End <= s.Start:
			return fmt.Errorf("span %d is empty or reversed", i)
		case s.Owner == peer.None || s.Owner == peer.Broadcast:
			return fmt.Errorf("span %d has reserved owner %s", i, s.Owner)
		case s.Version == 0:
			return fmt.Errorf("span %d has version 0", i)
		}
		pos = s.End
	}
	if uint64(pos) != uint64(r.Size()) && !(pos == 0 && len(r.Spans) == 0) {
		return fmt.Errorf("spans cover %d of %d addresses", pos, r.Size())
	}
	if len(r.Spans) == 0 {
		return errors.New("ring has no spans")
	}
	return nil
}

// Ring encoding, used for push-pull, deltas and the data file:
//
//	[ringMagic][format][id, 8][range address, 4][range bits, 1]
//	[span count uvarint] then per span:
//	    [start uvarint][length uvarint][owner, 6][version uvarint][held uvarint]
//	[removed count uvarint] then [name, 6][counter uvarint]
//	[revived count uvarint] then [name, 6][counter uvarint]
//	[reclaimed count uvarint] then [name, 6][counter uvarint]
//
// A full ring's spans cover the range; a delta's need not. Held (Unix
// seconds, 0 for none) came with format 2; format 1, still read from data
// files, has no held field.
const (
	ringMagic  = 0xA7
	ringFormat = 2
	// minSpanBytes and minCounterBytes bound counts before allocating.
	minSpanBytes    = 9
	minCounterBytes = 7
)

// AppendRing encodes r (or a partial ring) after b.
func AppendRing(b []byte, r *Ring) []byte {
	b = append(b, ringMagic, ringFormat)
	b = binary.BigEndian.AppendUint64(b, r.ID)
	a := r.Range.Addr().As4()
	b = append(b, a[:]...)
	b = append(b, byte(r.Range.Bits()))
	b = binary.AppendUvarint(b, uint64(len(r.Spans)))
	for _, s := range r.Spans {
		b = binary.AppendUvarint(b, uint64(s.Start))
		b = binary.AppendUvarint(b, uint64(s.Size()))
		var nb [6]byte
		s.Owner.PutBytes(nb[:])
		b = append(b, nb[:]...)
		b = binary.AppendUvarint(b, s.Version)
		b = binary.AppendUvarint(b, uint64(max(s.Held, 0)))
	}
	b = appendCounters(b, r.Removed)
	b = appendCounters(b, r.Revived)
	b = appendCounters(b, r.Reclaimed)
	return b
}

func appendCounters(b []byte, m map[peer.Name]uint64) []byte {
	names := make([]peer.Name, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	slices.Sort(names)
	b = binary.AppendUvarint(b, uint64(len(names)))
	for _, n := range names {
		var nb [6]byte
		n.PutBytes(nb[:])
		b = append(b, nb[:]...)
		b = binary.AppendUvarint(b, m[n])
	}
	return b
}

// DecodeRing parses an encoded ring from untrusted bytes. With full, the
// spans must cover the whole range; otherwise (a delta) they must be sorted
// and disjoint. It returns the rest of b. It never panics.
func DecodeRing(b []byte, full bool) (*Ring, []byte, error) {
	if len(b) < 15 {
		return nil, nil, errors.New("ring truncated in header")
	}
	if b[0] != ringMagic {
		return nil, nil, fmt.Errorf("not a ring (magic %#x)", b[0])
	}
	format := b[1]
	if format != ringFormat && format != 1 {
		return nil, nil, fmt.Errorf("ring format %d is not %d (written by a newer version?)", b[1], ringFormat)
	}
	r := &Ring{ID: binary.BigEndian.Uint64(b[2:]), Removed: map[peer.Name]uint64{}, Revived: map[peer.Name]uint64{}, Reclaimed: map[peer.Name]uint64{}}
	addr := netip.AddrFrom4([4]byte(b[10:14]))
	bits := int(b[14])
	if bits > 32 {
		return nil, nil, fmt.Errorf("ring range prefix length %d", bits)
	}
	r.Range = netip.PrefixFrom(addr, bits)
	if err := checkRange(r.Range); err != nil {
		return nil, nil, err
	}
	if r.Range.Masked() != r.Range {
		return nil, nil, fmt.Errorf("ring range %s is not a network address", r.Range)
	}
	size := uint64(r.Size())
	b = b[15:]
	count, n := binary.Uvarint(b)
	if n <= 0 {
		return nil, nil, errors.New("ring span count is malformed")
	}
	b = b[n:]
	if count > uint64(len(b)/minSpanBytes) {
		return nil, nil, fmt.Errorf("ring claims %d spans in %d bytes", count, len(b))
	}
	r.Spans = make([]Span, 0, count)
	prevEnd := uint64(0)
	for i := uint64(0); i < count; i++ {
		start, n1 := binary.Uvarint(b)
		if n1 <= 0 {
			return nil, nil, fmt.Errorf("span %d: start is malformed", i)
		}
		length, n2 := binary.Uvarint(b[n1:])
		if n2 <= 0 {
			return nil, nil, fmt.Errorf("span %d: length is malformed", i)
		}
		b = b[n1+n2:]
		if len(b) < 6 {
			return nil, nil, fmt.Errorf("span %d: truncated in owner", i)
		}
		owner := peer.FromBytes(b)
		b = b[6:]
		ver, n3 := binary.Uvarint(b)
		if n3 <= 0 {
			return nil, nil, fmt.Errorf("span %d: version is malformed", i)
		}
		b = b[n3:]
		var held uint64
		if format >= 2 {
			var n4 int
			if held, n4 = binary.Uvarint(b); n4 <= 0 || held > 1<<40 {
				return nil, nil, fmt.Errorf("span %d: held time is malformed", i)
			}
			b = b[n4:]
		}
		switch {
		case length == 0:
			return nil, nil, fmt.Errorf("span %d is empty", i)
		case start < prevEnd || start > size || length > size-start:
			return nil, nil, fmt.Errorf("span %d [%d,+%d) overlaps or leaves the range of %d", i, start, length, size)
		case full && start != prevEnd:
			return nil, nil, fmt.Errorf("span %d leaves a gap at %d", i, prevEnd)
		case owner == peer.None || owner == peer.Broadcast:
			return nil, nil, fmt.Errorf("span %d has reserved owner %s", i, owner)
		case ver == 0:
			return nil, nil, fmt.Errorf("span %d has version 0", i)
		}
		r.Spans = append(r.Spans, Span{Start: uint32(start), End: uint32(start + length), Owner: owner, Version: ver, Held: int64(held)})
		prevEnd = start + length
	}
	if full && prevEnd != size {
		return nil, nil, fmt.Errorf("ring spans cover %d of %d addresses", prevEnd, size)
	}
	var err error
	if b, err = decodeCounters(b, r.Removed); err != nil {
		return nil, nil, fmt.Errorf("removed peers: %w", err)
	}
	if b, err = decodeCounters(b, r.Revived); err != nil {
		return nil, nil, fmt.Errorf("revived peers: %w", err)
	}
	if b, err = decodeCounters(b, r.Reclaimed); err != nil {
		return nil, nil, fmt.Errorf("reclaimed peers: %w", err)
	}
	return r, b, nil
}

func decodeCounters(b []byte, m map[peer.Name]uint64) ([]byte, error) {
	count, n := binary.Uvarint(b)
	if n <= 0 {
		return nil, errors.New("count is malformed")
	}
	b = b[n:]
	if count > uint64(len(b)/minCounterBytes) {
		return nil, fmt.Errorf("claims %d entries in %d bytes", count, len(b))
	}
	for i := uint64(0); i < count; i++ {
		if len(b) < 6 {
			return nil, errors.New("truncated in name")
		}
		name := peer.FromBytes(b)
		v, n := binary.Uvarint(b[6:])
		if n <= 0 {
			return nil, errors.New("counter is malformed")
		}
		b = b[6+n:]
		if name == peer.None || name == peer.Broadcast {
			return nil, fmt.Errorf("reserved name %s", name)
		}
		if v > 0 {
			m[name] = max(m[name], v)
		}
	}
	return b, nil
}

// addrNum and numAddr convert IPv4 addresses to numbers and back.
func addrNum(a netip.Addr) uint32 {
	b := a.As4()
	return binary.BigEndian.Uint32(b[:])
}

func numAddr(n uint32) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], n)
	return netip.AddrFrom4(b)
}
