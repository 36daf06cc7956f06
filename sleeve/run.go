package sleeve

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
)

// ErrClosed is what Err reports once the engine is closed.
var ErrClosed = fmt.Errorf("sleeve: engine closed: %w", net.ErrClosed)

// The pipelines: each is one goroutine running a read loop, and each can
// stop on a read error while the rest of the engine runs on. Each queue
// (Options.Queues) has one of each kind; pipeline p belongs to queue
// p/pipesPerQueue.
type pipeline int

const (
	pipeSend      pipeline = iota // inside.go: TAP to UDP
	pipeReceive                   // outside.go: UDP to TAP
	pipesPerQueue                 // pipelines per queue
)

// runState is the pipelines' life; mu guards the fields that follow it.
type runState struct {
	mu      sync.Mutex
	started bool
	closed  bool
	running []bool        // by pipeline
	err     error         // why a pipeline stopped, since the last Restart
	done    chan struct{} // closed when err is set, or by Close
}

// Start runs the send, receive and health goroutines.
func (e *Engine) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	t := e.o.Clock.NewTicker(e.o.HeartbeatInterval / ticksPerBeat)
	e.wg.Add(1)
	go func() { defer e.wg.Done(); e.healthLoop(ctx, t) }()
	e.run.mu.Lock()
	defer e.run.mu.Unlock()
	e.run.started = true
	for p := range e.run.running {
		e.startLocked(pipeline(p))
	}
}

func (e *Engine) startLocked(p pipeline) {
	q := e.qs[int(p)/int(pipesPerQueue)]
	loop := e.insideLoop
	if p%pipesPerQueue == pipeReceive {
		loop = e.outsideLoop
	}
	e.run.running[p] = true
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		e.stopped(p, loop(q))
	}()
}

// stopped records that pipeline p's loop returned err. Any end but Close's
// is a failure, a device or socket closed under the engine's feet included:
// the datapath must not die silently.
func (e *Engine) stopped(p pipeline, err error) {
	r := &e.run
	r.mu.Lock()
	defer r.mu.Unlock()
	r.running[p] = false
	if r.closed {
		return
	}
	if r.err == nil {
		r.err = err
		close(r.done)
	}
}

// Done returns a channel that is closed when a pipeline stops on an error,
// or when the engine is closed; Err then says why. After Restart, Done
// returns a new channel for the new run.
func (e *Engine) Done() <-chan struct{} {
	e.run.mu.Lock()
	defer e.run.mu.Unlock()
	return e.run.done
}

// Err returns nil while every pipeline runs; after a pipeline stopped, the
// error that stopped it (the send pipeline's read from the TAP, or the
// receive pipeline's from the socket), until Restart; after Close,
// ErrClosed.
func (e *Engine) Err() error {
	e.run.mu.Lock()
	defer e.run.mu.Unlock()
	return e.run.err
}

// Restart starts again, over the same device and socket and with fresh
// scratch buffers, every pipeline that stopped, and clears Err. It does
// nothing while every pipeline runs, and returns ErrClosed after Close.
// Link state, sessions and counters carry on.
func (e *Engine) Restart() error {
	r := &e.run
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ErrClosed
	}
	if !r.started || r.err == nil {
		return nil
	}
	r.err = nil
	r.done = make(chan struct{})
	for p := range r.running {
		if !r.running[p] {
			e.startLocked(pipeline(p))
		}
	}
	return nil
}

// Close stops the engine: it closes the device and the socket, which ends
// the pipelines, and waits for every goroutine. Idempotent.
func (e *Engine) Close() error {
	var err error
	e.close.Do(func() {
		if e.cancel != nil {
			e.cancel()
		}
		r := &e.run
		r.mu.Lock()
		r.closed = true
		if r.err == nil {
			close(r.done)
		}
		r.err = ErrClosed
		r.mu.Unlock()
		var errs []error
		for _, q := range e.qs {
			errs = append(errs, q.Conn.Close(), q.Device.Close())
		}
		err = errors.Join(errs...)
		e.wg.Wait()
	})
	return err
}
