package conn

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(b, "\n")))
	return len(b), nil
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

var loopback = netip.MustParseAddrPort("127.0.0.1:0")

func listen(t testing.TB, o Options) *Conn {
	t.Helper()
	if !o.Addr.IsValid() {
		o.Addr = loopback
	}
	if o.Logger == nil {
		o.Logger = testLogger(t)
	}
	c, err := Listen(o)
	if err != nil {
		t.Fatalf("Listen(%v): %v", o.Addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func pattern(n, seed int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + seed*13 + i>>8)
	}
	return b
}

func newPackets(n, size int) []Packet {
	p := make([]Packet, n)
	for i := range p {
		p[i].Buf = make([]byte, size)
	}
	return p
}

// received is one datagram, or GRO batch, as the receiver saw it.
type received struct {
	data    []byte
	addr    netip.AddrPort
	segSize int
}

// recvBytes reads until want bytes have arrived or the deadline passes.
func recvBytes(t testing.TB, c *Conn, want int) []received {
	t.Helper()
	if err := c.udp.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	defer c.udp.SetReadDeadline(time.Time{})
	pkts := newPackets(16, MinGROBuffer)
	var out []received
	got := 0
	for got < want {
		n, err := c.ReadBatch(pkts)
		if err != nil {
			t.Fatalf("ReadBatch after %d of %d bytes: %v", got, want, err)
		}
		for _, p := range pkts[:n] {
			out = append(out, received{bytes.Clone(p.Buf[:p.N]), p.Addr, p.SegSize})
			got += p.N
		}
	}
	if got != want {
		t.Fatalf("received %d bytes, want %d", got, want)
	}
	return out
}

func TestListenValidation(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    Options
	}{
		{"no addr", Options{}},
		{"ipv6", Options{Addr: netip.MustParseAddrPort("[::1]:0")}},
		{"negative buffer", Options{Addr: loopback, RecvBuffer: -1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if c, err := Listen(tc.o); err == nil {
				c.Close()
				t.Fatal("Listen succeeded")
			} else {
				t.Log(err)
			}
		})
	}
}

func TestBatchRoundTrip(t *testing.T) {
	enterNewNS(t)
	a := listen(t, Options{})
	b := listen(t, Options{})
	t.Logf("GSO=%v GRO=%v", a.GSO(), b.GRO())

	const count = 200
	var want [][]byte
	out := make([]OutPacket, 0, count)
	total := 0
	for i := range count {
		hdr := pattern(8, i)
		payload := pattern(1+(i*37)%1400, i+1)
		out = append(out, OutPacket{Bufs: [][]byte{hdr, payload}, Addr: b.LocalAddr()})
		want = append(want, append(bytes.Clone(hdr), payload...))
		total += len(hdr) + len(payload)
	}
	for i := 0; i < count; i += 50 {
		if err := a.WriteBatch(out[i : i+50]); err != nil {
			t.Fatalf("WriteBatch: %v", err)
		}
		for j, p := range out[i : i+50] {
			if p.Err != nil {
				t.Fatalf("packet %d: %v", i+j, p.Err)
			}
		}
	}
	got := recvBytes(t, b, total)
	if len(got) != count {
		t.Fatalf("received %d datagrams, want %d", len(got), count)
	}
	for i, r := range got {
		if !bytes.Equal(r.data, want[i]) {
			t.Fatalf("datagram %d differs", i)
		}
		if r.addr != a.LocalAddr() {
			t.Fatalf("datagram %d from %v, want %v", i, r.addr, a.LocalAddr())
		}
		if r.segSize != 0 {
			t.Fatalf("datagram %d has SegSize %d", i, r.segSize)
		}
	}
}

// gsoPacket builds a packet of n segments of segSize bytes (the last one
// tail bytes if tail > 0), laid out as a 16-byte header buffer plus a
// payload buffer per segment, the way the engine interleaves them.
func gsoPacket(segSize, n, tail int) (bufs [][]byte, flat []byte) {
	for i := range n {
		size := segSize
		if i == n-1 && tail > 0 {
			size = tail
		}
		hdr := pattern(min(16, size), i)
		payload := pattern(size-len(hdr), i+1000)
		bufs = append(bufs, hdr, payload)
		flat = append(append(flat, hdr...), payload...)
	}
	return bufs, flat
}

