package harness

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Poll intervals: the first retry comes quickly, later ones back off.
const (
	pollFirst = 50 * time.Millisecond
	pollMax   = 500 * time.Millisecond
)

type permanentError struct{ err error }

func (p permanentError) Error() string { return p.err.Error() }
func (p permanentError) Unwrap() error { return p.err }

// Permanent marks an error that Poll must not retry.
func Permanent(err error) error { return permanentError{err} }

// Poll calls f until it returns nil, returns an error marked Permanent, or
// ctx ends; then the error names what was awaited and f's last error.
// This is how everything waits: no fixed sleeps.
func Poll(ctx context.Context, what string, f func(ctx context.Context) error) error {
	interval := pollFirst
	start := time.Now()
	var last error
	for {
		err := f(ctx)
		if err == nil {
			return nil
		}
		var p permanentError
		if errors.As(err, &p) {
			return fmt.Errorf("waiting for %s: %w", what, p.err)
		}
		last = err
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("timed out after %s waiting for %s: %w (last error: %w)",
				time.Since(start).Round(time.Millisecond), what, ctx.Err(), last)
		case <-t.C:
		}
		interval = min(2*interval, pollMax)
	}
}

// PollFor is Poll with a timeout of its own.
func PollFor(timeout time.Duration, what string, f func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return Poll(ctx, what, f)
}
