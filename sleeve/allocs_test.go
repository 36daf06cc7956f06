//go:build !race

// The race detector allocates, so this builds only without it; CI runs it
// in a separate step (scripts/test.sh).

package sleeve

import (
	"bytes"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"weavemesh.dev/weave/mesh/macs"
	"weavemesh.dev/weave/mesh/routes"
	"weavemesh.dev/weave/peer"
	"weavemesh.dev/weave/sleeve/conn"
	"weavemesh.dev/weave/sleeve/offload"
)

// recordConn keeps the datagrams of the last WriteBatch (when asked to)
// and otherwise does nothing, without allocating.
type recordConn struct {
	record bool
	dgrams [][]byte
}

func (c *recordConn) ReadBatch([]conn.Packet) (int, error) { return 0, errClosed }
func (c *recordConn) GSO() bool                            { return true }
func (c *recordConn) Close() error                         { return nil }
func (c *recordConn) WriteBatch(pkts []conn.OutPacket) error {
	if !c.record {
		return nil
	}
	for _, p := range pkts {
		var all []byte
		for _, b := range p.Bufs {
			all = append(all, b...)
		}
		seg := p.SegSize
		if seg == 0 {
			seg = len(all)
		}
		for len(all) > 0 {
			n := min(seg, len(all))
			c.dgrams = append(c.dgrams, all[:n])
			all = all[n:]
		}
	}
	return nil
}

// countDev counts what is written to it.
type countDev struct{ frames, bytes int }

func (d *countDev) Read([][]byte, []int, int) (int, error) { return 0, errClosed }
func (d *countDev) Close() error                           { return nil }
func (d *countDev) Write(bufs [][]byte, offset int) (int, error) {
	for _, b := range bufs {
		d.frames++
		d.bytes += len(b) - offset
	}
	return len(bufs), nil
}

// allocEngine is an engine that is never started: the test drives its
// pipelines' per-batch code directly, on this goroutine.
func allocEngine(t *testing.T, self peer.Name, c PacketConn, d Device) *Engine {
	t.Helper()
	rt := routes.NewTable(self)
	rt.Set(routes.Compute(routes.Graph{Self: self, Peers: []peer.Name{1, 2}}))
	e, err := New(Options{
		Self: self, Device: d, Conn: c, Mesh: tables{macs.New(0, nil), rt}, OverlayMTU: 1376,
		PathMTU: func(netip.Addr) int { return 1472 }, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	e.SetPeers([]PeerInfo{{Name: 1, Addr: netip.MustParseAddrPort("192.0.2.1:6784")}, {Name: 2, Addr: netip.MustParseAddrPort("192.0.2.2:6784")}})
	return e
}

// TestAllocs: sending a batch of super-frames (cut into segments, one GSO
// train each) and receiving the datagrams (GRO merging them back) allocate
// nothing per batch once the pipelines are warm.
func TestAllocs(t *testing.T) {
	sc := &recordConn{}
	a := allocEngine(t, 1, sc, &countDev{})
	dev := &countDev{}
	b := allocEngine(t, 2, &recordConn{}, dev)
	now := time.Now().Unix()
	a.o.Mesh.Learn(MACFrom(mac(2)), 2, now)

	in := &inside{e: a, dev: a.qs[0].Device, b: newBatch(a, sc)}
	payload := bytes.Repeat([]byte("0123456789abcdef"), 4000)
	frames := make([][]byte, 8)
	for i := range frames {
		frames[i] = tcpSuperFrame(mac(2), mac(1), payload, 1324)
	}
	r := a.o.Mesh.Routes()
	send := func() {
		for _, f := range frames {
			in.frame(f, now, r)
		}
		in.b.flush()
	}
	sc.record = true
	send()
	sc.record = false
	if len(sc.dgrams) != 8*49 {
		t.Fatalf("%d datagrams sent, want %d", len(sc.dgrams), 8*49)
	}
	if a := testing.AllocsPerRun(50, send); a != 0 {
		t.Fatalf("sending allocates %.1f times per batch", a)
	}

	// The receiver gets the datagrams as GRO trains of up to 46.
	out := &outside{e: b, q: b.qs[0], b: newBatch(b, b.qs[0].Conn), gro: offload.NewCoalescer(), reply: make([]byte, 0, 1024)}
	var pkts []conn.Packet
	for i := 0; i < len(sc.dgrams); {
		n := min(46, 49-i%49)
		var buf []byte
		for _, d := range sc.dgrams[i : i+n] {
			buf = append(buf, d...)
		}
		pkts = append(pkts, conn.Packet{Buf: buf, N: len(buf), Addr: b.peer(1).addr, SegSize: len(sc.dgrams[i])})
		i += n
	}
	recv := func() {
		for i := range pkts {
			out.packet(&pkts[i])
		}
		out.flushTAP()
		out.b.flush()
	}
	recv()
	if dev.frames != 8 || dev.bytes != 8*len(frames[0]) {
		t.Fatalf("%d frames, %d bytes written to the TAP; want 8 super-frames of %d", dev.frames, dev.bytes, len(frames[0]))
	}
	if a := testing.AllocsPerRun(50, recv); a != 0 {
		t.Fatalf("receiving allocates %.1f times per batch", a)
	}
}