func TestGSOToGRO(t *testing.T) {
	enterNewNS(t)
	a := listen(t, Options{})
	b := listen(t, Options{})
	if !a.GSO() || !b.GRO() {
		t.Skipf("kernel lacks UDP offloads: GSO=%v GRO=%v", a.GSO(), b.GRO())
	}
	for _, tc := range []struct {
		name          string
		segSize, n    int
		tail          int
		wantDatagrams []int // segments per received packet
	}{
		{"one segment", 1376, 1, 0, []int{1}},
		{"20 segments short tail", 1376, 20, 100, []int{20}},
		{"64 small segments", 100, 64, 0, []int{64}},
		{"over 64 KiB split", 1376, 100, 0, []int{47, 47, 6}},
		{"over 64 segments split", 100, 200, 7, []int{64, 64, 64, 8}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bufs, flat := gsoPacket(tc.segSize, tc.n, tc.tail)
			out := []OutPacket{{Bufs: bufs, Addr: b.LocalAddr(), SegSize: tc.segSize}}
			if err := a.WriteBatch(out); err != nil || out[0].Err != nil {
				t.Fatalf("WriteBatch: %v / %v", err, out[0].Err)
			}
			got := recvBytes(t, b, len(flat))
			var joined []byte
			var segs []int
			for _, r := range got {
				joined = append(joined, r.data...)
				if r.segSize == 0 {
					segs = append(segs, 1)
					continue
				}
				if r.segSize != tc.segSize {
					t.Errorf("SegSize %d, want %d", r.segSize, tc.segSize)
				}
				segs = append(segs, (len(r.data)+r.segSize-1)/r.segSize)
			}
			if !bytes.Equal(joined, flat) {
				t.Fatal("received bytes differ from sent bytes")
			}
			if len(segs) != len(tc.wantDatagrams) {
				t.Fatalf("received %d packets with %v segments, want %v", len(got), segs, tc.wantDatagrams)
			}
			for i := range segs {
				if segs[i] != tc.wantDatagrams[i] {
					t.Fatalf("segments per packet %v, want %v", segs, tc.wantDatagrams)
				}
			}
			t.Logf("sent %d bytes as %d datagrams; received %d packets, segments %v", len(flat), tc.n, len(got), segs)
		})
	}
}

func TestSoftwareSegmentation(t *testing.T) {
	enterNewNS(t)
	a := listen(t, Options{DisableGSO: true})
	b := listen(t, Options{DisableGRO: true})
	if a.GSO() || b.GRO() {
		t.Fatalf("offloads not disabled: GSO=%v GRO=%v", a.GSO(), b.GRO())
	}
	bufs, flat := gsoPacket(1000, 70, 333)
	// Mix in a small packet with SegSize larger than itself.
	out := []OutPacket{
		{Bufs: bufs, Addr: b.LocalAddr(), SegSize: 1000},
		{Bufs: [][]byte{[]byte("tail")}, Addr: b.LocalAddr(), SegSize: 1000},
	}
	if err := a.WriteBatch(out); err != nil || out[0].Err != nil || out[1].Err != nil {
		t.Fatalf("WriteBatch: %v / %v / %v", err, out[0].Err, out[1].Err)
	}
	got := recvBytes(t, b, len(flat)+4)
	if len(got) != 71 {
		t.Fatalf("received %d datagrams, want 71", len(got))
	}
	for i, r := range got[:70] {
		want := flat[i*1000 : min(len(flat), (i+1)*1000)]
		if !bytes.Equal(r.data, want) || r.segSize != 0 {
			t.Fatalf("datagram %d: %d bytes (SegSize %d), want %d bytes", i, len(r.data), r.segSize, len(want))
		}
	}
	if string(got[70].data) != "tail" {
		t.Fatalf("last datagram %q", got[70].data)
	}
}

func setLoopbackMTU(t *testing.T, mtu int) {
	t.Helper()
	lo, err := netlink.LinkByName("lo")
	if err == nil {
		err = netlink.LinkSetMTU(lo, mtu)
	}
	if err != nil {
		t.Fatalf("set lo MTU: %v", err)
	}
}

