package ipam

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"weavemesh.dev/weave/peer"
)

// Claim records addr, chosen by hand, as owner's if it lies in verified
// space of this peer and is free, so it is never handed out. It returns a
// warning when addr is in the range but cannot be recorded here.
func (a *Allocator) Claim(owner string, addr netip.Addr) string {
	a.mu.Lock()
	if !a.opts.Range.Contains(addr) {
		a.mu.Unlock()
		return ""
	}
	n := addrNum(addr)
	if cur, ok := a.allocs[n]; ok {
		a.mu.Unlock()
		if cur == owner {
			return ""
		}
		return fmt.Sprintf("%s is already allocated to %s", addr, cur)
	}
	if a.ring == nil {
		a.mu.Unlock()
		return fmt.Sprintf("%s lies in the IPAM range %s, which is not split yet; IPAM may hand it out too", addr, a.opts.Range)
	}
	off := n - a.ring.Base()
	if o := a.ring.OwnerOf(addr); o != a.self {
		a.mu.Unlock()
		return fmt.Sprintf("%s lies in the IPAM range %s, in space owned by peer %s, which may hand it out too; pick addresses outside the range or let IPAM choose", addr, a.opts.Range, o)
	}
	if len(ivalsIntersect(a.verified, []ival{{off, off + 1}})) == 0 {
		a.mu.Unlock()
		return fmt.Sprintf("%s lies in this peer's IPAM space, which is not verified yet; it was not recorded", addr)
	}
	a.allocs[n] = owner
	a.mu.Unlock()
	if err := a.store.PutAlloc(n, owner); err != nil {
		a.mu.Lock()
		delete(a.allocs, n)
		a.mu.Unlock()
		return fmt.Sprintf("record %s: %v", addr, err)
	}
	return ""
}

// Release frees every address held by owner and returns them.
func (a *Allocator) Release(owner string) []netip.Addr {
	return a.release(func(o string, _ uint32) bool { return o == owner })
}

// ReleaseAddr frees addr if owner holds it.
func (a *Allocator) ReleaseAddr(owner string, addr netip.Addr) bool {
	n := addrNum(addr)
	return len(a.release(func(o string, x uint32) bool { return o == owner && x == n })) > 0
}

func (a *Allocator) release(match func(owner string, addr uint32) bool) []netip.Addr {
	a.mu.Lock()
	var nums []uint32
	for addr, o := range a.allocs {
		if match(o, addr) {
			nums = append(nums, addr)
		}
	}
	for _, n := range nums {
		delete(a.allocs, n)
	}
	a.mu.Unlock()
	if len(nums) > 0 {
		a.Kick()
	}
	if err := a.store.DeleteAllocs(nums); err != nil {
		// The addresses stay recorded on disk: after a restart they are
		// released again by reconcile, never handed out twice.
		a.log.Warn("could not record released addresses", "err", err)
	}
	out := make([]netip.Addr, len(nums))
	for i, n := range nums {
		out[i] = numAddr(n)
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

// Owned returns owner's addresses.
func (a *Allocator) Owned(owner string) []netip.Addr {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []netip.Addr
	for n, o := range a.allocs {
		if o == owner {
			out = append(out, numAddr(n))
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

// Reconcile keeps the allocations of the owners in keep (and those
// recovered from the host, which rescans check) and releases the rest. It
// runs after a restart with the endpoints that survived.
func (a *Allocator) Reconcile(keep map[string]bool) []netip.Addr {
	return a.release(func(o string, _ uint32) bool {
		return !keep[o] && !strings.HasPrefix(o, recoveredPrefix)
	})
}

// RemovePeer marks p as gone for good (weave rmpeer): its spans are
// reclaimed by the one surviving peer the rule picks. Running it again,
// or on several hosts, changes nothing more. It refuses a peer this one
// sees alive.
func (a *Allocator) RemovePeer(p peer.Name) (string, error) {
	a.mu.Lock()
	if a.ring == nil {
		a.mu.Unlock()
		return "", fmt.Errorf("%w: the range is not split yet, so there is nothing to reclaim", ErrUnavailable)
	}
	if p == a.self {
		a.mu.Unlock()
		return "", errors.New("cannot remove this peer itself; run weave rmpeer on another peer's host")
	}
	if a.aliveLocked()[p] {
		a.mu.Unlock()
		return "", fmt.Errorf("peer %s is alive; stop its router first (weave stop on its host), then remove it", p)
	}
	owned := a.ring.Owners()[p]
	if a.ring.IsRemoved(p) {
		a.mu.Unlock()
		return fmt.Sprintf("peer %s was already removed; %d addresses left to reclaim", p, owned), nil
	}
	a.ring.Removed[p] = max(a.ring.Removed[p], a.ring.Revived[p]+1)
	delta := &Ring{ID: a.ring.ID, Range: a.ring.Range, Removed: map[peer.Name]uint64{p: a.ring.Removed[p]}, Revived: map[peer.Name]uint64{}, Reclaimed: map[peer.Name]uint64{}}
	if err := a.saveLocked(); err != nil {
		a.mu.Unlock()
		return "", err
	}
	a.mu.Unlock()
	a.broadcastRing(delta)
	a.Tick()
	return fmt.Sprintf("peer %s removed; its %d addresses are reclaimed by a surviving peer", p, owned), nil
}

func (a *Allocator) broadcastRing(delta *Ring) {
	b := append([]byte{deltaRing}, AppendRing(nil, delta)...)
	if err := a.tr.Broadcast("", b); err != nil {
		a.log.Debug("ring change too large to broadcast; push-pull carries it", "err", err)
	}
}

// Close stops allocations; it is idempotent. The store is the caller's.
func (a *Allocator) Close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return
	}
	a.closed = true
	if a.dirty {
		if err := a.saveLocked(); err != nil {
			a.log.Warn("save IPAM state at shutdown", "err", err)
		}
	}
}

// RingSnapshot returns a copy of the ring (nil before it exists).
func (a *Allocator) RingSnapshot() *Ring {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.ring.Clone()
}

// Allocations returns every allocation of this peer.
func (a *Allocator) Allocations() map[netip.Addr]string {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[netip.Addr]string, len(a.allocs))
	for n, o := range a.allocs {
		out[numAddr(n)] = o
	}
	return out
}

// usableSpace returns the offsets this peer may allocate from now.
func (a *Allocator) usableSpace() []ival {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.usableLocked() != nil || a.ring == nil {
		return nil
	}
	first, last := a.availableLocked(ival{0, a.ring.Size()}, a.opts.Now())
	out := slices.Clone(first)
	for _, v := range last {
		out = ivalsAdd(out, v)
	}
	return out
}

func (a *Allocator) conflictList() []string {
	out := slices.Collect(maps.Values(a.conflicts))
	slices.Sort(out)
	return out
}
