package gossip

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"weavemesh.dev/weave/peer"
)

// blockingSend records sends and blocks each one until released.
type blockingSend struct {
	mu      sync.Mutex
	sent    []string
	entered chan struct{} // one value per send begun
	release chan struct{} // one value lets one send return
	err     error
}

func newBlockingSend() *blockingSend {
	return &blockingSend{entered: make(chan struct{}, 1000), release: make(chan struct{}, 1000)}
}

func (b *blockingSend) send(to peer.Name, msg []byte) error {
	b.entered <- struct{}{}
	<-b.release
	b.mu.Lock()
	b.sent = append(b.sent, fmt.Sprintf("%v:%s", to, msg))
	b.mu.Unlock()
	return b.err
}

func (b *blockingSend) got() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.sent...)
}

func waitEntered(t *testing.T, b *blockingSend) {
	t.Helper()
	select {
	case <-b.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("send not begun")
	}
}

// Not parallel: the goroutine check needs the package quiet.
func TestAsyncSenderQueueFullAndStop(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	b := newBlockingSend()
	s := newAsyncSender(2, b.send, nil)
	if !s.enqueue(1, []byte("a")) {
		t.Fatal("first message refused")
	}
	waitEntered(t, b) // "a" is in flight; the queue is empty
	if !s.enqueue(1, []byte("b")) || !s.enqueue(2, []byte("c")) {
		t.Fatal("message refused with room in the queue")
	}
	if s.enqueue(1, []byte("d")) {
		t.Fatal("message taken by a full queue")
	}
	b.release <- struct{}{} // "a" returns
	waitEntered(t, b)       // "b" in flight, "c" queued
	if !s.enqueue(3, []byte("e")) {
		t.Fatal("message refused after the queue drained")
	}

	stopped := make(chan struct{})
	go func() { s.stop(); close(stopped) }()
	select {
	case <-stopped:
		t.Fatal("stop returned with a send in flight")
	case <-time.After(50 * time.Millisecond):
	}
	b.release <- struct{}{} // "b" returns; "c" and "e" are dropped
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("stop did not return")
	}
	if got := b.got(); fmt.Sprint(got) != fmt.Sprint([]string{"00:00:00:00:00:01:a", "00:00:00:00:00:01:b"}) {
		t.Fatalf("sent %q", got)
	}
	if s.enqueue(1, []byte("f")) {
		t.Fatal("message taken after stop")
	}
	s.stop() // idempotent
}

func TestAsyncSenderOrderAndFailures(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	b := newBlockingSend()
	b.err = errors.New("unreachable")
	var mu sync.Mutex
	failed := 0
	s := newAsyncSender(10, b.send, func(peer.Name, error) { mu.Lock(); failed++; mu.Unlock() })
	for i := range 5 {
		b.release <- struct{}{}
		if !s.enqueue(7, []byte{byte('0' + i)}) {
			t.Fatal("refused")
		}
	}
	for range 5 {
		waitEntered(t, b)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := failed
		mu.Unlock()
		if n == 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d failures reported, want 5", n)
		}
		time.Sleep(time.Millisecond)
	}
	var want []string
	for i := range 5 {
		want = append(want, fmt.Sprintf("00:00:00:00:00:07:%d", i))
	}
	if got := b.got(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("sent %q, want %q", got, want)
	}
	s.stop()
}

func TestAsyncSenderNeverStartedStops(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	s := newAsyncSender(1, func(peer.Name, []byte) error { return nil }, nil)
	s.stop()
	if s.enqueue(1, nil) {
		t.Fatal("message taken after stop")
	}
}

func TestSendAsync(t *testing.T) {
	t.Parallel()
	peers := mesh(t, 2, nil)
	a, b := peers[0], peers[1]
	got := make(chan []byte, 4)
	b.ch.OnMessage(func(from peer.Name, m []byte) {
		if from == a.cfg.Name {
			got <- m
		}
	})
	// From a handler, where Send must not be called, SendAsync answers.
	a.ch.OnMessage(func(from peer.Name, m []byte) {
		if !a.ch.SendAsync(from, append([]byte("re:"), m...)) {
			t.Error("answer dropped")
		}
	})
	if !a.ch.SendAsync(b.cfg.Name, []byte("hello")) {
		t.Fatal("dropped")
	}
	if !b.ch.SendAsync(a.cfg.Name, []byte("ping")) {
		t.Fatal("dropped")
	}
	want := map[string]bool{"hello": true, "re:ping": true}
	for range 2 {
		select {
		case m := <-got:
			if !want[string(m)] {
				t.Fatalf("got %q", m)
			}
			delete(want, string(m))
		case <-time.After(10 * time.Second):
			t.Fatalf("not delivered: %v", want)
		}
	}
	// To a stranger: taken, then counted as failed.
	if !a.ch.SendAsync(0x02ffffffffff, []byte("x")) {
		t.Fatal("dropped")
	}
	waitFor(t, 5*time.Second, "failed send counted", func() bool { return a.Stats().AsyncFailed == 1 })

	if err := a.Shutdown(); err != nil {
		t.Fatal(err)
	}
	if a.ch.SendAsync(b.cfg.Name, bytes.Repeat([]byte("y"), 10)) {
		t.Fatal("taken after Shutdown")
	}
	if s := a.Stats(); s.AsyncDropped != 1 {
		t.Fatalf("stats %+v", s)
	}
}
