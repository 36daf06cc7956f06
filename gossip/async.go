package gossip

import (
	"sync"

	"weavemesh.dev/weave/peer"
)

// asyncQueueLen bounds the messages waiting in one channel's SendAsync
// queue. A replicated state's unicasts (pulls, snapshots, requests) come
// in bursts after a push-pull or a membership change; beyond the bound they
// are dropped and the state's own repair (the next push-pull, a request
// timing out) sends them again.
const asyncQueueLen = 256

// outMsg is one queued unicast.
type outMsg struct {
	to  peer.Name
	msg []byte
}

// asyncSender owns a bounded queue of unicasts and the goroutine that
// hands them, one at a time and in order, to a blocking send function. The
// goroutine starts with the first message and ends at stop, so a channel
// that never sends asynchronously costs nothing.
type asyncSender struct {
	send   func(to peer.Name, msg []byte) error
	failed func(to peer.Name, err error) // told of each failed send
	q      chan outMsg
	done   chan struct{} // closed by stop

	mu      sync.Mutex // guards started, stopped
	started bool
	stopped bool
	wg      sync.WaitGroup // the goroutine
}

func newAsyncSender(n int, send func(peer.Name, []byte) error, failed func(peer.Name, error)) *asyncSender {
	return &asyncSender{send: send, failed: failed, q: make(chan outMsg, n), done: make(chan struct{})}
}

// enqueue queues a message without blocking and reports whether it was
// taken: false when the queue is full or the sender stopped.
func (s *asyncSender) enqueue(to peer.Name, msg []byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return false
	}
	if !s.started {
		s.started = true
		s.wg.Add(1)
		go s.run()
	}
	select {
	case s.q <- outMsg{to, msg}:
		return true
	default:
		return false
	}
}

func (s *asyncSender) run() {
	defer s.wg.Done()
	for {
		// A stop wins over queued messages: they are dropped, not sent
		// after the owner asked for quiet.
		select {
		case <-s.done:
			return
		default:
		}
		select {
		case <-s.done:
			return
		case m := <-s.q:
			if err := s.send(m.to, m.msg); err != nil && s.failed != nil {
				s.failed(m.to, err)
			}
		}
	}
}

// stop ends the goroutine, dropping what is still queued, and waits for a
// send in flight to return. Idempotent; enqueue refuses everything after.
func (s *asyncSender) stop() {
	s.mu.Lock()
	if !s.stopped {
		s.stopped = true
		close(s.done)
	}
	s.mu.Unlock()
	s.wg.Wait()
}
