package gossip

import "bytes"

// delegate is memberlist's view of a Node: metadata, user messages,
// broadcasts and push-pull state. memberlist calls it from its packet and
// stream goroutines, concurrently; the packet path must not block, and no
// byte slice memberlist hands in is kept without a copy.
type delegate Node

func (d *delegate) NodeMeta(limit int) []byte {
	m := *(*Node)(d).meta.Load()
	if len(m) > limit {
		return nil // cannot happen: Config bounds the free-text fields
	}
	return m
}

func (d *delegate) NotifyMsg(b []byte) {
	n := (*Node)(d)
	n.cbMu.RLock()
	defer n.cbMu.RUnlock()
	if n.closed.Load() {
		return
	}
	f, err := decodeFrame(b)
	if err != nil {
		n.decodeError("message", err)
		return
	}
	if f.kind == kindUnicast && string(f.channel) == aeChannel {
		n.handleAE(f.from, f.payload)
		return
	}
	ch := n.channels.Load().byName[string(f.channel)]
	if ch == nil {
		// A channel a newer peer has and this one does not.
		n.stats.unknownChannel.Add(1)
		return
	}
	switch f.kind {
	case kindDelta:
		n.stats.broadcastsReceived.Add(1)
		n.stats.bytes.broadcastRx.Add(uint64(len(b)))
		news, err := ch.state.MergeDelta(f.payload)
		if err != nil {
			// Not passed on either: this peer cannot vouch for it.
			n.mergeError(ch.name, "delta", err)
			return
		}
		// firstSight guards against a State that reports news too
		// eagerly: a delta is passed on at most once, and never when older
		// than one already passed on under the same origin and key.
		if news && f.from != n.cfg.Name && n.relay.firstSight(ch, f.from, f.seq, f.key, n.cfg.Clock.Now()) {
			n.enqueue(ch.name, f.from, string(f.key), bytes.Clone(b))
			n.stats.broadcastsRelayed.Add(1)
		}
	case kindUnicast:
		n.stats.unicastReceived.Add(1)
		n.stats.bytes.unicastRx.Add(uint64(len(b)))
		h := ch.handler.Load()
		if h == nil {
			n.stats.unicastUnhandled.Add(1)
			return
		}
		(*h)(f.from, bytes.Clone(f.payload))
	}
}

func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte {
	n := (*Node)(d)
	msgs := n.queue.GetBroadcasts(overhead, limit)
	n.stats.broadcastsSent.Add(uint64(len(msgs)))
	n.stats.bytes.broadcastsSent(msgs)
	return msgs
}

func (d *delegate) LocalState(join bool) []byte {
	n := (*Node)(d)
	n.cbMu.RLock()
	defer n.cbMu.RUnlock()
	if n.closed.Load() {
		return nil
	}
	set := n.channels.Load()
	if len(set.list) == 0 {
		return nil
	}
	entries := make([]stateEntry, 0, len(set.list))
	size := 16
	for _, c := range set.list {
		st := c.state.FullState()
		entries = append(entries, stateEntry{channel: []byte(c.name), state: st})
		size += len(c.name) + len(st) + 11
	}
	n.stats.pushPullSent.Add(1)
	b := appendPushPull(make([]byte, 0, size), entries)
	n.stats.bytes.pushPullTx.Add(uint64(len(b)))
	return b
}

func (d *delegate) MergeRemoteState(buf []byte, join bool) {
	n := (*Node)(d)
	n.cbMu.RLock()
	defer n.cbMu.RUnlock()
	if n.closed.Load() {
		return
	}
	n.stats.bytes.pushPullRx.Add(uint64(len(buf)))
	entries, err := decodePushPull(buf)
	if err != nil {
		n.decodeError("push-pull state", err)
		return
	}
	n.stats.pushPullReceived.Add(1)
	set := n.channels.Load()
	for _, e := range entries {
		ch := set.byName[string(e.channel)]
		if ch == nil {
			n.stats.unknownChannel.Add(1)
			continue
		}
		if err := ch.state.MergeFull(e.state); err != nil {
			n.mergeError(ch.name, "full state", err)
		}
	}
}

// decodeError counts and logs, rate-limited, input that does not decode.
func (n *Node) decodeError(what string, err error) {
	n.stats.decodeErrors.Add(1)
	if ok, suppressed := n.logLimit.allow("decode " + what); ok {
		n.log.Warn("dropping malformed gossip "+what+" from a peer", "err", err, "suppressed", suppressed)
	}
}

// mergeError counts and logs, rate-limited, state a channel refused.
func (n *Node) mergeError(channel, what string, err error) {
	n.stats.mergeErrors.Add(1)
	if ok, suppressed := n.logLimit.allow("merge " + channel + what); ok {
		n.log.Warn("replicated state refused a peer's "+what, "channel", channel, "err", err, "suppressed", suppressed)
	}
}
