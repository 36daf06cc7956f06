package ipam

import (
	"encoding/binary"
	"errors"
	"slices"

	"weavemesh.dev/weave/peer"
)

// The initial split of the range is agreed by single-decree Paxos carried
// in the peers' gossiped entries, as Weave Net did. Every waiting peer is
// an acceptor, and any of them may propose. The value is the set of peers
// to split the range among. Each peer publishes only its own claims (the
// highest proposal it promised and the proposal it accepted, with its
// value), and every peer sees every other's claims through gossip, so a
// Paxos message is simply a newer entry. Claims only ever grow, and a peer
// records its own durably before it publishes them, so lost, repeated and
// reordered gossip and crashes cannot make two peers see two different
// values chosen: a value is chosen once a majority of the named peers
// accepted the same proposal.

// proposalID orders proposals: by round, then by proposer name, so two
// proposers never issue the same one.
type proposalID struct {
	Round    uint32
	Proposer peer.Name
}

func (p proposalID) less(q proposalID) bool {
	if p.Round != q.Round {
		return p.Round < q.Round
	}
	return p.Proposer < q.Proposer
}

func (p proposalID) valid() bool { return p.Round > 0 }

// claims is what one acceptor has told the others. Value is the accepted
// set of peer names as 6-byte names, sorted (a string, so claims compare
// with ==).
type claims struct {
	Promise  proposalID
	Accepted proposalID
	Value    string
}

// paxos is one peer's view of the consensus: its own claims and the last
// it heard of every other participant's. It is not safe for concurrent
// use; the Allocator guards it.
type paxos struct {
	self   peer.Name
	quorum int // a majority of the named peers
	knows  map[peer.Name]claims
}

func newPaxos(self peer.Name, quorum int, mine claims) *paxos {
	return &paxos{self: self, quorum: max(1, quorum), knows: map[peer.Name]claims{self: mine}}
}

func (x *paxos) mine() claims { return x.knows[x.self] }

// update merges what a peer claims, field by field: each field only grows.
// It reports whether anything changed.
func (x *paxos) update(from peer.Name, c claims) bool {
	if from == x.self {
		return false
	}
	old, ok := x.knows[from]
	if !ok {
		x.knows[from] = c
		return true
	}
	changed := false
	if old.Promise.less(c.Promise) {
		old.Promise, changed = c.Promise, true
	}
	if old.Accepted.less(c.Accepted) {
		old.Accepted, old.Value, changed = c.Accepted, c.Value, true
	}
	x.knows[from] = old
	return changed
}

// highestPromise is the highest proposal any participant has promised.
func (x *paxos) highestPromise() proposalID {
	var h proposalID
	for _, c := range x.knows {
		if h.less(c.Promise) {
			h = c.Promise
		}
	}
	return h
}

// propose starts a new round (Paxos "prepare") that supersedes every
// proposal this peer has heard of.
func (x *paxos) propose() {
	c := x.mine()
	c.Promise = proposalID{Round: x.highestPromise().Round + 1, Proposer: x.self}
	x.knows[x.self] = c
}

// think takes the Paxos steps this peer's view allows and reports whether
// its own claims changed (they must then be recorded durably and
// published). value gives the set to propose when no value was accepted
// by the promising majority yet.
func (x *paxos) think(value func() string) bool {
	old := x.mine()
	c := old
	// Promise: follow the highest proposal heard of; never go back.
	if h := x.highestPromise(); c.Promise.less(h) {
		c.Promise = h
	}
	x.knows[x.self] = c
	// As proposer: once a majority promised our proposal, ask them to
	// accept it, with the value of the highest proposal any of them
	// accepted before, or else our own.
	if c.Promise.Proposer == x.self && c.Accepted != c.Promise {
		n := 0
		var best claims
		for _, k := range x.knows {
			if k.Promise == c.Promise {
				n++
				if k.Accepted.valid() && best.Accepted.less(k.Accepted) {
					best = k
				}
			}
		}
		if n >= x.quorum {
			v := best.Value
			if !best.Accepted.valid() {
				v = value()
			}
			if v != "" {
				c.Accepted, c.Value = c.Promise, v
			}
		}
	}
	// Accept: a proposal we promised that its proposer has asked us to
	// accept (it has accepted it itself).
	if c.Accepted != c.Promise {
		if p, ok := x.knows[c.Promise.Proposer]; ok && p.Accepted == c.Promise {
			c.Accepted, c.Value = p.Accepted, p.Value
		}
	}
	x.knows[x.self] = c
	return c != old
}