func TestEMSGSIZE(t *testing.T) {
	enterNewNS(t)
	setLoopbackMTU(t, 1500)
	a := listen(t, Options{})
	b := listen(t, Options{})
	gsoBufs, _ := gsoPacket(2000, 3, 0)
	out := []OutPacket{
		{Bufs: [][]byte{pattern(1400, 1)}, Addr: b.LocalAddr()},
		{Bufs: [][]byte{pattern(2000, 2)}, Addr: b.LocalAddr()},
		{Bufs: gsoBufs, Addr: b.LocalAddr(), SegSize: 2000},
		{Bufs: [][]byte{pattern(1400, 3)}, Addr: b.LocalAddr()},
		{Bufs: [][]byte{pattern(70000, 4)}, Addr: b.LocalAddr()},
		{Bufs: [][]byte{pattern(8, 5)}, Addr: netip.MustParseAddrPort("[::1]:9")},
	}
	gsoBefore := a.GSO()
	if err := a.WriteBatch(out); err != nil {
		t.Fatalf("WriteBatch: %v", err)
	}
	for i, wantErr := range []bool{false, true, true, false, true, true} {
		if (out[i].Err != nil) != wantErr {
			t.Errorf("packet %d: Err = %v, want error %v", i, out[i].Err, wantErr)
		}
	}
	for _, i := range []int{1, 2, 4} {
		if !errors.Is(out[i].Err, syscall.EMSGSIZE) {
			t.Errorf("packet %d: Err = %v, want EMSGSIZE", i, out[i].Err)
		}
	}
	if a.GSO() != gsoBefore {
		t.Errorf("GSO changed from %v to %v after an oversized segment", gsoBefore, a.GSO())
	}
	got := recvBytes(t, b, 2800)
	if len(got) != 2 || !bytes.Equal(got[0].data, out[0].Bufs[0]) || !bytes.Equal(got[1].data, out[3].Bufs[0]) {
		t.Fatalf("received %d datagrams, want packets 0 and 3", len(got))
	}
}

// TestGSOFallback sends over a veth whose transmit checksumming is off,
// which UDP segmentation offload relies on: the datagrams must arrive
// whether the kernel segments them anyway or refuses and WriteBatch falls
// back to software.
func TestGSOFallback(t *testing.T) {
	ns1 := enterNewNS(t)
	for _, tool := range []string{"ip", "ethtool"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s", tool)
		}
	}
	ns2 := ns1 + "p"
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v: %s", args, err, out)
		}
	}
	run("ip", "netns", "add", ns2)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns2).Run() })
	run("ip", "-n", ns1, "link", "add", "wva", "type", "veth", "peer", "name", "wvb", "netns", ns2)
	run("ip", "-n", ns1, "addr", "add", "10.77.0.1/24", "dev", "wva")
	run("ip", "-n", ns1, "link", "set", "wva", "up")
	run("ip", "-n", ns2, "addr", "add", "10.77.0.2/24", "dev", "wvb")
	run("ip", "-n", ns2, "link", "set", "wvb", "up")
	run("ip", "netns", "exec", ns1, "ethtool", "-K", "wva", "tx", "off")

	a := listen(t, Options{Addr: netip.MustParseAddrPort("10.77.0.1:0")})
	var b *Conn
	h, err := netns.GetFromName(ns2)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	here, _ := netns.Get()
	defer here.Close()
	if err := netns.Set(h); err != nil {
		t.Fatal(err)
	}
	b = listen(t, Options{Addr: netip.MustParseAddrPort("10.77.0.2:0"), DisableGRO: true})
	if err := netns.Set(here); err != nil {
		t.Fatal(err)
	}
	if !a.GSO() {
		t.Skip("kernel lacks UDP_SEGMENT")
	}
	bufs, flat := gsoPacket(1200, 10, 0)
	out := []OutPacket{{Bufs: bufs, Addr: b.LocalAddr(), SegSize: 1200}}
	if err := a.WriteBatch(out); err != nil || out[0].Err != nil {
		t.Fatalf("WriteBatch: %v / %v", err, out[0].Err)
	}
	got := recvBytes(t, b, len(flat))
	if len(got) != 10 {
		t.Fatalf("received %d datagrams, want 10", len(got))
	}
	t.Logf("GSO after a send through a device without checksum offload: %v", a.GSO())
}

