package tap

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const testMTU = 1376

type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(b, "\n")))
	return len(b), nil
}

func open(t testing.TB, name string, offload bool) *Device {
	t.Helper()
	d, err := Open(Options{Name: name, MTU: testMTU, Offload: offload,
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil))})
	if err != nil {
		t.Fatalf("Open(%s, offload=%v): %v", name, offload, err)
	}
	t.Cleanup(func() { d.Close() })
	if d.Offload() != offload {
		t.Fatalf("Offload() = %v, asked for %v", d.Offload(), offload)
	}
	return d
}

func modeName(offload bool) string {
	if offload {
		return "offload"
	}
	return "plain"
}

func mustLink(t testing.TB, name string) netlink.Link {
	t.Helper()
	l, err := netlink.LinkByName(name)
	if err != nil {
		t.Fatalf("link %s: %v", name, err)
	}
	return l
}

// attachPeer builds, in the test namespace, bridge br holding port (a
// TAP) and a veth whose other end is eth0 in a new namespace with addr.
func attachPeer(t testing.TB, home netns.NsHandle, nsName, br, port, veth, addr string) netns.NsHandle {
	t.Helper()
	peer := newPeerNS(t, nsName, home)
	bridge := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: br, MTU: testMTU}}
	if err := netlink.LinkAdd(bridge); err != nil {
		t.Fatalf("add bridge %s: %v", br, err)
	}
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: veth, MTU: testMTU}, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(peer))}
	if err := netlink.LinkAdd(v); err != nil {
		t.Fatalf("add veth %s: %v", veth, err)
	}
	brLink := mustLink(t, br)
	for _, name := range []string{veth, port} {
		l := mustLink(t, name)
		if err := netlink.LinkSetMaster(l, brLink); err != nil {
			t.Fatalf("attach %s to %s: %v", name, br, err)
		}
		if err := netlink.LinkSetUp(l); err != nil {
			t.Fatalf("up %s: %v", name, err)
		}
	}
	if err := netlink.LinkSetUp(brLink); err != nil {
		t.Fatalf("up %s: %v", br, err)
	}
	inNS(t, peer, home, func() {
		eth := mustLink(t, "eth0")
		a, err := netlink.ParseAddr(addr)
		if err == nil {
			err = netlink.LinkSetMTU(eth, testMTU)
		}
		if err == nil {
			err = netlink.AddrAdd(eth, a)
		}
		if err == nil {
			err = netlink.LinkSetUp(eth)
		}
		if err != nil {
			t.Fatalf("configure eth0 in %s: %v", nsName, err)
		}
	})
	return peer
}

// frame is a copy of one frame read from a TAP.
type frame struct {
	hdr VnetHdr
	eth []byte
}

// startReader copies every frame read from d to the returned channel until
// d is closed; cleanup closes d and waits for the reader.
func startReader(t testing.TB, d *Device) <-chan frame {
	t.Helper()
	ch := make(chan frame, 1024)
	done := make(chan struct{})
	go func() {
		defer close(done)
		bufs := make([][]byte, 8)
		for i := range bufs {
			bufs[i] = make([]byte, MaxFrameSize)
		}
		sizes := make([]int, len(bufs))
		for {
			n, err := d.Read(bufs, sizes, 0)
			if err != nil {
				if !errors.Is(err, os.ErrClosed) {
					t.Errorf("Read: %v", err)
				}
				return
			}
			for i := range n {
				var f frame
				f.hdr.Decode(bufs[i])
				f.eth = bytes.Clone(bufs[i][VnetHdrLen:sizes[i]])
				select {
				case ch <- f:
				default: // the test stopped listening
				}
			}
		}
	}()
	t.Cleanup(func() {
		d.Close()
		<-done
	})
	return ch
}

// waitFrame returns the first frame match accepts, failing after 5s.
func waitFrame(t testing.TB, ch <-chan frame, what string, match func(gopacket.Packet) bool) frame {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case f := <-ch:
			if match(gopacket.NewPacket(f.eth, layers.LayerTypeEthernet, gopacket.Default)) {
				return f
			}
		case <-timeout:
			t.Fatalf("no %s read from the TAP within 5s", what)
		}
	}
}

