package router

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"weavemesh.dev/weave/api"
	"weavemesh.dev/weave/mesh/macs"
	"weavemesh.dev/weave/mesh/routes"
	"weavemesh.dev/weave/peer"
	"weavemesh.dev/weave/sleeve"
)

// meshView is the mesh as the sleeve engine sees it (sleeve.Mesh): the
// router's MAC table and routes. Conversions between sleeve.MAC and
// macs.Addr are free: both pack the address into the low 48 bits.
type meshView struct {
	macs   *macs.Table
	routes *routes.Table
}

func (m meshView) Learn(a sleeve.MAC, owner peer.Name, now int64) {
	m.macs.Learn(macs.Addr(a), owner, now)
}

func (m meshView) Lookup(a sleeve.MAC, now int64) (peer.Name, bool) {
	return m.macs.Lookup(macs.Addr(a), now)
}

func (m meshView) Routes() sleeve.Routes { return m.routes.Get() }

// engine is what a supervisor needs of a datapath: *sleeve.Engine, and
// later fastdp's.
type engine interface {
	// Done is closed when a pipeline stopped on an error, or the engine
	// closed; Err says which.
	Done() <-chan struct{}
	Err() error
	// Restart runs the stopped pipelines again; it fails once the engine
	// is closed.
	Restart() error
}

// Restart timings of a failed datapath.
const (
	restartMin = 100 * time.Millisecond // first wait before a restart
	restartMax = 10 * time.Second       // the wait doubles up to this
	// restartSettle is how long a restarted datapath must run before it
	// counts as recovered: a read that fails at once fails again at once.
	restartSettle = 2 * time.Second
)

// supervisor restarts a datapath whose pipeline failed, with backoff. It
// logs a failure once, when it begins, and once more when the datapath
// has recovered, never per retry; it counts failures; and while one lasts,
// the datapath's connections show as failed (markFailed).
type supervisor struct {
	name     string // the datapath, as connections name it
	eng      engine
	log      *slog.Logger
	min, max time.Duration // restart backoff
	settle   time.Duration

	failures atomic.Uint64 // failures begun
	restarts atomic.Uint64 // Restart calls, retries included

	mu     sync.Mutex // guards failed
	failed error      // the failure under way, nil while the datapath runs

	stop chan struct{}
	wg   sync.WaitGroup
}

func newSupervisor(name string, eng engine, log *slog.Logger) *supervisor {
	return &supervisor{
		name: name, eng: eng, log: log.With("component", name),
		min: restartMin, max: restartMax, settle: restartSettle,
		stop: make(chan struct{}),
	}
}

// start runs the supervising goroutine; close stops it.
func (s *supervisor) start() {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.run()
	}()
}

// close stops supervising and waits for the goroutine. Call it before
// closing the engine, so that the engine's close is not taken for a
// failure. Idempotent.
func (s *supervisor) close() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	s.wg.Wait()
}

func (s *supervisor) run() {
	backoff := s.min
	var settled <-chan time.Time // set while a restarted datapath proves itself
	for {
		select {
		case <-s.stop:
			return
		case <-settled:
			settled, backoff = nil, s.min
			// Logged before the failure is cleared: whoever sees it
			// cleared finds the recovery in the log.
			s.log.Info("datapath recovered", "restarts", s.restarts.Load())
			s.setFailed(nil)
			continue
		case <-s.eng.Done():
		}
		settled = nil
		err := s.eng.Err()
		if err == nil {
			continue // restarted in between
		}
		if errors.Is(err, sleeve.ErrClosed) {
			return
		}
		if s.setFailed(err) {
			s.failures.Add(1)
			s.log.Error("datapath failed; its connections are down until it restarts", "err", err, "failures", s.failures.Load())
		}
		select {
		case <-s.stop:
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, s.max)
		if err := s.eng.Restart(); err != nil {
			return // closed
		}
		s.restarts.Add(1)
		settled = time.After(s.settle)
	}
}

// setFailed records the failure under way (nil: none) and reports whether
// a failure began with it.
func (s *supervisor) setFailed(err error) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	began := s.failed == nil && err != nil
	s.failed = err
	return began
}

// failure returns the failure under way, nil while the datapath runs (or
// before it is supervised).
func (s *supervisor) failure() error {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.failed
}

// markFailed shows the connections over the datapath as failed while a
// failure lasts: with a pipeline down, heartbeats may still flow, and the
// links would look up while no frame passes.
func (s *supervisor) markFailed(conns []api.Connection) {
	err := s.failure()
	if err == nil {
		return
	}
	for i := range conns {
		c := &conns[i]
		if c.Datapath != s.name || c.State == ConnFailed {
			continue
		}
		c.State, c.Via = ConnFailed, ""
		c.Reason = fmt.Sprintf("the %s datapath failed (%v); restarting it", s.name, err)
	}
}

// counts returns the failures by datapath, for the status (nil when none).
func (s *supervisor) counts() map[string]uint64 {
	if s == nil {
		return nil
	}
	if n := s.failures.Load(); n > 0 {
		return map[string]uint64{s.name: n}
	}
	return nil
}
