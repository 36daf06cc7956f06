package inproc

import (
	"sync/atomic"
	"time"

	"weavemesh.dev/weave/internal/clock"
)

// JumpClock is the real clock plus an offset that Jump moves at once,
// forward or back, as when a host's clock is stepped: time keeps running,
// tickers keep their real pace, and Now reads the stepped time.
type JumpClock struct {
	offset atomic.Int64 // nanoseconds added to the real time
}

var _ clock.Clock = (*JumpClock)(nil)

// Now returns the real time plus the offset.
func (c *JumpClock) Now() time.Time {
	return time.Now().Add(time.Duration(c.offset.Load()))
}

// NewTicker returns a real ticker: a stepped clock does not change how
// often timers fire.
func (c *JumpClock) NewTicker(d time.Duration) clock.Ticker {
	return clock.Real.NewTicker(d)
}

// Jump steps the clock by d (negative: back).
func (c *JumpClock) Jump(d time.Duration) { c.offset.Add(int64(d)) }

// Offset is how far the clock has been stepped in all.
func (c *JumpClock) Offset() time.Duration { return time.Duration(c.offset.Load()) }
