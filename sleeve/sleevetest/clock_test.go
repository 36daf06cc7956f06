package sleevetest

import (
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"weavemesh.dev/weave/sleeve/conn"
)

// Advance returns only after the owner has handled every tick that fell
// due, each at its own time.
func TestClockAdvanceWaitsForHandling(t *testing.T) {
	start := time.Unix(1_800_000_000, 0)
	c := NewClock(start)
	tk := c.NewTicker(time.Second)
	var handled atomic.Int64
	var last atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 3 {
			now := <-tk.C()
			time.Sleep(time.Millisecond) // handling takes a while
			last.Store(now.Unix())
			handled.Add(1)
		}
		tk.C() // back for the next tick: the third is handled
		tk.Stop()
	}()
	c.Advance(2500 * time.Millisecond)
	if n := handled.Load(); n != 2 || last.Load() != start.Unix()+2 {
		t.Fatalf("after 2.5s: %d ticks handled, the last at %d", n, last.Load()-start.Unix())
	}
	if got := c.Now(); !got.Equal(start.Add(2500 * time.Millisecond)) {
		t.Fatalf("Now = %v", got.Sub(start))
	}
	c.Advance(time.Second)
	if n := handled.Load(); n != 3 {
		t.Fatalf("after 3.5s: %d ticks handled", n)
	}
	<-done
	// A stopped ticker gets nothing and holds nothing up.
	c.Advance(time.Hour)
}

// Stop releases an Advance that waits on a ticker whose owner went away.
func TestClockStopReleasesAdvance(t *testing.T) {
	c := NewClock(time.Unix(0, 0))
	tk := c.NewTicker(time.Second)
	go func() {
		<-tk.C()
		tk.Stop() // handles the tick by stopping, never comes back
	}()
	c.Advance(5 * time.Second)
}

// WaitIdle reports idle once every datagram was read and its reader came
// back, and busy while one waits in a socket nobody reads.
func TestNetWaitIdle(t *testing.T) {
	n := NewNet()
	a, b := netip.MustParseAddrPort("192.0.2.1:6784"), netip.MustParseAddrPort("192.0.2.2:6784")
	cb := n.Conn(b)
	if !n.WaitIdle(time.Second) {
		t.Fatal("empty network busy")
	}
	n.Deliver(b, conn.Packet{Buf: []byte("x"), Addr: a})
	if n.WaitIdle(10 * time.Millisecond) {
		t.Fatal("idle with a datagram unread")
	}
	go func() {
		pkts := []conn.Packet{{Buf: make([]byte, 64)}}
		for {
			if _, err := cb.ReadBatch(pkts); err != nil {
				return
			}
		}
	}()
	if !n.WaitIdle(5 * time.Second) {
		t.Fatal("busy after the datagram was read")
	}
	cb.Close()
}
