package conn

import (
	"bytes"
	"errors"
	"net/netip"
	"syscall"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"weavemesh.dev/weave/internal/mmsg"
)

// TestFill checks how packets are cut into messages, without a kernel.
func TestFill(t *testing.T) {
	dst := netip.MustParseAddrPort("192.0.2.1:6784")
	type msg struct {
		pkt, len int
		gso      bool
	}
	for _, tc := range []struct {
		name string
		gso  bool
		pkts []OutPacket
		want []msg
	}{
		{"plain", true, []OutPacket{{Bufs: [][]byte{make([]byte, 10), make([]byte, 5)}}}, []msg{{0, 15, false}}},
		{"empty datagram", true, []OutPacket{{}}, []msg{{0, 0, false}}},
		{"segsize larger than packet", true, []OutPacket{{Bufs: [][]byte{make([]byte, 100)}, SegSize: 1000}}, []msg{{0, 100, false}}},
		{"gso", true, []OutPacket{{Bufs: [][]byte{make([]byte, 2500)}, SegSize: 1000}}, []msg{{0, 2500, true}}},
		{"gso exact", true, []OutPacket{{Bufs: [][]byte{make([]byte, 3000)}, SegSize: 1000}}, []msg{{0, 3000, true}}},
		{"software", false, []OutPacket{{Bufs: [][]byte{make([]byte, 2500)}, SegSize: 1000}},
			[]msg{{0, 1000, false}, {0, 1000, false}, {0, 500, false}}},
		{"64 KiB limit", true, []OutPacket{{Bufs: [][]byte{make([]byte, 70000)}, SegSize: 1400}},
			[]msg{{0, 46 * 1400, true}, {0, 70000 - 46*1400, true}}},
		{"segment limit", true, []OutPacket{{Bufs: [][]byte{make([]byte, 130*10)}, SegSize: 10}},
			[]msg{{0, 640, true}, {0, 640, true}, {0, 20, true}}},
		{"single segment tail", true, []OutPacket{{Bufs: [][]byte{make([]byte, 65*10+3)}, SegSize: 10}},
			[]msg{{0, 640, true}, {0, 13, true}}},
		{"segment larger than UDP", true, []OutPacket{{Bufs: [][]byte{make([]byte, 70000)}, SegSize: 66000}},
			[]msg{{0, 66000, false}, {0, 4000, false}}},
		{"skips failed", true, []OutPacket{{Err: errors.New("x")}, {Bufs: [][]byte{{1}}}}, []msg{{1, 1, false}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var w writer
			w.init()
			for i := range tc.pkts {
				tc.pkts[i].Addr = dst
			}
			w.pkts = tc.pkts
			w.seek(pos{})
			var got []msg
			for {
				nm := w.fill(tc.gso)
				if nm == 0 {
					break
				}
				for k := range nm {
					m := w.meta[k]
					got = append(got, msg{m.pkt, m.len, m.gso})
					if (w.msgs[k].Hdr.Control != nil) != m.gso {
						t.Errorf("message %d: control message presence %v, gso %v", k, w.msgs[k].Hdr.Control != nil, m.gso)
					}
				}
			}
			if len(got) != len(tc.want) {
				t.Fatalf("messages %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("messages %v, want %v", got, tc.want)
				}
			}
		})
	}
}

// TestFillIovecs checks that messages' iovecs cover exactly the packet's
// bytes in order, across buffer boundaries that do not line up with
// segment boundaries.
func TestFillIovecs(t *testing.T) {
	for _, gso := range []bool{true, false} {
		var bufs [][]byte
		var flat []byte
		for i, size := range []int{7, 0, 1500, 3, 999, 20000, 1, 40000, 12} {
			b := pattern(size, i)
			bufs = append(bufs, b)
			flat = append(flat, b...)
		}
		var w writer
		w.init()
		w.pkts = []OutPacket{{Bufs: bufs, SegSize: 1376, Addr: netip.MustParseAddrPort("192.0.2.1:1")}}
		w.seek(pos{})
		var joined []byte
		for {
			nm := w.fill(gso)
			if nm == 0 {
				break
			}
			for k := range nm {
				h := &w.msgs[k].Hdr
				var msgBytes []byte
				iovs := unsafe.Slice(h.Iov, h.Iovlen)
				for _, iov := range iovs {
					msgBytes = append(msgBytes, unsafe.Slice(iov.Base, iov.Len)...)
				}
				if len(msgBytes) != w.meta[k].len {
					t.Fatalf("gso=%v message %d: iovecs hold %d bytes, meta says %d", gso, k, len(msgBytes), w.meta[k].len)
				}
				joined = append(joined, msgBytes...)
			}
		}
		if !bytes.Equal(joined, flat) {
			t.Fatalf("gso=%v: messages do not reproduce the packet (%d vs %d bytes)", gso, len(joined), len(flat))
		}
	}
}

