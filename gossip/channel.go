package gossip

import (
	"errors"
	"fmt"
	"net"
	"sync/atomic"

	"github.com/hashicorp/memberlist"

	"weavemesh.dev/weave/peer"
)

// State is replicated state that another package keeps consistent across
// the mesh, typically a CRDT. Its methods are called concurrently from
// memberlist's goroutines, so they must be safe for concurrent use and
// must not block for long.
type State interface {
	// FullState returns the whole state for a push-pull exchange, kept
	// compact (versions and digests rather than bulk data where possible).
	FullState() []byte
	// MergeFull merges a peer's full state. It must not retain data.
	MergeFull(data []byte) error
	// MergeDelta merges a delta a peer broadcast and reports whether it
	// was news: whether it changed local state. A delta may arrive more
	// than once, late, or after newer state, and a peer may receive its
	// own deltas back; none of those is news. This peer passes news on to
	// others, which is how a delta reaches the whole mesh. It must not
	// retain data.
	MergeDelta(data []byte) (news bool, err error)
}

// Channel is one registered State: its deltas, unicast messages and share
// of push-pull exchanges.
type Channel struct {
	n       *Node
	name    string
	state   State
	handler atomic.Pointer[func(from peer.Name, msg []byte)]
	async   *asyncSender // SendAsync's queue and goroutine; stopped by Shutdown
}

// Name returns the channel name.
func (c *Channel) Name() string { return c.name }

// MaxDelta returns the largest delta Broadcast accepts with key: a
// broadcast must fit one gossip packet.
func (c *Channel) MaxDelta(key string) int {
	return c.n.maxFrame - deltaHeaderLen(c.name, key)
}

// Broadcast gossips delta to every peer, whose MergeDelta receives it. The
// local State is not told: apply the change locally first. key names the
// part of this peer's state the delta updates: on every peer it passes
// through, a newer delta from this peer with the same key replaces one
// still queued. An empty key replaces nothing. delta is copied. Deltas are
// best effort; push-pull repairs any a peer missed.
func (c *Channel) Broadcast(key string, delta []byte) error {
	if c.n.closed.Load() {
		return fmt.Errorf("gossip: broadcast on channel %q: node is shut down", c.name)
	}
	if len(key) > MaxKeyLen {
		return fmt.Errorf("gossip: broadcast on channel %q: key is %d bytes, at most %d allowed", c.name, len(key), MaxKeyLen)
	}
	if max := c.MaxDelta(key); len(delta) > max {
		return fmt.Errorf("gossip: broadcast on channel %q: delta of %d bytes does not fit one gossip packet (at most %d bytes with this key); send bulk state through FullState and push-pull", c.name, len(delta), max)
	}
	n := c.n
	seq := n.seq.Add(1)
	n.relay.firstSight(c, n.cfg.Name, seq, []byte(key), n.cfg.Clock.Now())
	msg := appendDelta(make([]byte, 0, deltaHeaderLen(c.name, key)+len(delta)), c.name, n.cfg.Name, seq, key, delta)
	n.enqueue(c.name, n.cfg.Name, key, msg)
	n.stats.broadcastsQueued.Add(1)
	return nil
}

// Send delivers msg to peer to over a TCP stream and returns once it was
// handed over, or with the error. It blocks up to the memberlist TCP
// timeout, so do not call it from an OnMessage handler or a State method
// (they run on memberlist's goroutines): use SendAsync there. msg may be
// any size.
func (c *Channel) Send(to peer.Name, msg []byte) error {
	n := c.n
	if n.closed.Load() {
		return fmt.Errorf("gossip: send to %s on channel %q: node is shut down", to, c.name)
	}
	if to == n.cfg.Name {
		return fmt.Errorf("gossip: send to %s on channel %q: that is this peer", to, c.name)
	}
	m, ok := n.member(to)
	if !ok {
		return fmt.Errorf("gossip: send to %s on channel %q: no such member", to, c.name)
	}
	if gone(m.State) {
		return fmt.Errorf("gossip: send to %s on channel %q: member is %s", to, c.name, m.State)
	}
	frame := appendUnicast(make([]byte, 0, 8+len(c.name)+len(msg)), c.name, n.cfg.Name, msg)
	node := &memberlist.Node{
		Name: to.String(),
		Addr: net.IP(m.GossipAddr.Addr().AsSlice()),
		Port: m.GossipAddr.Port(),
	}
	if err := n.ml.SendReliable(node, frame); err != nil {
		return fmt.Errorf("gossip: send to %s (%s) on channel %q: %w", to, m.GossipAddr, c.name, err)
	}
	n.stats.unicastSent.Add(1)
	n.stats.bytes.unicastTx.Add(uint64(len(frame)))
	return nil
}

