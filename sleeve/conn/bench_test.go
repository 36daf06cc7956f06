package conn

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// benchLoopback measures goodput from one Conn to another on loopback with
// 1376-byte datagrams (the default overlay MTU) sent 44 to a packet, as the
// engine sends a TCP super-frame. The sender keeps at most inflight bytes
// unread so the receive buffer never overflows.
func benchLoopback(b *testing.B, o Options) {
	enterNewNS(b)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	o.Logger = quiet
	a := listen(b, o)
	r := listen(b, o)
	const segSize, segs, batch, inflight = 1376, 44, 8, 4 << 20
	payload := pattern(segSize*segs, 1)
	out := make([]OutPacket, batch)
	for i := range out {
		out[i] = OutPacket{Bufs: [][]byte{payload}, Addr: r.LocalAddr(), SegSize: segSize}
	}
	perBatch := int64(batch * len(payload))

	var received, packets atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		in := newPackets(64, MinGROBuffer)
		for {
			n, err := r.ReadBatch(in)
			if err != nil {
				if !errors.Is(err, net.ErrClosed) {
					b.Error(err)
				}
				return
			}
			packets.Add(int64(n))
			for _, p := range in[:n] {
				received.Add(int64(p.N))
			}
		}
	}()

	b.SetBytes(perBatch)
	b.ResetTimer()
	start := time.Now()
	var sent int64
	for range b.N {
		for sent-received.Load() > inflight {
			runtime.Gosched()
		}
		if err := a.WriteBatch(out); err != nil {
			b.Fatal(err)
		}
		for i := range out {
			if out[i].Err != nil {
				b.Fatal(out[i].Err)
			}
		}
		sent += perBatch
	}
	deadline := time.Now().Add(2 * time.Second)
	for received.Load() < sent && time.Now().Before(deadline) {
		runtime.Gosched()
	}
	elapsed := time.Since(start)
	b.StopTimer()
	r.Close()
	wg.Wait()
	got := received.Load()
	b.ReportMetric(float64(got)*8/elapsed.Seconds()/1e9, "Gbit/s")
	b.ReportMetric(100*float64(sent-got)/float64(sent), "%lost")
	if n := packets.Load(); n > 0 {
		b.ReportMetric(float64(got)/float64(n), "B/read")
	}
}

func BenchmarkGSOToGRO(b *testing.B)  { benchLoopback(b, Options{}) }
func BenchmarkNoOffload(b *testing.B) { benchLoopback(b, Options{DisableGSO: true, DisableGRO: true}) }