// refuseGSO makes c's sendmmsg behave like a kernel that refuses
// UDP_SEGMENT with errno, and counts refusals.
func refuseGSO(c *Conn, errno syscall.Errno, refusals *int) {
	c.wr.sendmmsg = func(fd uintptr, msgs []unix.Mmsghdr) (int, syscall.Errno) {
		for j := range msgs {
			if msgs[j].Hdr.Control != nil {
				if j == 0 {
					*refusals++
					return -1, errno
				}
				msgs = msgs[:j]
				break
			}
		}
		return mmsg.Sendmmsg(fd, msgs)
	}
}

func TestGSORefused(t *testing.T) {
	for _, errno := range []syscall.Errno{unix.EIO, unix.EINVAL} {
		t.Run(errno.Error(), func(t *testing.T) {
			enterNewNS(t)
			a := listen(t, Options{})
			b := listen(t, Options{DisableGRO: true})
			if !a.GSO() {
				t.Skip("kernel lacks UDP_SEGMENT")
			}
			var refusals int
			refuseGSO(a, errno, &refusals)
			bufs, flat := gsoPacket(1200, 10, 50)
			out := []OutPacket{
				{Bufs: [][]byte{[]byte("first")}, Addr: b.LocalAddr()},
				{Bufs: bufs, Addr: b.LocalAddr(), SegSize: 1200},
				{Bufs: bufs, Addr: b.LocalAddr(), SegSize: 1200},
			}
			if err := a.WriteBatch(out); err != nil {
				t.Fatal(err)
			}
			for i, p := range out {
				if p.Err != nil {
					t.Fatalf("packet %d: %v", i, p.Err)
				}
			}
			if a.GSO() {
				t.Fatal("GSO still on after the kernel refused it")
			}
			got := recvBytes(t, b, 5+2*len(flat))
			if len(got) != 21 {
				t.Fatalf("received %d datagrams, want 21", len(got))
			}
			if refusals != 1 {
				t.Fatalf("kernel asked %d times to segment, want 1", refusals)
			}
			// Later batches no longer try.
			if err := a.WriteBatch(out[1:2]); err != nil || out[1].Err != nil {
				t.Fatal(err, out[1].Err)
			}
			recvBytes(t, b, len(flat))
			if refusals != 1 {
				t.Fatalf("GSO attempted again after being disabled")
			}
		})
	}
}

// TestGSOEINVALOversize: EINVAL for a segment bigger than the route MTU
// must surface as EMSGSIZE and leave GSO on.
func TestGSOEINVALOversize(t *testing.T) {
	enterNewNS(t)
	setLoopbackMTU(t, 1500)
	a := listen(t, Options{})
	b := listen(t, Options{})
	if !a.GSO() {
		t.Skip("kernel lacks UDP_SEGMENT")
	}
	var refusals int
	refuseGSO(a, unix.EINVAL, &refusals)
	bufs, _ := gsoPacket(2000, 3, 0)
	out := []OutPacket{
		{Bufs: bufs, Addr: b.LocalAddr(), SegSize: 2000},
		{Bufs: [][]byte{[]byte("after")}, Addr: b.LocalAddr()},
	}
	if err := a.WriteBatch(out); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(out[0].Err, syscall.EMSGSIZE) {
		t.Fatalf("oversized GSO packet: Err = %v, want EMSGSIZE", out[0].Err)
	}
	if out[1].Err != nil {
		t.Fatalf("following packet: %v", out[1].Err)
	}
	if !a.GSO() {
		t.Fatal("GSO disabled by an oversized segment")
	}
	if got := recvBytes(t, b, 5); string(got[0].data) != "after" {
		t.Fatalf("received %q", got[0].data)
	}
}