// SendAsync queues msg for Send to peer to and returns at once.
//
// The blocking rule: SendAsync never blocks, so unlike Send it may be
// called from anywhere, including a State's methods and OnMessage
// handlers, with any lock held. It reports false when the message was
// dropped: the channel's queue (256 messages) is full or the node is shut
// down.
//
// The channel sends queued messages one at a time, in order, on a
// goroutine of its own that starts with the first message. A failed send
// is counted (Stats.AsyncFailed) and logged at debug level, not retried:
// callers repair lost messages their own way (the next push-pull, a
// request that times out). From the call on the channel owns msg; do not
// modify it. Shutdown stops the goroutine, dropping what is still queued,
// after waiting for a send in flight.
func (c *Channel) SendAsync(to peer.Name, msg []byte) bool {
	if c.n.closed.Load() || !c.async.enqueue(to, msg) {
		c.n.stats.asyncDropped.Add(1)
		return false
	}
	return true
}

// asyncFailed is told of each failed asynchronous send.
func (c *Channel) asyncFailed(to peer.Name, err error) {
	c.n.stats.asyncFailed.Add(1)
	c.n.log.Debug("gossip: queued send failed; not retried", "channel", c.name, "peer", to, "err", err)
}

// OnMessage sets the handler for messages sent to this channel with Send.
// Set it before Start. h runs on a gossip goroutine and must not block; it
// owns msg.
func (c *Channel) OnMessage(h func(from peer.Name, msg []byte)) {
	if h == nil {
		c.handler.Store(nil)
		return
	}
	c.handler.Store(&h)
}

// channelSet is the immutable set of registered channels; Register
// replaces it whole so readers need no lock.
type channelSet struct {
	byName map[string]*Channel
	list   []*Channel // registration order, for push-pull
}

// checkChannelName accepts 1-MaxChannelName printable ASCII characters
// without spaces.
func checkChannelName(name string) error {
	if name == "" {
		return errors.New("channel name is empty")
	}
	if len(name) > MaxChannelName {
		return fmt.Errorf("channel name %q is longer than %d bytes", name, MaxChannelName)
	}
	for i := 0; i < len(name); i++ {
		if name[i] <= ' ' || name[i] > '~' {
			return fmt.Errorf("channel name %q: only printable ASCII without spaces", name)
		}
	}
	return nil
}

// broadcast is a queued delta. With a key it is a NamedBroadcast, which
// memberlist's queue replaces in O(1) when news with the same name comes;
// the name is channel, NUL (which channel names never hold), origin and
// key.
type broadcast struct {
	name string
	msg  []byte
}

func (b *broadcast) Invalidates(o memberlist.Broadcast) bool {
	nb, ok := o.(memberlist.NamedBroadcast)
	return ok && nb.Name() == b.name
}
func (b *broadcast) Message() []byte { return b.msg }
func (b *broadcast) Finished()       {}
func (b *broadcast) Name() string    { return b.name }

// uniqueBroadcast is a queued delta without a key.
type uniqueBroadcast struct{ msg []byte }

func (b *uniqueBroadcast) Invalidates(memberlist.Broadcast) bool { return false }
func (b *uniqueBroadcast) Message() []byte                       { return b.msg }
func (b *uniqueBroadcast) Finished()                             {}
func (b *uniqueBroadcast) UniqueBroadcast()                      {}

// maxQueued bounds the broadcast queue, which nothing drains while this
// peer is alone; the oldest, most-sent entries go first.
const maxQueued = 4096

// enqueue queues msg, which the queue then owns.
func (n *Node) enqueue(channel string, origin peer.Name, key string, msg []byte) {
	if key == "" {
		n.queue.QueueBroadcast(&uniqueBroadcast{msg: msg})
	} else {
		var ob [6]byte
		origin.PutBytes(ob[:])
		n.queue.QueueBroadcast(&broadcast{name: channel + "\x00" + string(ob[:]) + key, msg: msg})
	}
	if n.queue.NumQueued() > maxQueued {
		n.queue.Prune(maxQueued)
	}
}
