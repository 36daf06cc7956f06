package gossip

import "weavemesh.dev/weave/internal/clock"

// Clock is the node's source of time for what it times itself: the
// rejoin rounds, join backoff, known-peer expiry, the relay's memory of
// deltas, and when members changed state and are pruned. memberlist keeps
// its own timers (probes, suspicion, push-pull), which stay real.
// Config.Clock defaults to the real clock; tests pass a manual one, so a
// round runs because the test advanced the clock.
type Clock = clock.Clock

// Ticker delivers ticks, as time.Ticker does (see clock.Ticker).
type Ticker = clock.Ticker

var realClock = clock.Real
