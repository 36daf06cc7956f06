package sleeve

import "weavemesh.dev/weave/internal/clock"

// Clock is the engine's source of time: the health goroutine's ticks, and
// the time every heartbeat, link timeout, probe and MAC entry is measured
// against. Options.Clock defaults to the real one; tests use a manual one
// (sleevetest.Clock), which moves only when told to, so a link goes down
// because the test advanced the clock past LinkTimeout and not because
// real time passed.
type Clock = clock.Clock

// Ticker delivers ticks, as time.Ticker does (see clock.Ticker).
type Ticker = clock.Ticker

var realClock = clock.Real