// chosen returns the value a majority accepted under one proposal, if any.
func (x *paxos) chosen() (string, bool) {
	counts := map[proposalID]int{}
	for _, c := range x.knows {
		if c.Accepted.valid() {
			counts[c.Accepted]++
			if counts[c.Accepted] >= x.quorum {
				return c.Value, true
			}
		}
	}
	return "", false
}

// heard is how many participants (this peer included) this peer knows.
func (x *paxos) heard() int { return len(x.knows) }

// encodeNames turns a set of peers into a claims value: sorted, no
// duplicates, 6 bytes each.
func encodeNames(ps []peer.Name) string {
	ps = sortedNames(ps)
	b := make([]byte, 0, 6*len(ps))
	for _, p := range ps {
		var nb [6]byte
		p.PutBytes(nb[:])
		b = append(b, nb[:]...)
	}
	return string(b)
}

// decodeNames is encodeNames' inverse; it checks the value from untrusted
// bytes.
func decodeNames(v string) ([]peer.Name, error) {
	if len(v)%6 != 0 {
		return nil, errors.New("peer set length is not a multiple of 6")
	}
	out := make([]peer.Name, 0, len(v)/6)
	for i := 0; i < len(v); i += 6 {
		n := peer.FromBytes([]byte(v[i : i+6]))
		if n == peer.None || n == peer.Broadcast {
			return nil, errors.New("peer set names a reserved peer")
		}
		out = append(out, n)
	}
	if !slices.IsSorted(out) || len(slices.Compact(slices.Clone(out))) != len(out) {
		return nil, errors.New("peer set is not sorted and unique")
	}
	return out, nil
}

// maxValueBytes bounds an accepted value: 4096 peers.
const maxValueBytes = 6 * 4096

// Claims encoding, inside an entry and in the data file:
//
//	[promise round uvarint][promise proposer, 6]
//	[accepted round uvarint][accepted proposer, 6]
//	[value length uvarint][value: 6-byte names, sorted]
func appendClaims(b []byte, c claims) []byte {
	b = appendProposal(b, c.Promise)
	b = appendProposal(b, c.Accepted)
	b = binary.AppendUvarint(b, uint64(len(c.Value)))
	return append(b, c.Value...)
}

func appendProposal(b []byte, p proposalID) []byte {
	b = binary.AppendUvarint(b, uint64(p.Round))
	var nb [6]byte
	p.Proposer.PutBytes(nb[:])
	return append(b, nb[:]...)
}

func decodeProposal(b []byte) (proposalID, []byte, error) {
	r, n := binary.Uvarint(b)
	if n <= 0 || r > 1<<32-1 {
		return proposalID{}, nil, errors.New("proposal round is malformed")
	}
	b = b[n:]
	if len(b) < 6 {
		return proposalID{}, nil, errors.New("proposal truncated in proposer")
	}
	p := proposalID{Round: uint32(r), Proposer: peer.FromBytes(b)}
	if p.Round > 0 && (p.Proposer == peer.None || p.Proposer == peer.Broadcast) {
		return proposalID{}, nil, errors.New("proposal from a reserved name")
	}
	return p, b[6:], nil
}

func decodeClaims(b []byte) (claims, []byte, error) {
	var c claims
	var err error
	if c.Promise, b, err = decodeProposal(b); err != nil {
		return c, nil, err
	}
	if c.Accepted, b, err = decodeProposal(b); err != nil {
		return c, nil, err
	}
	l, n := binary.Uvarint(b)
	if n <= 0 || l > maxValueBytes || l > uint64(len(b)-n) {
		return c, nil, errors.New("accepted value length is malformed")
	}
	b = b[n:]
	c.Value = string(b[:l])
	if _, err := decodeNames(c.Value); err != nil {
		return c, nil, err
	}
	if c.Accepted.valid() != (c.Value != "") {
		return c, nil, errors.New("accepted proposal and value disagree")
	}
	return c, b[l:], nil
}