func TestCloseUnblocksRead(t *testing.T) {
	enterNewNS(t)
	c := listen(t, Options{})
	errc := make(chan error, 1)
	go func() {
		_, err := c.ReadBatch(newPackets(4, MinGROBuffer))
		errc <- err
	}()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("ReadBatch after Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ReadBatch still blocked after Close")
	}
	if err := c.WriteBatch([]OutPacket{{Bufs: [][]byte{{1}}, Addr: netip.MustParseAddrPort("127.0.0.1:9")}}); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("WriteBatch after Close: %v, want net.ErrClosed", err)
	}
}

func TestShortGROBuffer(t *testing.T) {
	enterNewNS(t)
	c := listen(t, Options{})
	if !c.GRO() {
		t.Skip("kernel lacks UDP_GRO")
	}
	if _, err := c.ReadBatch(newPackets(1, 1500)); err == nil {
		t.Fatal("ReadBatch accepted a 1500-byte buffer with GRO on")
	}
}

func TestRcvbufErrors(t *testing.T) {
	enterNewNS(t)
	before, err := RcvbufErrors()
	if err != nil {
		t.Fatal(err)
	}
	if before != 0 {
		t.Fatalf("fresh namespace reports %d RcvbufErrors", before)
	}
	// A tiny receive buffer that nobody reads overflows at once.
	a := listen(t, Options{})
	b := listen(t, Options{RecvBuffer: 4096, DisableGRO: true})
	out := make([]OutPacket, 64)
	for i := range out {
		out[i] = OutPacket{Bufs: [][]byte{pattern(1000, i)}, Addr: b.LocalAddr()}
	}
	if err := a.WriteBatch(out); err != nil {
		t.Fatal(err)
	}
	after, err := RcvbufErrors()
	if err != nil {
		t.Fatal(err)
	}
	if after == 0 {
		t.Fatal("RcvbufErrors did not rise after overflowing a 4 KiB receive buffer")
	}
	t.Logf("RcvbufErrors %d -> %d", before, after)

	// The socket itself reports its drops with the first datagram
	// queued after them: the kernel stamps each with the count so far.
	recvBytes(t, b, 64000-int(after)*1000) // what fitted, before the drops
	if got := b.RcvbufDrops(); got != 0 {
		t.Fatalf("RcvbufDrops = %d from datagrams queued before any drop", got)
	}
	if err := a.WriteBatch(out[:1]); err != nil {
		t.Fatal(err)
	}
	recvBytes(t, b, 1000)
	if got := b.RcvbufDrops(); got != after {
		t.Fatalf("RcvbufDrops = %d, the namespace counted %d", got, after)
	}
}

func TestAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	enterNewNS(t)
	a := listen(t, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	b := listen(t, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	bufs, _ := gsoPacket(1376, 20, 0)
	out := []OutPacket{
		{Bufs: bufs, Addr: b.LocalAddr(), SegSize: 1376},
		{Bufs: [][]byte{pattern(100, 1)}, Addr: b.LocalAddr()},
	}
	in := newPackets(8, MinGROBuffer)
	want := 20*1376 + 100
	allocs := testing.AllocsPerRun(100, func() {
		if err := a.WriteBatch(out); err != nil || out[0].Err != nil {
			t.Fatal(err, out[0].Err)
		}
		for got := 0; got < want; {
			n, err := b.ReadBatch(in)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range in[:n] {
				got += p.N
			}
		}
	})
	if allocs != 0 {
		t.Fatalf("WriteBatch+ReadBatch allocate %.1f times per round", allocs)
	}
}

// The kernel's receive time comes with each datagram, so that the engine
// can tell how long it waited in the socket's queue.
func TestReceiveStamp(t *testing.T) {
	enterNewNS(t)
	a := listen(t, Options{})
	b := listen(t, Options{})
	before := time.Now().UnixNano()
	if err := a.WriteBatch([]OutPacket{{Bufs: [][]byte{[]byte("stamp")}, Addr: b.LocalAddr()}}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond) // let it wait in the queue
	if err := b.udp.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	pkts := newPackets(4, MinGROBuffer)
	n, err := b.ReadBatch(pkts)
	read := time.Now().UnixNano()
	if err != nil || n != 1 {
		t.Fatalf("ReadBatch = %d, %v", n, err)
	}
	s := pkts[0].Stamp
	if s < before || s > read {
		t.Fatalf("Stamp %d outside [%d, %d]", s, before, read)
	}
	if wait := time.Duration(read - s); wait < 20*time.Millisecond {
		t.Fatalf("datagram waited %v by its stamp, at least 20ms by the clock", wait)
	}
}
