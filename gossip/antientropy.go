package gossip

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"

	"weavemesh.dev/weave/mesh/mix"
	"weavemesh.dev/weave/peer"
)

// Anti-entropy by digest. A gossip broadcast reaches each peer with high
// probability, not certainty (each holder passes it to a few random
// peers), and memberlist's push-pull, which repairs what was missed,
// exchanges every member and every channel's full state, so at a few
// hundred peers it runs only every few minutes. Between push-pulls, every
// round each peer sends one random member a datagram of digests: how many
// members it sees alive with a hash of their names, and an 8-byte digest of
// each channel whose State is a Digester. A peer whose digests differ
// answers with its own, and each side sends the other the full state of
// the channels that differ (over TCP); the side that sees fewer alive
// members runs a memberlist push-pull with the other. A healthy mesh
// spends one small datagram per peer per round.
//
// The messages are unicasts on channel aeChannel, which older peers do
// not know and ignore:
//
//	digests: [aeDigests][flags][alive uvarint][members hash, 8][count]
//	             then count times [len][channel][digest, 8]
//	states:  [aeStates][count] then count times [len][channel][state length uvarint][state]
const (
	aeChannel = "gossip.ae"
	aeDigests = 1
	aeStates  = 2
	// aeReply flags digests sent in answer to digests: not answered again.
	aeReply = 1
	// aeQueueLen bounds full states waiting to be sent.
	aeQueueLen = 16
	// aePullEvery is how many rounds pass at least between two
	// membership push-pulls of one peer.
	aePullEvery = 30
)

// Digester is a State that can summarise itself: equal states have equal
// digests, whatever order they were built in, and different ones almost
// never do. Anti-entropy sends a State that is a Digester to a peer only
// when the digests differ.
type Digester interface {
	Digest() uint64
}

// aeDigest is one channel's digest in a digests message.
type aeDigest struct {
	channel []byte
	digest  uint64
}

// aeSummary is a decoded digests message. Slices alias the input.
type aeSummary struct {
	flags    byte
	alive    uint64
	members  uint64
	channels []aeDigest
}

func appendAEDigests(b []byte, s aeSummary) []byte {
	b = append(b, aeDigests, s.flags)
	b = binary.AppendUvarint(b, s.alive)
	b = binary.BigEndian.AppendUint64(b, s.members)
	b = append(b, byte(len(s.channels)))
	for _, c := range s.channels {
		b = append(b, byte(len(c.channel)))
		b = append(b, c.channel...)
		b = binary.BigEndian.AppendUint64(b, c.digest)
	}
	return b
}

// decodeAEDigests parses a digests message (after the type byte). It never
// panics, whatever the input.
func decodeAEDigests(b []byte) (aeSummary, error) {
	var s aeSummary
	if len(b) < 1 {
		return s, errors.New("digests truncated before flags")
	}
	s.flags = b[0]
	alive, n := binary.Uvarint(b[1:])
	if n <= 0 {
		return s, errors.New("digests: alive count is malformed")
	}
	s.alive = alive
	b = b[1+n:]
	if len(b) < 9 {
		return s, errors.New("digests truncated inside the members hash")
	}
	s.members = binary.BigEndian.Uint64(b)
	count := int(b[8])
	b = b[9:]
	s.channels = make([]aeDigest, 0, min(count, len(b)/10))
	for i := 0; i < count; i++ {
		ch, rest, err := lenPrefixed(b, "channel name")
		if err != nil {
			return s, fmt.Errorf("digests entry %d: %w", i, err)
		}
		if len(ch) == 0 || len(ch) > MaxChannelName {
			return s, fmt.Errorf("digests entry %d: channel name length %d is not 1-%d", i, len(ch), MaxChannelName)
		}
		if len(rest) < 8 {
			return s, fmt.Errorf("digests entry %d: truncated inside the digest", i)
		}
		s.channels = append(s.channels, aeDigest{channel: ch, digest: binary.BigEndian.Uint64(rest)})
		b = rest[8:]
	}
	if len(b) != 0 {
		return s, fmt.Errorf("digests have %d trailing bytes", len(b))
	}
	return s, nil
}

