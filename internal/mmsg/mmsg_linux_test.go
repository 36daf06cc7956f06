package mmsg

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// batch is the caller's side of a Reader or Writer: headers pointing at
// one buffer and one IPv4 name each.
type batch struct {
	msgs  []unix.Mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet6
	bufs  [][]byte
}

func newBatch(n, size int) *batch {
	b := &batch{msgs: make([]unix.Mmsghdr, n), iovs: make([]unix.Iovec, n),
		names: make([]unix.RawSockaddrInet6, n), bufs: make([][]byte, n)}
	for i := range n {
		b.bufs[i] = make([]byte, size)
	}
	return b
}

// point readies message i to receive into, or send, b.bufs[i][:size] with
// name b.names[i] of namelen bytes.
func (b *batch) point(i, size int, namelen uint32) {
	b.iovs[i].Base = &b.bufs[i][0]
	b.iovs[i].SetLen(size)
	h := &b.msgs[i].Hdr
	h.Name = (*byte)(unsafe.Pointer(&b.names[i]))
	h.Namelen = namelen
	h.Iov = &b.iovs[i]
	h.SetIovlen(1)
	h.Control = nil
	h.SetControllen(0)
	h.Flags = 0
	b.msgs[i].Len = 0
}

func (b *batch) to(i int, ap netip.AddrPort) {
	PutAddrPort4((*unix.RawSockaddrInet4)(unsafe.Pointer(&b.names[i])), ap)
}

func listen(t *testing.T) (*net.UDPConn, syscall.RawConn) {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	raw, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	return c, raw
}

// readN reads until n datagrams arrived and returns them as "from:data".
func readN(t *testing.T, r *Reader, n int) []string {
	t.Helper()
	var got []string
	in := newBatch(8, 2048)
	for len(got) < n {
		for i := range in.msgs {
			in.point(i, len(in.bufs[i]), unix.SizeofSockaddrInet6)
		}
		k, err := r.Read(in.msgs)
		if err != nil {
			t.Fatal(err)
		}
		for i := range k {
			from, ok := AddrPort(&in.names[i])
			if !ok {
				t.Fatalf("datagram %d: family %d", i, in.names[i].Family)
			}
			got = append(got, fmt.Sprintf("%v:%s", from, in.bufs[i][:in.msgs[i].Len]))
		}
	}
	return got
}

func TestReadWriteBatch(t *testing.T) {
	a, araw := listen(t)
	b, braw := listen(t)
	dst := b.LocalAddr().(*net.UDPAddr).AddrPort()
	src := a.LocalAddr().(*net.UDPAddr).AddrPort()
	out := newBatch(5, 16)
	var want []string
	for i := range 5 {
		n := copy(out.bufs[i], fmt.Sprintf("msg%d", i))
		out.point(i, n, unix.SizeofSockaddrInet4)
		out.to(i, dst)
		want = append(want, fmt.Sprintf("%v:msg%d", src, i))
	}
	refused, err := NewWriter(araw).Write(out.msgs)
	if err != nil || refused != 0 {
		t.Fatalf("write: %d refused, %v", refused, err)
	}
	if got := readN(t, NewReader(braw), 5); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestWriteSkipsRefused(t *testing.T) {
	_, araw := listen(t)
	b, braw := listen(t)
	dst := b.LocalAddr().(*net.UDPAddr).AddrPort()
	out := newBatch(3, 16)
	for i := range 3 {
		n := copy(out.bufs[i], fmt.Sprintf("msg%d", i))
		out.point(i, n, unix.SizeofSockaddrInet4)
		out.to(i, dst)
	}
	out.msgs[1].Hdr.Namelen = 1 // no valid socket address: EINVAL
	refused, err := NewWriter(araw).Write(out.msgs)
	if err != nil || refused != 1 {
		t.Fatalf("write: %d refused, %v; want 1 refused", refused, err)
	}
	got := readN(t, NewReader(braw), 2)
	if len(got) != 2 || got[0][len(got[0])-4:] != "msg0" || got[1][len(got[1])-4:] != "msg2" {
		t.Fatalf("got %q", got)
	}
}

func TestReadEndsOnClose(t *testing.T) {
	c, raw := listen(t)
	r := NewReader(raw)
	done := make(chan error, 1)
	go func() {
		in := newBatch(1, 64)
		in.point(0, 64, unix.SizeofSockaddrInet6)
		_, err := r.Read(in.msgs)
		done <- err
	}()
	time.Sleep(20 * time.Millisecond) // a chance for Read to block; the outcome must be the same if not
	c.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("read after close: %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Read still blocked after Close")
	}
}

func TestAddrPort(t *testing.T) {
	var sa unix.RawSockaddrInet6
	PutAddrPort4((*unix.RawSockaddrInet4)(unsafe.Pointer(&sa)), netip.MustParseAddrPort("10.1.2.3:53"))
	if ap, ok := AddrPort(&sa); !ok || ap.String() != "10.1.2.3:53" {
		t.Errorf("v4: %v %v", ap, ok)
	}
	sa = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: netip.MustParseAddr("::ffff:10.0.0.9").As16()}
	p := (*[2]byte)(unsafe.Pointer(&sa.Port))
	p[0], p[1] = 0, 53
	if ap, ok := AddrPort(&sa); !ok || ap.String() != "10.0.0.9:53" {
		t.Errorf("mapped v6: %v %v", ap, ok)
	}
	sa.Addr = netip.MustParseAddr("fd00::1").As16()
	if ap, ok := AddrPort(&sa); !ok || ap.String() != "[fd00::1]:53" {
		t.Errorf("v6: %v %v", ap, ok)
	}
	sa.Family = unix.AF_UNIX
	if _, ok := AddrPort(&sa); ok {
		t.Error("AF_UNIX decoded")
	}
}

func TestAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	_, araw := listen(t)
	b, braw := listen(t)
	dst := b.LocalAddr().(*net.UDPAddr).AddrPort()
	w, r := NewWriter(araw), NewReader(braw)
	out, in := newBatch(1, 64), newBatch(1, 64)
	n := copy(out.bufs[0], "ping")
	if got := testing.AllocsPerRun(100, func() {
		out.point(0, n, unix.SizeofSockaddrInet4)
		out.to(0, dst)
		if _, err := w.Write(out.msgs); err != nil {
			t.Fatal(err)
		}
		in.point(0, 64, unix.SizeofSockaddrInet6)
		if _, err := r.Read(in.msgs); err != nil {
			t.Fatal(err)
		}
		if _, ok := AddrPort(&in.names[0]); !ok {
			t.Fatal("bad name")
		}
	}); got > 0 {
		t.Errorf("%.1f allocations per write and read", got)
	}
}
