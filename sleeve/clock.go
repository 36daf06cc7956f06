package sleeve

import "time"

// Clock is the engine's source of time: the health goroutine's ticks, and
// the time every heartbeat, link timeout, probe and MAC entry is measured
// against. Options.Clock defaults to the real one; tests use
// sleevetest.Clock, which moves only when told to, so a link goes down
// because the test advanced the clock past LinkTimeout and not because
// real time passed.
type Clock interface {
	Now() time.Time
	// NewTicker returns a ticker that fires every d.
	NewTicker(d time.Duration) Ticker
}

// Ticker delivers ticks, as time.Ticker does. It is an alias of an
// interface literal, so that a fake clock in a package sleeve's tests
// import (sleevetest) can implement Clock without importing sleeve.
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