func serialize(t testing.TB, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return append(make([]byte, VnetHdrLen), buf.Bytes()...)
}

func TestOpenValidation(t *testing.T) {
	for _, o := range []Options{
		{},
		{Name: "sixteen-chars-xx"},
		{Name: "wvt", MTU: 10},
		{Name: "wvt", MTU: 70000},
	} {
		if d, err := Open(o); err == nil {
			d.Close()
			t.Errorf("Open(%+v) succeeded", o)
		} else {
			t.Log(err)
		}
	}
}

// TestFrames proves both directions with real traffic from a namespace:
// the ARP request and UDP datagram it sends are read from the TAP, and an
// ARP reply and a UDP datagram (with its checksum left to the device)
// written to the TAP reach its socket.
func TestFrames(t *testing.T) {
	for _, offload := range []bool{true, false} {
		t.Run(modeName(offload), func(t *testing.T) {
			name, home := enterNewNS(t)
			d := open(t, "wvt1", offload)
			if d.Index() <= 0 || d.Name() != "wvt1" {
				t.Fatalf("Index %d Name %q", d.Index(), d.Name())
			}
			peer := attachPeer(t, home, name+"b", "wvbr1", "wvt1", "wvv1", "10.99.0.1/24")
			frames := startReader(t, d)

			var sock *net.UDPConn
			inNS(t, peer, home, func() {
				var err error
				sock, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(10, 99, 0, 1)})
				if err != nil {
					t.Fatal(err)
				}
			})
			defer sock.Close()
			local := sock.LocalAddr().(*net.UDPAddr)
			far := &net.UDPAddr{IP: net.IPv4(10, 99, 0, 99).To4(), Port: 7777}
			if _, err := sock.WriteToUDP([]byte("hello"), far); err != nil {
				t.Fatal(err)
			}

			arp := waitFrame(t, frames, "ARP request for 10.99.0.99", func(p gopacket.Packet) bool {
				a, ok := p.Layer(layers.LayerTypeARP).(*layers.ARP)
				return ok && a.Operation == layers.ARPRequest && net.IP(a.DstProtAddress).Equal(far.IP)
			})
			req := gopacket.NewPacket(arp.eth, layers.LayerTypeEthernet, gopacket.Default).Layer(layers.LayerTypeARP).(*layers.ARP)
			peerMAC := net.HardwareAddr(req.SourceHwAddress)
			farMAC := net.HardwareAddr{0x02, 0, 0, 0, 0, 0x99}
			reply := serialize(t,
				&layers.Ethernet{SrcMAC: farMAC, DstMAC: peerMAC, EthernetType: layers.EthernetTypeARP},
				&layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
					Operation: layers.ARPReply, SourceHwAddress: farMAC, SourceProtAddress: far.IP,
					DstHwAddress: peerMAC, DstProtAddress: local.IP.To4()})
			if n, err := d.Write([][]byte{reply}, 0); n != 1 || err != nil {
				t.Fatalf("Write ARP reply: %d, %v", n, err)
			}

			udp := waitFrame(t, frames, "UDP datagram to 10.99.0.99:7777", func(p gopacket.Packet) bool {
				u, ok := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
				return ok && u.DstPort == 7777
			})
			t.Logf("datagram from the namespace arrived with %v", udp.hdr)
			if !offload && udp.hdr != (VnetHdr{}) {
				t.Fatalf("plain mode returned a non-zero header %v", udp.hdr)
			}
			if udp.hdr.Flags&FlagNeedsCsum != 0 {
				if err := completeChecksum(udp.eth, &udp.hdr); err != nil {
					t.Fatal(err)
				}
			}
			if p := checkWithGopacket(t, udp.eth); string(p.ApplicationLayer().Payload()) != "hello" {
				t.Fatalf("payload %q", p.ApplicationLayer().Payload())
			}

			// Answer with the checksum left to the device: the kernel
			// finishes it in offload mode, Write does in plain mode (and
			// the namespace's stack verifies it there).
			ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: far.IP, DstIP: local.IP.To4()}
			u := &layers.UDP{SrcPort: 7777, DstPort: layers.UDPPort(local.Port)}
			u.SetNetworkLayerForChecksum(ip)
			out := serialize(t, &layers.Ethernet{SrcMAC: farMAC, DstMAC: peerMAC, EthernetType: layers.EthernetTypeIPv4}, ip, u, gopacket.Payload("world"))
			l4 := VnetHdrLen + ethHdrLen + ipv4MinLen
			// (gopacket pads the frame to 60 bytes: use the UDP length.)
			ps := csumAdd(0, out[VnetHdrLen+ethHdrLen+12:l4]) + protoUDP + uint64(udpHdrLen+len("world"))
			binary.BigEndian.PutUint16(out[l4+6:], csumFold(ps))
			h := VnetHdr{Flags: FlagNeedsCsum, CsumStart: ethHdrLen + ipv4MinLen, CsumOffset: 6}
			h.Encode(out)
			if n, err := d.Write([][]byte{out}, 0); n != 1 || err != nil {
				t.Fatalf("Write UDP: %d, %v", n, err)
			}
			sock.SetReadDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 100)
			n, from, err := sock.ReadFromUDP(buf)
			if err != nil {
				t.Fatalf("namespace did not receive the datagram written to the TAP: %v", err)
			}
			if string(buf[:n]) != "world" || from.Port != 7777 || !from.IP.Equal(far.IP) {
				t.Fatalf("received %q from %v", buf[:n], from)
			}
		})
	}
}