// aeEvery is the anti-entropy round: memberlist's probe interval, so the
// same dilation that slows probes slows it.
func (n *Node) aeEvery(mc *memberlist.Config) time.Duration {
	if n.cfg.AntiEntropyInterval != 0 {
		return n.cfg.AntiEntropyInterval
	}
	return mc.ProbeInterval
}

// aeLoop runs an anti-entropy round every d until ctx ends. memberlist's
// timers are real time, and so is this one.
func (n *Node) aeLoop(ctx context.Context, d time.Duration) {
	defer n.wg.Done()
	// Peers started together do not send together.
	t := time.NewTimer(time.Duration(rand.Int64N(int64(d))) + d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !n.left.Load() {
			n.aeRound()
		}
		t.Reset(d)
	}
}

// aeRound sends this peer's digests to one random alive member.
func (n *Node) aeRound() {
	to, ok := n.randomMember()
	if !ok {
		return
	}
	n.sendAEDigests(to, 0)
}

// randomMember picks an alive member other than this peer, from the
// shared member list: a few random draws, then one pass.
func (n *Node) randomMember() (Member, bool) {
	ms := n.Members()
	ok := func(m Member) bool {
		return m.Name != n.cfg.Name && m.State == Alive && m.GossipAddr.IsValid()
	}
	if len(ms) == 0 {
		return Member{}, false
	}
	for range 8 {
		if m := ms[rand.IntN(len(ms))]; ok(m) {
			return m, true
		}
	}
	seen := 0
	var pick Member
	for _, m := range ms {
		if ok(m) {
			seen++
			if rand.IntN(seen) == 0 {
				pick = m
			}
		}
	}
	return pick, seen > 0
}

// summary is this peer's digests now.
func (n *Node) summary(flags byte) aeSummary {
	// The two are updated together under mu (setState).
	n.mu.RLock()
	s := aeSummary{flags: flags, alive: uint64(n.alive.Load()), members: n.aliveHash.Load()}
	n.mu.RUnlock()
	for _, c := range n.channels.Load().list {
		if d, ok := c.state.(Digester); ok {
			s.channels = append(s.channels, aeDigest{channel: []byte(c.name), digest: d.Digest()})
		}
	}
	return s
}

// Mix64 is mix for States building their digests (Digester): the sum of
// Mix64 over the parts of a state does not depend on their order.
func Mix64(x uint64) uint64 { return mix.Mix64(x) }

func (n *Node) sendAEDigests(to Member, flags byte) {
	msg := appendUnicast(nil, aeChannel, n.cfg.Name, appendAEDigests(nil, n.summary(flags)))
	node := &memberlist.Node{Name: to.Name.String(), Addr: net.IP(to.GossipAddr.Addr().AsSlice()), Port: to.GossipAddr.Port()}
	if err := n.ml.SendBestEffort(node, msg); err != nil {
		n.log.Debug("gossip: anti-entropy digests not sent", "peer", to.Name, "err", err)
		return
	}
	n.stats.aeDigestsSent.Add(1)
}

// handleAE handles an anti-entropy message from a peer. It runs on
// memberlist's packet or stream goroutine, so it only queues what it
// sends.
func (n *Node) handleAE(from peer.Name, payload []byte) {
	if len(payload) == 0 {
		n.decodeError("anti-entropy message", errors.New("empty"))
		return
	}
	switch payload[0] {
	case aeDigests:
		s, err := decodeAEDigests(payload[1:])
		if err != nil {
			n.decodeError("anti-entropy digests", err)
			return
		}
		n.aeCompare(from, s)
	case aeStates:
		entries, err := decodePushPull(append([]byte{pushPullFormat}, payload[1:]...))
		if err != nil {
			n.decodeError("anti-entropy states", err)
			return
		}
		n.stats.aeStatesReceived.Add(1)
		set := n.channels.Load()
		for _, e := range entries {
			if ch := set.byName[string(e.channel)]; ch != nil {
				if err := ch.state.MergeFull(e.state); err != nil {
					n.mergeError(ch.name, "full state", err)
				}
			}
		}
	default:
		// A newer peer's message type.
		n.stats.unknownChannel.Add(1)
	}
}

