package ipam

import (
	"context"
	"sync/atomic"
	"time"

	"weavemesh.dev/weave/gossip"
	"weavemesh.dev/weave/peer"
)

// inbound is a unicast message waiting for the Allocator.
type inbound struct {
	from peer.Name
	msg  []byte
}

// inboxSize bounds queued messages; more are dropped (their senders time
// out and ask again).
const inboxSize = 256

// Deliver queues a message from another peer for Run; it never blocks,
// so it can be the gossip layer's OnMessage handler.
func (a *Allocator) Deliver(from peer.Name, msg []byte) {
	select {
	case a.inbox <- inbound{from, msg}:
	default:
		a.log.Warn("IPAM inbox full; dropping a message", "from", from)
	}
}

// Run ticks every interval (1s if not positive) and handles delivered
// messages until ctx ends.
func (a *Allocator) Run(ctx context.Context, every time.Duration) {
	if every <= 0 {
		every = time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	a.Tick()
	for {
		select {
		case <-ctx.Done():
			return
		case m := <-a.inbox:
			a.HandleMessage(m.from, m.msg)
		case <-a.kick:
			a.Tick()
		case <-t.C:
			a.Tick()
		}
	}
}

// Kick asks Run to tick soon (membership changed); never blocks.
func (a *Allocator) Kick() {
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

// GossipTransport carries an Allocator's messages over a gossip channel.
// Create it, create the Allocator with it, register the Allocator as the
// channel's State, then SetChannel.
type GossipTransport struct {
	node    Membership
	ch      atomic.Pointer[gossip.Channel]
	members gossip.MembersCache[[]Member]
}

// Membership is gossip's view of the mesh; *gossip.Node has it.
type Membership interface {
	Members() []gossip.Member
}

// NewGossipTransport returns a transport over node's membership.
func NewGossipTransport(node Membership) *GossipTransport {
	return &GossipTransport{node: node}
}

// SetChannel sets the channel to use, once registered.
func (t *GossipTransport) SetChannel(ch *gossip.Channel) { t.ch.Store(ch) }

// Broadcast implements Transport.
func (t *GossipTransport) Broadcast(key string, delta []byte) error {
	ch := t.ch.Load()
	if ch == nil {
		return nil
	}
	return ch.Broadcast(key, delta)
}

// SendAsync implements Transport: the channel's queued sender carries it,
// and a lost message times out at the requester, which asks again.
func (t *GossipTransport) SendAsync(to peer.Name, msg []byte) bool {
	if ch := t.ch.Load(); ch != nil {
		return ch.SendAsync(to, msg)
	}
	return false
}

// Members implements Transport.
// The list is derived again only when gossip's list changed, and is
// shared: callers must not modify it.
func (t *GossipTransport) Members() []Member {
	return t.members.Get(t.node.Members(), func(ms []gossip.Member) []Member {
		out := make([]Member, 0, len(ms))
		for _, m := range ms {
			out = append(out, Member{Name: m.Name, Nickname: m.Nickname, Alive: m.State == gossip.Alive || m.State == gossip.Suspect})
		}
		return out
	})
}
