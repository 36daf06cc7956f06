package sleeve

import (
	"errors"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// waitClosed fails the test unless ch closes within 5 s.
func waitClosed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

func isOpen(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return false
	default:
		return true
	}
}

// A read error ends one pipeline, which Done and Err report instead of the
// engine going quiet; Restart runs it again over the same device and
// socket, and what queued up meanwhile goes through.
func TestPipelineFailureAndRestart(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) }) // runs last, after the mesh's cleanup
	m := newTestMesh(t, 2, false)
	m.waitFor("links up", m.allUp)
	a, b := m.nodes[0], m.nodes[1]
	if err := a.e.Err(); err != nil || !isOpen(a.e.Done()) {
		t.Fatalf("running engine: Err %v, Done closed %v", err, !isOpen(a.e.Done()))
	}
	if err := a.e.Restart(); err != nil {
		t.Fatalf("Restart of a healthy engine: %v", err)
	}

	for _, tc := range []struct {
		name, pipeline string
		fail           func(error)
	}{
		{"send", "send pipeline: reading from the TAP", a.dev.FailRead},
		{"receive", "receive pipeline: reading from the underlay socket", a.conn.FailRead},
	} {
		t.Run(tc.name, func(t *testing.T) {
			injected := errors.New("injected " + tc.name + " failure")
			done := a.e.Done()
			tc.fail(injected)
			waitClosed(t, done, "Done after a read error")
			err := a.e.Err()
			if !errors.Is(err, injected) || !strings.Contains(err.Error(), tc.pipeline) {
				t.Fatalf("Err = %v; want the injected error, from the %s", err, tc.pipeline)
			}
			payload := []byte("while-" + tc.name + "-down")
			if tc.name == "send" {
				a.dev.In <- ethFrame(bcast, mac(1), 0x0806, payload)
				noFrame(t, b.dev, "a frame sent by a dead send pipeline", 100*time.Millisecond, hasPayload(payload))
			} else {
				b.dev.In <- ethFrame(bcast, mac(2), 0x0806, payload)
				noFrame(t, a.dev, "a frame received by a dead receive pipeline", 100*time.Millisecond, hasPayload(payload))
			}

			if err := a.e.Restart(); err != nil {
				t.Fatalf("Restart: %v", err)
			}
			if err := a.e.Err(); err != nil || !isOpen(a.e.Done()) {
				t.Fatalf("after Restart: Err %v, Done closed %v", err, !isOpen(a.e.Done()))
			}
			if tc.name == "send" {
				expectFrame(t, b.dev, "the frame queued while the send pipeline was down", hasPayload(payload))
			} else {
				// The receive pipeline takes the datagram that waited in the socket.
				expectFrame(t, a.dev, "the frame queued while the receive pipeline was down", hasPayload(payload))
			}
			m.waitFor("links up after the restart", m.allUp)
		})
	}

	// Both at once: one Restart brings both back.
	done := a.e.Done()
	a.dev.FailRead(errors.New("tap gone"))
	a.conn.FailRead(errors.New("socket gone"))
	waitClosed(t, done, "Done after two read errors")
	// The loops end on their own goroutines, with no clock involved (and
	// with the receive loop gone the mesh cannot step), so poll for it.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		a.e.run.mu.Lock()
		stopped := !a.e.run.running[pipeSend] && !a.e.run.running[pipeReceive]
		a.e.run.mu.Unlock()
		if stopped {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("timed out waiting for both pipelines to stop")
		}
	}
	if err := a.e.Restart(); err != nil {
		t.Fatal(err)
	}
	a.dev.In <- ethFrame(bcast, mac(1), 0x0806, []byte("both-back"))
	expectFrame(t, b.dev, "a frame after both pipelines restarted", hasPayload([]byte("both-back")))
	m.waitFor("links up after both restarted", m.allUp)
}

// Close ends the engine for good: Done is closed, Err is ErrClosed, and
// Restart refuses, also after a pipeline failure.
func TestCloseAfterFailure(t *testing.T) {
	m := newTestMesh(t, 2, false)
	a := m.nodes[0]
	done := a.e.Done()
	a.dev.FailRead(errors.New("injected"))
	waitClosed(t, done, "Done after a read error")
	if err := a.e.Close(); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, a.e.Done(), "Done after Close")
	if err := a.e.Err(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Err after Close = %v, want ErrClosed", err)
	}
	if err := a.e.Restart(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Restart after Close = %v, want ErrClosed", err)
	}

	b := m.nodes[1]
	if err := b.e.Close(); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, b.e.Done(), "Done after Close")
	if err := b.e.Err(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Err after a clean Close = %v, want ErrClosed", err)
	}
}

// With two queues, each runs its own pipelines: frames read from the
// second TAP queue reach the peer, a read error on it stops only that
// pipeline and names it, and Restart brings it back.
func TestQueuePipelines(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	m := newTestMeshQueues(t, false, []byte{0, 0}, true)
	m.waitFor("links up", m.allUp)
	a, b := m.nodes[0], m.nodes[1]
	if got := a.e.Pipelines(); got != 2 {
		t.Fatalf("Pipelines() = %d, want 2", got)
	}
	a.q1dev.In <- ethFrame(bcast, mac(1), 0x0806, []byte("via-queue-1"))
	expectFrame(t, b.dev, "a frame read from the second queue", hasPayload([]byte("via-queue-1")))

	done := a.e.Done()
	a.q1dev.FailRead(errors.New("queue 1 gone"))
	waitClosed(t, done, "Done after a read error on queue 1")
	if err := a.e.Err(); err == nil || !strings.Contains(err.Error(), "queue 1 gone") {
		t.Fatalf("Err = %v, want queue 1's error", err)
	}
	// The first queue carries on.
	a.dev.In <- ethFrame(bcast, mac(1), 0x0806, []byte("via-queue-0"))
	expectFrame(t, b.dev, "a frame read from the first queue", hasPayload([]byte("via-queue-0")))
	if err := a.e.Restart(); err != nil {
		t.Fatal(err)
	}
	a.q1dev.In <- ethFrame(bcast, mac(1), 0x0806, []byte("queue-1-back"))
	expectFrame(t, b.dev, "a frame from the restarted second queue", hasPayload([]byte("queue-1-back")))
}
