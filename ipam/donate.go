package ipam

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"

	"weavemesh.dev/weave/peer"
)

// Donations move space between peers: a peer with no free space in a
// subnet asks one other owner, which gives away half of its largest free
// run there, durably, before anyone hears of it. A donor that cannot give
// says why (refusal), so the asker can tell a full mesh from one that is
// still settling.

// requestDonationLocked picks a peer to ask for space in subnet and
// returns the request to send, or explains why there is none.
func (a *Allocator) requestDonationLocked(subnet netip.Prefix, want ival, now time.Time) ([]byte, peer.Name, error) {
	d := a.donations[subnet]
	if d == nil {
		d = &donation{refused: map[peer.Name]refused{}}
		a.donations[subnet] = d
	}
	own := a.othersSpaceLocked(want)
	if d.inFlight {
		if now.Sub(d.sent) < donateTimeout {
			return nil, 0, errWaiting
		}
		a.log.Info("no answer to a request for address space; asking another peer", "peer", d.to, "subnet", subnet)
		d.refused[d.to] = refused{at: now, why: refusedNotReady}
		d.inFlight = false
	}
	for p, r := range d.refused {
		forget := now.Sub(r.at) > busyMemory
		if r.why == refusedFull {
			// "Full" holds until the donor frees something or gets more
			// space, as its entry and the ring show.
			forget = now.Sub(r.at) > refuseMemory || a.entries[p].Allocated != r.allocated || own[p] != r.owned
		}
		if forget {
			delete(d.refused, p)
		}
	}
	alive := a.aliveLocked()
	var best peer.Name
	var bestScore int64 = -1 << 62
	var unreachable uint64
	var busy []string
	for p, n := range own {
		if !alive[p] || a.ring.IsRemoved(p) {
			unreachable += n
			continue
		}
		if r, no := d.refused[p]; no {
			if r.why != refusedFull {
				busy = append(busy, fmt.Sprintf("%s (%s)", p, r.why))
			}
			continue
		}
		score := int64(n) - int64(a.entries[p].Allocated)
		if score > bestScore || (score == bestScore && p < best) {
			best, bestScore = p, score
		}
	}
	if best != peer.None {
		d.inFlight, d.to, d.sent = true, best, now
		a.log.Debug("asking for address space", "peer", best, "subnet", subnet)
		return appendDonateRequest(nil, a.ring.ID, subnet), best, errWaiting
	}
	if len(busy) > 0 {
		sort.Strings(busy)
		return nil, 0, fmt.Errorf("%w: the peers with space in %s cannot give any yet: %s", ErrUnavailable, subnet, strings.Join(busy, ", "))
	}
	if q, until := a.quarantinedLocked(want, now); q > 0 {
		return nil, 0, fmt.Errorf("%w: the free addresses of %s are %d reclaimed from a lost peer, held back until %s in case that peer was only cut off (--ipalloc-reclaim-after)",
			ErrUnavailable, subnet, q, until.Format(time.RFC3339))
	}
	if unreachable > 0 {
		return nil, 0, fmt.Errorf("%w: no reachable peer has free addresses in %s; %d of its addresses belong to unreachable peers (they are reclaimed after --ipalloc-reclaim-after, or with weave rmpeer once those peers are gone for good)",
			ErrUnavailable, subnet, unreachable)
	}
	mesh := uint64(len(a.allocs))
	for p, e := range a.entries {
		if p != a.self && e.RingID == a.ring.ID {
			mesh += uint64(e.Allocated)
		}
	}
	return nil, 0, fmt.Errorf("%w: every address of %s is in use (%d addresses in use across the mesh, %d of them in %s on this host); release some with weave detach, or use a larger --ipalloc-range or subnet",
		ErrExhausted, subnet, mesh, a.countInLocked(want), subnet)
}

// othersSpaceLocked is how much of want each other peer owns.
func (a *Allocator) othersSpaceLocked(want ival) map[peer.Name]uint64 {
	own := map[peer.Name]uint64{}
	for _, s := range a.ring.Spans {
		if s.Owner == a.self || s.End <= want.start || s.Start >= want.end {
			continue
		}
		own[s.Owner] += uint64(min(s.End, want.end) - max(s.Start, want.start))
	}
	return own
}

// donate answers a request for space: it gives away the upper half of its
// largest free run in the subnet, durably, before anyone hears of it.
func (a *Allocator) donate(from peer.Name, m message) {
	a.mu.Lock()
	grant, why := a.donateLocked(from, m)
	id := a.ringIDLocked()
	a.mu.Unlock()
	a.answer(from, grant, appendDonateReply(nil, id, grant, why))
}

// answer sends a reply that gives space away (a donation, a hand-back),
// broadcasting the change first so every peer learns of it at once, not
// only the one it went to.
func (a *Allocator) answer(to peer.Name, grant *Ring, reply []byte) {
	if grant != nil {
		a.broadcastRing(grant)
	}
	a.tr.SendAsync(to, reply)
}

// ringIDLocked is the ring's identity, 0 before there is one.
func (a *Allocator) ringIDLocked() uint64 {
	if a.ring == nil {
		return 0
	}
	return a.ring.ID
}

