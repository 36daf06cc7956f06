package gossip

import "time"

// Clock is the node's source of time for what it times itself: the
// rejoin rounds, join backoff, known-peer expiry, the relay's memory of
// deltas, and when members changed state and are pruned. memberlist keeps
// its own timers (probes, suspicion, push-pull), which stay real.
// Config.Clock defaults to the real clock; tests pass a manual one, so a
// round runs because the test advanced the clock.
type Clock interface {
	Now() time.Time
	// NewTicker returns a ticker that fires every d.
	NewTicker(d time.Duration) Ticker
}

// Ticker delivers ticks, as time.Ticker does. It is an alias of an
// interface literal, so a fake clock can implement Clock without naming
// this package (sleeve.Ticker is the same type).
type Ticker = interface {
	// C returns the channel the ticks arrive on. The owner calls C each
	// time it waits for a tick, never keeping the channel: a fake clock
	// learns from the call that the previous tick has been handled.
	C() <-chan time.Time
	// Stop stops the ticker; no tick arrives after it returns.
	Stop()
}

type realClock struct{}

func (realClock) Now() time.Time                   { return time.Now() }
func (realClock) NewTicker(d time.Duration) Ticker { return realTicker{time.NewTicker(d)} }

type realTicker struct{ t *time.Ticker }

func (r realTicker) C() <-chan time.Time { return r.t.C }
func (r realTicker) Stop()               { r.t.Stop() }
