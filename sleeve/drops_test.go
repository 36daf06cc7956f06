package sleeve

import (
	"log/slog"
	"net/netip"
	"testing"

	"weavemesh.dev/weave/mesh/macs"
	"weavemesh.dev/weave/mesh/routes"
	"weavemesh.dev/weave/sleeve/conn"
)

// kernelConn and kernelDev report the kernel's drop counters.
type kernelConn struct{ rcvbuf uint64 }

func (c *kernelConn) ReadBatch([]conn.Packet) (int, error) { return 0, errClosed }
func (c *kernelConn) WriteBatch([]conn.OutPacket) error    { return nil }
func (c *kernelConn) GSO() bool                            { return true }
func (c *kernelConn) Close() error                         { return nil }
func (c *kernelConn) RcvbufDrops() uint64                  { return c.rcvbuf }

type kernelDev struct{ queue uint64 }

func (d *kernelDev) Read([][]byte, []int, int) (int, error) { return 0, errClosed }
func (d *kernelDev) Write(b [][]byte, _ int) (int, error)   { return len(b), nil }
func (d *kernelDev) Close() error                           { return nil }
func (d *kernelDev) QueueDrops() (uint64, error)            { return d.queue, nil }

// Drops adds the kernel's counts: every socket's receive-buffer drops, and
// the TAP's queue drops once (its queues share the interface).
func TestKernelDrops(t *testing.T) {
	for _, tc := range []struct {
		name          string
		rcvbuf        []uint64
		queue         uint64
		wantR, wantQF uint64
	}{
		{"none", []uint64{0}, 0, 0, 0},
		{"one socket", []uint64{5}, 0, 5, 0},
		{"queues", []uint64{5, 7}, 3, 12, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var qs []Queue
			for _, r := range tc.rcvbuf[1:] {
				qs = append(qs, Queue{Device: &kernelDev{queue: tc.queue}, Conn: &kernelConn{rcvbuf: r}})
			}
			e, err := New(Options{
				Self: 1, Device: &kernelDev{queue: tc.queue}, Conn: &kernelConn{rcvbuf: tc.rcvbuf[0]}, Queues: qs,
				Mesh: tables{macs.New(0, nil), routes.NewTable(1)}, OverlayMTU: 1376,
				PathMTU: func(netip.Addr) int { return 1472 }, Logger: slog.New(slog.DiscardHandler),
			})
			if err != nil {
				t.Fatal(err)
			}
			d := e.Drops()
			if d[DropRcvbuf] != tc.wantR || d[DropQueueFull] != tc.wantQF {
				t.Fatalf("Drops = %v; want %s %d, %s %d", d, DropRcvbuf, tc.wantR, DropQueueFull, tc.wantQF)
			}
			if _, ok := d[DropRcvbuf]; ok != (tc.wantR > 0) {
				t.Fatalf("Drops = %v lists a zero count", d)
			}
		})
	}
}