func (a *Allocator) donateLocked(from peer.Name, m message) (*Ring, refusal) {
	if a.ring == nil || m.ringID != a.ring.ID || from == a.self || a.ring.IsRemoved(from) {
		return nil, refusedNotReady
	}
	if a.usableLocked() != nil {
		return nil, a.refusalLocked()
	}
	want, err := a.subnetIval(m.subnet)
	if err != nil {
		return nil, refusedFull
	}
	first, last := a.availableLocked(want, a.opts.Now())
	best := a.largestFreeLocked(first)
	if best.end == best.start {
		best = a.largestFreeLocked(last)
	}
	size := best.end - best.start
	if size == 0 {
		if a.ownsUnverifiedLocked(want) {
			return nil, refusedNotReady
		}
		if q, _ := a.quarantinedLocked(want, a.opts.Now()); q > 0 {
			return nil, refusedNotReady
		}
		return nil, refusedFull
	}
	give := ival{best.start + size/2, best.end}
	var pieces []Span
	for _, s := range a.ring.Spans {
		st, en := max(s.Start, give.start), min(s.End, give.end)
		if st < en {
			pieces = append(pieces, Span{Start: st, End: en, Owner: from, Version: s.Version + 1})
		}
	}
	undo := a.snapshotLocked()
	a.ring.set(slices.Clone(pieces)...)
	a.pruneOwnedLocked()
	if err := a.saveLocked(); err != nil {
		// Not durable: undo, so a restart cannot find the space both here
		// and there.
		a.restoreLocked(undo)
		a.log.Error("cannot record a donation; refusing it", "err", err)
		return nil, refusedNotReady
	}
	a.counts.Donated++
	a.log.Info("donated address space", "to", from, "first", numAddr(a.ring.Base()+give.start), "count", give.end-give.start)
	return partialRing(a.ring, pieces), 0
}

// largestFreeLocked is the largest run of unallocated offsets in avail.
func (a *Allocator) largestFreeLocked(avail []ival) ival {
	base := a.ring.Base()
	var used []uint32
	for addr := range a.allocs {
		used = append(used, addr-base)
	}
	slices.Sort(used)
	var best ival
	for _, v := range avail {
		pos := v.start
		i, _ := slices.BinarySearch(used, v.start)
		for ; pos < v.end; i++ {
			next := v.end
			if i < len(used) && used[i] < v.end {
				next = used[i]
			}
			if next-pos > best.end-best.start {
				best = ival{pos, next}
			}
			if next == v.end {
				break
			}
			pos = next + 1
		}
	}
	return best
}

// ownership is what an ownership change touches, to undo it when it cannot
// be recorded.
type ownership struct {
	spans     []Span
	verified  []ival
	reclaimed []ival
}

func (a *Allocator) snapshotLocked() ownership {
	return ownership{slices.Clone(a.ring.Spans), slices.Clone(a.verified), slices.Clone(a.reclaimed)}
}

func (a *Allocator) restoreLocked(o ownership) {
	a.ring.Spans, a.verified, a.reclaimed = o.spans, o.verified, o.reclaimed
}

// partialRing is a delta of r carrying spans.
func partialRing(r *Ring, spans []Span) *Ring {
	return &Ring{ID: r.ID, Range: r.Range, Spans: spans, Removed: map[peer.Name]uint64{}, Revived: map[peer.Name]uint64{}, Reclaimed: map[peer.Name]uint64{}}
}

// received handles a donation reply: the granted spans become verified
// space at once (the donor guarantees them free) once durable.
func (a *Allocator) received(from peer.Name, m message) {
	a.mu.Lock()
	defer a.mu.Unlock()
	defer a.changedLocked()
	var d *donation
	for _, x := range a.donations {
		if x.inFlight && x.to == from {
			d = x
		}
	}
	if d != nil {
		d.inFlight = false
	}
	if a.ring == nil || m.ringID != a.ring.ID {
		return
	}
	if m.grant == nil {
		if d != nil {
			r := refused{at: a.opts.Now(), why: m.why, allocated: a.entries[from].Allocated}
			for subnet, x := range a.donations {
				if x == d {
					if want, err := a.subnetIval(subnet); err == nil {
						r.owned = a.othersSpaceLocked(want)[from]
					}
				}
			}
			d.refused[from] = r
		}
		return
	}
	if a.acceptGrantLocked(m.grant) > 0 {
		a.counts.Received++
	}
}

// acceptGrantLocked merges spans given to this peer (a donation or a hand
// back) and verifies those it owns at exactly the given version: their
// giver recorded the change before sending it. It returns the number of
// addresses verified.
func (a *Allocator) acceptGrantLocked(grant *Ring) uint64 {
	if _, err := a.mergeRingLocked(grant, false); err != nil {
		return 0
	}
	var n uint64
	before := slices.Clone(a.verified)
	for _, s := range grant.Spans {
		if cur, ok := a.ring.spanAt(s.Start); ok && cur.Owner == a.self && cur.Version == s.Version && cur.End >= s.End {
			a.verified = ivalsAdd(a.verified, ival{s.Start, s.End})
			n += uint64(s.Size())
		}
	}
	if err := a.saveLocked(); err != nil {
		a.verified = before
		a.log.Error("cannot record space given to this peer; not using it", "err", err)
		return 0
	}
	return n
}
