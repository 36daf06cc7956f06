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
	"weavemesh.dev/weave/sleeve/secure"
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
	return allocEngineSec(t, self, c, d, nil)
}

// allocEngineSec is allocEngine sealing with sec when it is not nil.
func allocEngineSec(t *testing.T, self peer.Name, c PacketConn, d Device, sec *secure.Manager) *Engine {
	t.Helper()
	rt := routes.NewTable(self)
	rt.Set(routes.Compute(routes.Graph{Self: self, Peers: []peer.Name{1, 2}}))
	e, err := New(Options{
		Self: self, Device: d, Conn: c, Mesh: tables{macs.New(0, nil), rt}, OverlayMTU: 1376,
		PathMTU: func(netip.Addr) int { return 1472 }, Logger: slog.New(slog.DiscardHandler), Secure: sec,
	})
	if err != nil {
		t.Fatal(err)
	}
	e.SetPeers([]PeerInfo{{Name: 1, Addr: netip.MustParseAddrPort("192.0.2.1:6784")}, {Name: 2, Addr: netip.MustParseAddrPort("192.0.2.2:6784")}})
	return e
}

// TestAllocsEncrypted: with a session of either cipher, sealing a batch of
// cut super-frames and opening the datagrams allocate nothing per batch
// once the pipelines are warm (the seal arena is allocated on first use).
func TestAllocsEncrypted(t *testing.T) {
	for _, c := range []secure.Cipher{secure.AESGCM, secure.ChaCha20Poly1305} {
		t.Run(c.String(), func(t *testing.T) {
			now := time.Unix(1_800_000_000, 0)
			clk := func() time.Time { return now }
			ma, err := secure.NewManager(secure.Config{Self: 1, PSK: [32]byte{3}, Now: clk, Cipher: c})
			if err != nil {
				t.Fatal(err)
			}
			mb, err := secure.NewManager(secure.Config{Self: 2, PSK: [32]byte{3}, Now: clk})
			if err != nil {
				t.Fatal(err)
			}
			init, err := ma.Initiate(make([]byte, secure.InitLen), 2, false)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := mb.HandleInit(make([]byte, secure.RespLen), init, 1, false)
			if err != nil {
				t.Fatal(err)
			}
			if err := ma.HandleResp(resp, 2); err != nil {
				t.Fatal(err)
			}
			sc := newCopyConn(256)
			a := allocEngineSec(t, 1, sc, &countDev{}, ma)
			dev := &countDev{}
			b := allocEngineSec(t, 2, &recordConn{}, dev, mb)
			a.o.Mesh.Learn(MACFrom(mac(2)), 2, now.Unix())

			in := &inside{e: a, dev: a.qs[0].Device, b: newBatch(a, sc)}
			frames := make([][]byte, 4)
			for i := range frames {
				frames[i] = tcpSuperFrame(mac(2), mac(1), bytes.Repeat([]byte("0123456789abcdef"), 4000), 1324)
			}
			out := &outside{e: b, q: b.qs[0], b: newBatch(b, b.qs[0].Conn), gro: offload.NewCoalescer(), reply: make([]byte, 0, 1024)}
			pkts := make([]conn.Packet, len(sc.bufs))
			r := a.o.Mesh.Routes()
			// One round: a seals a batch of cut super-frames, b opens
			// every datagram and writes the merged frames to its TAP.
			round := func() {
				sc.n = 0
				for _, f := range frames {
					in.frame(f, now.Unix(), r)
				}
				in.b.flush()
				for i := range sc.n {
					pkts[i] = conn.Packet{Buf: sc.bufs[i], N: sc.sizes[i], Addr: b.peer(1).addr}
					out.packet(&pkts[i])
				}
				out.flushTAP()
				out.b.flush()
			}
			round()
			if sc.n != 4*49 || dev.frames == 0 || b.Stats().Drops["auth_failed"] != 0 {
				t.Fatalf("%d datagrams sealed, %d frames written, drops %v", sc.n, dev.frames, b.Stats().Drops)
			}
			if a := testing.AllocsPerRun(20, round); a != 0 {
				t.Fatalf("sealing and opening allocate %.1f times per batch", a)
			}
			if want := 21 * len(frames); dev.frames < want {
				t.Fatalf("%d frames reached the TAP after %d rounds; want at least %d", dev.frames, 21, want)
			}
		})
	}
}

// copyConn copies each datagram sent into buffers of its own, allocated
// up front, so that a test can receive them without allocating.
type copyConn struct {
	bufs  [][]byte
	sizes []int
	n     int
}

func newCopyConn(n int) *copyConn {
	c := &copyConn{bufs: make([][]byte, n), sizes: make([]int, n)}
	for i := range c.bufs {
		c.bufs[i] = make([]byte, 2048)
	}
	return c
}

func (c *copyConn) ReadBatch([]conn.Packet) (int, error) { return 0, errClosed }
func (c *copyConn) GSO() bool                            { return true }
func (c *copyConn) Close() error                         { return nil }
func (c *copyConn) WriteBatch(pkts []conn.OutPacket) error {
	for _, p := range pkts {
		seg, k := p.SegSize, 0
		for _, b := range p.Bufs {
			for len(b) > 0 && c.n < len(c.bufs) {
				if seg == 0 {
					seg = 1 << 30
				}
				m := copy(c.bufs[c.n][k:min(seg, len(c.bufs[c.n]))], b)
				b, k = b[m:], k+m
				if k == seg || k == len(c.bufs[c.n]) {
					c.sizes[c.n], c.n, k = k, c.n+1, 0
				}
			}
		}
		if k > 0 && c.n < len(c.bufs) {
			c.sizes[c.n], c.n = k, c.n+1
		}
	}
	return nil
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

	// Queue management: every datagram waited a second in the socket,
	// and the reads come a millisecond apart and fill pkts, so the
	// controller signals, dropping segments, without allocating.
	out.pkts = pkts
	out.aqm = newCodel(aqmTarget, aqmInterval)
	managed := func() {
		out.now += int64(time.Millisecond)
		for i := range pkts {
			pkts[i].Stamp = out.now - int64(time.Second)
		}
		out.handle(len(pkts))
	}
	out.now = time.Now().UnixNano()
	if a := testing.AllocsPerRun(50, managed); a != 0 {
		t.Fatalf("receiving under queue management allocates %.1f times per batch", a)
	}
	if b.Stats().Drops["aqm"] == 0 {
		t.Fatal("no segment dropped by queue management")
	}
}