// forward copies frames from src to dst until src is closed, counting
// what it sees.
type forwardStats struct {
	frames, gso, csum atomic.Int64
	maxLen            atomic.Int64
	firstGSO          atomic.Pointer[VnetHdr]
}

func forward(t testing.TB, src, dst *Device, st *forwardStats, wg *sync.WaitGroup) {
	defer wg.Done()
	bufs := make([][]byte, 64)
	for i := range bufs {
		bufs[i] = make([]byte, MaxFrameSize)
	}
	sizes := make([]int, len(bufs))
	for {
		n, err := src.Read(bufs, sizes, 0)
		if err != nil {
			if !errors.Is(err, os.ErrClosed) {
				t.Errorf("Read %s: %v", src.Name(), err)
			}
			return
		}
		for i := range n {
			bufs[i] = bufs[i][:sizes[i]]
			var h VnetHdr
			h.Decode(bufs[i])
			st.frames.Add(1)
			if h.GSOType&^GSOECN == GSOTCPv4 {
				if st.gso.Add(1) == 1 {
					st.firstGSO.Store(&h)
				}
			}
			if h.Flags&FlagNeedsCsum != 0 {
				st.csum.Add(1)
			}
			if l := int64(sizes[i]); l > st.maxLen.Load() {
				st.maxLen.Store(l)
			}
		}
		if _, err := dst.Write(bufs[:n], 0); err != nil && !errors.Is(err, os.ErrClosed) {
			t.Errorf("Write %s: %v", dst.Name(), err)
		}
		for i := range n {
			bufs[i] = bufs[i][:cap(bufs[i])]
		}
	}
}

