package sleevetest

import (
	"time"

	"weavemesh.dev/weave/internal/clock"
)

// Clock is a clock that moves only when Advance is called, implementing
// sleeve.Clock. Its tickers deliver each tick and then wait until the
// owner has handled it, so when Advance returns every engine on the clock
// has done all that its ticks up to the new time asked of it (sent its
// heartbeats, changed its link states).
type Clock = clock.Manual

// NewClock returns a clock that reads start until advanced.
func NewClock(start time.Time) *Clock { return clock.NewManual(start) }
