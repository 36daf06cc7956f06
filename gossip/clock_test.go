package gossip

import (
	"time"

	"weavemesh.dev/weave/internal/clock"
)

// manualClock moves only when advance is called (clock.Manual): when
// advance returns every node on the clock has finished the rejoin rounds
// its ticks started.
type manualClock struct{ *clock.Manual }

func newManualClock(start time.Time) manualClock { return manualClock{clock.NewManual(start)} }

func (c manualClock) advance(d time.Duration) { c.Advance(d) }