// TestTCPThroughTAPs runs a TCP transfer between two namespaces whose only
// link is a user-space forwarder between two TAPs, in every combination of
// modes: offload TAPs must yield GSO super-frames, and super-frames
// written to a plain TAP must be segmented correctly in software.
func TestTCPThroughTAPs(t *testing.T) {
	size := 32 << 20
	if raceEnabled || testing.Short() {
		size = 8 << 20
	}
	for _, tc := range []struct{ off1, off2 bool }{{true, true}, {true, false}, {false, true}, {false, false}} {
		t.Run(modeName(tc.off1)+"-"+modeName(tc.off2), func(t *testing.T) {
			name, home := enterNewNS(t)
			d1 := open(t, "wvt1", tc.off1)
			d2 := open(t, "wvt2", tc.off2)
			nsB := attachPeer(t, home, name+"b", "wvbr1", "wvt1", "wvv1", "10.99.0.1/24")
			nsC := attachPeer(t, home, name+"c", "wvbr2", "wvt2", "wvv2", "10.99.0.2/24")

			var st1, st2 forwardStats
			var wg sync.WaitGroup
			wg.Add(2)
			go forward(t, d1, d2, &st1, &wg)
			go forward(t, d2, d1, &st2, &wg)
			t.Cleanup(func() {
				d1.Close()
				d2.Close()
				wg.Wait()
			})

			var ln net.Listener
			inNS(t, nsC, home, func() {
				var err error
				if ln, err = net.Listen("tcp4", "10.99.0.2:0"); err != nil {
					t.Fatal(err)
				}
			})
			defer ln.Close()
			type result struct {
				sum [32]byte
				n   int64
				err error
			}
			resc := make(chan result, 1)
			go func() {
				c, err := ln.Accept()
				if err != nil {
					resc <- result{err: err}
					return
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(60 * time.Second))
				h := sha256.New()
				n, err := io.Copy(h, c)
				var r result
				copy(r.sum[:], h.Sum(nil))
				r.n, r.err = n, err
				resc <- r
			}()

			var conn net.Conn
			inNS(t, nsB, home, func() {
				var err error
				if conn, err = net.DialTimeout("tcp4", ln.Addr().String(), 10*time.Second); err != nil {
					t.Fatalf("dial through the TAPs: %v", err)
				}
			})
			data := make([]byte, size)
			for i := range data {
				data[i] = byte(i*131 + i>>12)
			}
			start := time.Now()
			conn.SetDeadline(time.Now().Add(60 * time.Second))
			if _, err := conn.Write(data); err != nil {
				t.Fatalf("write: %v", err)
			}
			conn.Close()
			r := <-resc
			elapsed := time.Since(start)
			if r.err != nil {
				t.Fatalf("receive: %v", r.err)
			}
			if r.n != int64(size) || r.sum != sha256.Sum256(data) {
				t.Fatalf("received %d bytes with a different hash, sent %d", r.n, size)
			}
			t.Logf("%d MiB in %v (%.2f Gbit/s); B->C frames %d (GSO %d, needs-csum %d, largest %d bytes); C->B frames %d (GSO %d)",
				size>>20, elapsed.Round(time.Millisecond), float64(size)*8/elapsed.Seconds()/1e9,
				st1.frames.Load(), st1.gso.Load(), st1.csum.Load(), st1.maxLen.Load(), st2.frames.Load(), st2.gso.Load())
			if h := st1.firstGSO.Load(); h != nil {
				t.Logf("first super-frame header: %v", *h)
			}
			if tc.off1 {
				if st1.gso.Load() == 0 || st1.maxLen.Load() <= VnetHdrLen+ethHdrLen+testMTU {
					t.Fatalf("offload TAP produced no TCPv4 super-frames (largest frame %d bytes)", st1.maxLen.Load())
				}
			} else if st1.gso.Load() != 0 || st1.maxLen.Load() > VnetHdrLen+ethHdrLen+testMTU {
				t.Fatalf("plain TAP produced a super-frame (largest frame %d bytes)", st1.maxLen.Load())
			}
		})
	}
}