// aeCompare acts on a peer's digests: sends it the states that differ,
// answers a first message whose digests differ with its own, and pulls the
// membership from a peer that sees more members alive.
func (n *Node) aeCompare(from peer.Name, s aeSummary) {
	m, ok := n.member(from)
	if !ok || gone(m.State) || from == n.cfg.Name {
		return
	}
	mine := n.summary(aeReply)
	differs := mine.alive != s.alive || mine.members != s.members
	theirs := make(map[string]uint64, len(s.channels))
	for _, c := range s.channels {
		theirs[string(c.channel)] = c.digest
	}
	var send []stateEntry
	set := n.channels.Load()
	for _, c := range mine.channels {
		d, ok := theirs[string(c.channel)]
		if !ok || d == c.digest {
			continue
		}
		differs = true
		ch := set.byName[string(c.channel)]
		send = append(send, stateEntry{channel: c.channel, state: ch.state.FullState()})
	}
	if len(send) > 0 {
		// The push-pull layout after its format byte.
		body := appendPushPull(nil, send)
		msg := append([]byte{aeStates}, body[1:]...)
		if !n.aeAsync.enqueue(from, msg) {
			n.stats.asyncDropped.Add(1)
		}
	}
	if differs && s.flags&aeReply == 0 {
		n.sendAEDigests(m, aeReply)
	}
	if s.alive > mine.alive {
		n.pullMembers(m)
	}
}

// pullMembers runs a memberlist push-pull with m, in the background, one
// at a time and at most once per aePullEvery rounds: a full exchange
// costs both sides CPU, and while a member is joining or failing, views
// differ everywhere at once.
func (n *Node) pullMembers(m Member) {
	now := time.Now().UnixNano()
	if last := n.aeLastPull.Load(); last != 0 && time.Duration(now-last) < aePullEvery*n.aeInterval {
		return
	}
	if !n.aePulling.CompareAndSwap(false, true) {
		return
	}
	n.aeLastPull.Store(now)
	if err := n.begin("anti-entropy"); err != nil {
		n.aePulling.Store(false)
		return
	}
	go func() {
		defer n.wg.Done()
		defer n.aePulling.Store(false)
		n.stats.aePulls.Add(1)
		if _, err := n.ml.Join([]string{m.GossipAddr.String()}); err != nil {
			n.log.Debug("gossip: anti-entropy push-pull failed", "peer", m.Name, "err", err)
		}
	}()
}

// aeSend sends a queued full-state message over TCP.
func (n *Node) aeSend(to peer.Name, msg []byte) error {
	m, ok := n.member(to)
	if !ok || gone(m.State) {
		return fmt.Errorf("gossip: anti-entropy to %s: not a live member", to)
	}
	frame := appendUnicast(make([]byte, 0, 8+len(aeChannel)+len(msg)), aeChannel, n.cfg.Name, msg)
	node := &memberlist.Node{Name: to.String(), Addr: net.IP(m.GossipAddr.Addr().AsSlice()), Port: m.GossipAddr.Port()}
	if err := n.ml.SendReliable(node, frame); err != nil {
		return err
	}
	n.stats.aeStatesSent.Add(1)
	return nil
}

func (n *Node) aeFailed(to peer.Name, err error) {
	n.log.Debug("gossip: anti-entropy states not sent", "peer", to, "err", err)
}

// aeState is the Node's anti-entropy machinery.
type aeState struct {
	aeAsync    *asyncSender // full states, over TCP; stopped by Shutdown
	aePulling  atomic.Bool  // a membership push-pull is in flight
	aeLastPull atomic.Int64 // when the last one started, unix nanoseconds
}
