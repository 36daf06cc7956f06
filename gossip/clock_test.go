package gossip

import (
	"slices"
	"sync"
	"time"
)

// manualClock moves only when advance is called, implementing Clock (as
// sleevetest.Clock does for the sleeve). Its tickers deliver each tick and
// then wait until the owner has handled it, so when advance returns every
// node on the clock has finished the rejoin rounds its ticks started.
type manualClock struct {
	mu      sync.Mutex // guards all following fields
	cond    sync.Cond  // on mu: a ticker's owner came back for a tick, or it stopped
	now     time.Time
	tickers []*fakeTicker
}

type fakeTicker struct {
	every time.Duration
	ch    chan time.Time // unbuffered: a send is a hand-over
	stop  chan struct{}
	// Guarded by the manualClock's mu.
	next    time.Time
	waits   int // calls of C: one before each tick taken, one after the last
	taken   int // ticks handed over
	stopped bool
	clock   *manualClock
}

func newManualClock(start time.Time) *manualClock {
	c := &manualClock{now: start}
	c.cond.L = &c.mu
	return c
}

func (c *manualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// NewTicker returns a ticker whose first tick is due d from now.
func (c *manualClock) NewTicker(d time.Duration) Ticker {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTicker{every: d, ch: make(chan time.Time), stop: make(chan struct{}), next: c.now.Add(d), clock: c}
	c.tickers = append(c.tickers, t)
	return t
}

// advance moves the clock forward by d. Each tick that falls due on the
// way is handed to its ticker's owner at the tick's time, in time order,
// and advance waits until the owner has handled it (has come back to C)
// or stopped the ticker.
func (c *manualClock) advance(d time.Duration) {
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
