package ipam

import (
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
	"time"

	"weavemesh.dev/weave/peer"
)

// Consensus timing: the lowest-named participant proposes as soon as it
// hears of a majority; the others wait proposeBackoff plus a jitter of
// their own before they start a round of their own, and as long again
// whenever a round stalls, so duelling proposers are rare.
//
// While it has heard of fewer than all N peers, the first proposer also
// waits allWait from the moment it heard of a majority: peers launched
// together then all get a share of the first split, and a named peer that
// never comes delays it by that much only.
const (
	proposeBackoff = 2 * time.Second
	proposeJitter  = 2 * time.Second
	allWait        = 5 * time.Second
)

// consensusLocked runs this peer's part of the Paxos that agrees on the
// initial split (paxos.go): it proposes when it is its turn, takes the
// steps its view allows, records its own claims durably before they are
// published, and splits the range once a value is chosen.
func (a *Allocator) consensusLocked(now time.Time) []func() {
	x := a.paxos
	if x == nil || a.ring != nil {
		return nil
	}
	if v, ok := x.chosen(); ok {
		a.splitChosenLocked(v)
		return nil
	}
	for _, e := range a.entries {
		if e.RingID != 0 {
			// The range is split already: adopt that ring (askStateLocked
			// asks for it) rather than agree on another.
			return nil
		}
	}
	before := x.mine()
	if x.heard() >= x.quorum && a.majoritySince.IsZero() {
		a.majoritySince = now
	}
	everyone := x.heard() >= a.opts.Init.Quorum || !now.Before(a.majoritySince.Add(allWait))
	if x.heard() >= x.quorum && everyone {
		switch {
		case a.proposeAt.IsZero() && !x.highestPromise().valid() && a.lowestParticipantLocked():
			a.proposeLocked(now)
		case a.proposeAt.IsZero():
			// Not our turn yet: the lowest-named peer goes first, and a
			// round under way is given time to finish.
			a.proposeAt = now.Add(a.backoff(x.highestPromise().Round))
		case !now.Before(a.proposeAt):
			a.proposeLocked(now)
		}
	}
	x.think(a.proposalValueLocked)
	if x.mine() != before {
		// The claims must be durable before anyone hears of them: a
		// promise or acceptance forgotten in a crash could let two
		// values be chosen.
		if err := a.saveLocked(); err != nil {
			a.log.Error("cannot record this peer's consensus claims; not publishing them", "err", err)
			return nil
		}
		a.mine.Paxos = x.mine()
	}
	if v, ok := x.chosen(); ok {
		a.splitChosenLocked(v)
	}
	return nil
}

func (a *Allocator) proposeLocked(now time.Time) {
	a.paxos.propose()
	round := a.paxos.mine().Promise.Round
	a.proposeAt = now.Add(a.backoff(round))
	a.log.Debug("proposing a split of the range", "round", round, "participants", a.paxos.heard())
}

// progressLocked notes that the consensus moved, which postpones a new
// round of this peer's own.
func (a *Allocator) progressLocked(now time.Time) {
	if a.paxos != nil && !a.proposeAt.IsZero() {
		a.proposeAt = now.Add(a.backoff(a.paxos.highestPromise().Round))
	}
}

// backoff is how long this peer waits before a round of its own: fixed
// per peer and round, so runs are reproducible and peers spread out.
func (a *Allocator) backoff(round uint32) time.Duration {
	h := fnv.New64a()
	var b [10]byte
	a.self.PutBytes(b[:6])
	b[6], b[7], b[8], b[9] = byte(round>>24), byte(round>>16), byte(round>>8), byte(round)
	h.Write(b[:])
	return proposeBackoff + time.Duration(h.Sum64()%uint64(proposeJitter))
}

func (a *Allocator) lowestParticipantLocked() bool {
	for p := range a.paxos.knows {
		if p < a.self {
			return false
		}
	}
	return true
}

// proposalValueLocked is the set this peer proposes: every participant it
// has heard of, itself included.
func (a *Allocator) proposalValueLocked() string {
	return encodeNames(slices.Collect(maps.Keys(a.paxos.knows)))
}

// splitChosenLocked splits the range among the chosen set, as every other
// participant will.
func (a *Allocator) splitChosenLocked(v string) {
	set, err := decodeNames(v)
	if err == nil {
		var r *Ring
		if r, err = NewRing(a.opts.Range, set); err == nil {
			a.ring = r
		}
	}
	if err != nil {
		a.log.Error("cannot split the range among the chosen peers", "err", err)
		return
	}
	a.mine.Flags = a.flagsLocked()
	a.mine.RingID = a.ring.ID
	a.mine.Paxos = claims{}
	a.paxos = nil
	if err := a.saveLocked(); err != nil {
		a.log.Error("cannot record the split range", "err", err)
	}
	a.changedLocked()
	a.log.Info("peers agreed; address range split", "range", a.ring.Range, "peers", len(set))
}

// mergeClaimsLocked takes in a waiting peer's consensus claims.
func (a *Allocator) mergeClaimsLocked(name peer.Name, e entry) {
	if a.paxos == nil || e.Flags&flagWaiting == 0 {
		return
	}
	if a.paxos.update(name, e.Paxos) {
		a.progressLocked(a.opts.Now())
		a.Kick() // take the next step now, not at the next tick
	}
}

func (a *Allocator) consensusStatusLocked() string {
	switch a.opts.Init.Mode {
	case ModeSeed:
		return "seeded"
	case ModeObserver:
		return "observer"
	}
	n := a.opts.Init.Quorum
	if a.paxos == nil {
		return fmt.Sprintf("waiting for a majority of %d peers", n)
	}
	round := a.paxos.highestPromise().Round
	state := "no proposal yet"
	if round > 0 {
		state = fmt.Sprintf("proposal round %d", round)
	}
	return fmt.Sprintf("waiting for a majority (%d) of the %d peers of --ipalloc-init consensus=%d to agree on the split; heard from %d of them, this peer included; %s",
		a.paxos.quorum, n, n, a.paxos.heard(), state)
}
