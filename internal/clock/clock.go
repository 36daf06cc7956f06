// Package clock owns the time source of the parts whose behaviour runs
// on timers (the sleeve's connection state machine, the gossip node's own
// rounds): the Clock interface, the real clock, and Manual, a clock for
// tests that moves only when told to, so a state changes because a test
// advanced time and not because real time passed.
package clock

import (
	"slices"
	"sync"
	"time"
)

// Clock is a source of time and tickers.
type Clock interface {
	Now() time.Time
	// NewTicker returns a ticker that fires every d.
	NewTicker(d time.Duration) Ticker
}

// Ticker delivers ticks, as time.Ticker does.
type Ticker interface {
	// C returns the channel the ticks arrive on. The owner calls C each
	// time it waits for a tick, never keeping the channel: a Manual clock
	// learns from the call that the previous tick has been handled.
	C() <-chan time.Time
	// Stop stops the ticker; no tick arrives after it returns.
	Stop()
}

// Real is the system clock.
var Real Clock = realClock{}

type realClock struct{}

func (realClock) Now() time.Time                   { return time.Now() }
func (realClock) NewTicker(d time.Duration) Ticker { return realTicker{time.NewTicker(d)} }

type realTicker struct{ t *time.Ticker }

func (r realTicker) C() <-chan time.Time { return r.t.C }
func (r realTicker) Stop()               { r.t.Stop() }

// Manual is a clock that moves only when Advance is called. Its tickers deliver each tick and then wait until the
// owner has handled it, so when Advance returns every engine on the clock
// has done all that its ticks up to the new time asked of it (sent its
// heartbeats, changed its link states).
type Manual struct {
	mu      sync.Mutex // guards all following fields
	cond    sync.Cond  // on mu: a ticker's owner came back for a tick, or it stopped
	now     time.Time
	tickers []*fakeTicker
}

type fakeTicker struct {
	every time.Duration
	ch    chan time.Time // unbuffered: a send is a hand-over
	stop  chan struct{}
	// Guarded by the Manual's mu.
	next    time.Time
	waits   int // calls of C: one before each tick taken, one after the last
	taken   int // ticks handed over
	stopped bool
	clock   *Manual
}

// NewManual returns a clock that reads start until advanced.
func NewManual(start time.Time) *Manual {
	c := &Manual{now: start}
	c.cond.L = &c.mu
	return c
}

// Now returns the clock's time.
func (c *Manual) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// NewTicker returns a ticker whose first tick is due d from now.
func (c *Manual) NewTicker(d time.Duration) Ticker {
	if d <= 0 {
		panic("clock: NewTicker with a non-positive interval")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTicker{every: d, ch: make(chan time.Time), stop: make(chan struct{}), next: c.now.Add(d), clock: c}
	c.tickers = append(c.tickers, t)
	return t
}

// Advance moves the clock forward by d. Each tick that falls due on the
// way is handed to its ticker's owner at the tick's time, in time order,
// and Advance waits until the owner has handled it (has come back to C)
// or stopped the ticker.
func (c *Manual) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	end := c.now.Add(d)
	for {
		var t *fakeTicker
		for _, x := range c.tickers {
			if !x.stopped && !x.next.After(end) && (t == nil || x.next.Before(t.next)) {
				t = x
			}
		}
		if t == nil {
			break
		}
		c.now = t.next
		t.next = t.next.Add(t.every)
		now := c.now
		c.mu.Unlock()
		delivered := false
		select {
		case t.ch <- now:
			delivered = true
		case <-t.stop:
		}
		c.mu.Lock()
		if delivered {
			t.taken++
			for t.waits <= t.taken && !t.stopped {
				c.cond.Wait()
			}
		}
	}
	c.now = end
}

func (t *fakeTicker) C() <-chan time.Time {
	t.clock.mu.Lock()
	t.waits++
	t.clock.cond.Broadcast()
	t.clock.mu.Unlock()
	return t.ch
}

func (t *fakeTicker) Stop() {
	c := t.clock
	c.mu.Lock()
	defer c.mu.Unlock()
	if !t.stopped {
		t.stopped = true
		close(t.stop)
		c.tickers = slices.DeleteFunc(c.tickers, func(x *fakeTicker) bool { return x == t })
		c.cond.Broadcast()
	}
}
