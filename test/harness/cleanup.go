package harness

import (
	"errors"
	"fmt"
	"sync"
)

// Cleanup is a stack of undo steps run in reverse order of registration.
// Run empties the stack, so calling it twice is safe.
type Cleanup struct {
	mu    sync.Mutex // guards steps
	steps []cleanupStep
}

type cleanupStep struct {
	what string
	fn   func() error
}

// Add registers fn, described by what for error messages.
func (c *Cleanup) Add(what string, fn func() error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.steps = append(c.steps, cleanupStep{what, fn})
}

// Run runs every registered step, last first, and returns their errors joined.
// A failing step does not stop the ones after it.
func (c *Cleanup) Run() error {
	c.mu.Lock()
	steps := c.steps
	c.steps = nil
	c.mu.Unlock()
	var errs []error
	for i := len(steps) - 1; i >= 0; i-- {
		if err := steps[i].fn(); err != nil {
			errs = append(errs, fmt.Errorf("cleanup %s: %w", steps[i].what, err))
		}
	}
	return errors.Join(errs...)
}

// Len returns the number of pending steps.
func (c *Cleanup) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.steps)
}

// Forget drops every pending step without running it, leaving what they
// would have removed in place.
func (c *Cleanup) Forget() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.steps = nil
}
