package gossip

import "sync/atomic"

// byteCounters count the bytes of the messages this node's channels
// carry, as memberlist hands them over or takes them: weave's own frames
// and states, without memberlist's probes, headers and encryption. They
// are plain atomic adds on the paths that already count messages: no
// lock, no allocation.
type byteCounters struct {
	broadcastTx, broadcastRx atomic.Uint64
	unicastTx, unicastRx     atomic.Uint64
	pushPullTx, pushPullRx   atomic.Uint64
}

// ByteStats are byte counts since New, by kind and direction.
type ByteStats struct {
	BroadcastSent, BroadcastReceived uint64 // delta transmissions
	UnicastSent, UnicastReceived     uint64
	PushPullSent, PushPullReceived   uint64 // full states
}

func (c *byteCounters) broadcastsSent(msgs [][]byte) {
	var n int
	for _, m := range msgs {
		n += len(m)
	}
	c.broadcastTx.Add(uint64(n))
}

func (c *byteCounters) stats() ByteStats {
	return ByteStats{
		BroadcastSent: c.broadcastTx.Load(), BroadcastReceived: c.broadcastRx.Load(),
		UnicastSent: c.unicastTx.Load(), UnicastReceived: c.unicastRx.Load(),
		PushPullSent: c.pushPullTx.Load(), PushPullReceived: c.pushPullRx.Load(),
	}
}