func TestCloseUnblocksRead(t *testing.T) {
	for _, offload := range []bool{true, false} {
		t.Run(modeName(offload), func(t *testing.T) {
			enterNewNS(t)
			d := open(t, "wvt1", offload)
			errc := make(chan error, 1)
			go func() {
				bufs := [][]byte{make([]byte, MaxFrameSize)}
				_, err := d.Read(bufs, make([]int, 1), 0)
				errc <- err
			}()
			if err := d.Close(); err != nil {
				t.Fatal(err)
			}
			if err := d.Close(); err != nil {
				t.Fatalf("second Close: %v", err)
			}
			select {
			case err := <-errc:
				if !errors.Is(err, os.ErrClosed) {
					t.Fatalf("Read after Close: %v, want os.ErrClosed", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Read still blocked after Close")
			}
			if _, err := d.Write([][]byte{make([]byte, 60)}, 0); !errors.Is(err, os.ErrClosed) {
				t.Fatalf("Write after Close: %v, want os.ErrClosed", err)
			}
			deadline := time.Now().Add(5 * time.Second)
			for {
				if _, err := netlink.LinkByName("wvt1"); err != nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("interface still exists after Close")
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}

func TestReadBufferTooSmall(t *testing.T) {
	enterNewNS(t)
	d := open(t, "wvt1", true)
	if _, err := d.Read([][]byte{make([]byte, 2000)}, make([]int, 1), 0); err == nil {
		t.Fatal("Read accepted a 2000-byte buffer in offload mode")
	}
}

// TestAllocs checks that Read and Write do not allocate per frame: an ICMP
// echo request written to the TAP comes back as an echo reply, and in
// plain mode a GSO super-frame is segmented.
func TestAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	for _, offload := range []bool{true, false} {
		t.Run(modeName(offload), func(t *testing.T) {
			enterNewNS(t)
			d := open(t, "wvt1", offload)
			link := mustLink(t, "wvt1")
			addr, _ := netlink.ParseAddr("10.98.0.1/24")
			if err := netlink.AddrAdd(link, addr); err != nil {
				t.Fatal(err)
			}
			farMAC := net.HardwareAddr{0x02, 0, 0, 0, 0, 0x02}
			far := net.IPv4(10, 98, 0, 2).To4()
			if err := netlink.NeighAdd(&netlink.Neigh{LinkIndex: link.Attrs().Index, State: netlink.NUD_PERMANENT,
				IP: far, HardwareAddr: farMAC}); err != nil {
				t.Fatal(err)
			}
			eth := &layers.Ethernet{SrcMAC: farMAC, DstMAC: link.Attrs().HardwareAddr, EthernetType: layers.EthernetTypeIPv4}
			ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolICMPv4, SrcIP: far, DstIP: net.IPv4(10, 98, 0, 1).To4()}
			echo := serialize(t, eth, ip, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0), Id: 1, Seq: 1},
				gopacket.Payload(make([]byte, 56)))

			wbufs := [][]byte{echo}
			rbufs := [][]byte{make([]byte, MaxFrameSize), make([]byte, MaxFrameSize)}
			sizes := make([]int, 2)
			roundTrip := func() {
				if n, err := d.Write(wbufs, 0); n != 1 || err != nil {
					t.Fatalf("Write: %d, %v", n, err)
				}
				if _, err := d.Read(rbufs, sizes, 0); err != nil {
					t.Fatalf("Read: %v", err)
				}
			}
			// Prove the reply comes before trusting Read not to block.
			done := make(chan struct{})
			go func() {
				defer close(done)
				roundTrip()
			}()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				d.Close()
				<-done
				t.Fatal("no echo reply read from the TAP")
			}
			if a := testing.AllocsPerRun(200, roundTrip); a != 0 {
				t.Fatalf("Write+Read allocate %.1f times per frame", a)
			}
			if offload {
				return
			}
			// A TCP super-frame to a closed port: segmented in software
			// (each segment draws a RST nobody reads).
			tcp := &layers.TCP{SrcPort: 1, DstPort: 2, Seq: 1, ACK: true, Window: 100}
			tcp.SetNetworkLayerForChecksum(ip)
			ip.Protocol = layers.IPProtocolTCP
			gso := serialize(t, eth, ip, tcp, gopacket.Payload(make([]byte, 20000)))
			(&VnetHdr{GSOType: GSOTCPv4, GSOSize: 1000}).Encode(gso)
			wbufs[0] = gso
			if a := testing.AllocsPerRun(100, func() {
				if n, err := d.Write(wbufs, 0); n != 1 || err != nil {
					t.Fatalf("Write GSO: %d, %v", n, err)
				}
			}); a != 0 {
				t.Fatalf("software segmentation allocates %.1f times per frame", a)
			}
		})
	}
}

// TestWriteReportsBadFrame: a frame Write cannot finish is skipped, the
// rest are written, and the error names it.
func TestWriteReportsBadFrame(t *testing.T) {
	enterNewNS(t)
	d := open(t, "wvt1", false)
	bad := make([]byte, VnetHdrLen+60)
	(&VnetHdr{GSOType: GSOTCPv4, GSOSize: 100}).Encode(bad)
	good := make([]byte, VnetHdrLen+60)
	copy(good[VnetHdrLen:], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 1, 0x88, 0xb5})
	n, err := d.Write([][]byte{bad, good}, 0)
	if n != 1 || !errors.Is(err, ErrMalformed) {
		t.Fatalf("Write = %d, %v; want 1 frame written and ErrMalformed", n, err)
	}
	if want := "frame 0"; err == nil || !bytes.Contains([]byte(err.Error()), []byte(want)) {
		t.Fatalf("error %q does not name %s", err, want)
	}
}
