package dns

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// batchConn reads and writes datagrams of a UDP socket in batches with
// recvmmsg and sendmmsg, through the runtime's poller. It is owned by one
// goroutine: nothing in it is safe for concurrent use.
type batchConn struct {
	raw syscall.RawConn

	// Receiving: one buffer per message.
	rmsgs  []unix.Mmsghdr
	riovs  []unix.Iovec
	rnames []unix.RawSockaddrInet6 // large enough for IPv4 and IPv6
	rbufs  [][]byte
	rfn    func(fd uintptr) bool
	rn     int // messages offered
	rgot   int // messages received
	rerrno syscall.Errno

	// Sending.
	wmsgs  []unix.Mmsghdr
	wiovs  []unix.Iovec
	wnames []unix.RawSockaddrInet6
	wfn    func(fd uintptr) bool
	wn     int // messages to send
	wsent  int // messages handed to the kernel (or dropped on error)
	werrs  int // messages the kernel refused
}

func newBatchConn(c *net.UDPConn, batch, bufSize int) (*batchConn, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	b := &batchConn{
		raw:    raw,
		rmsgs:  make([]unix.Mmsghdr, batch),
		riovs:  make([]unix.Iovec, batch),
		rnames: make([]unix.RawSockaddrInet6, batch),
		rbufs:  make([][]byte, batch),
		wmsgs:  make([]unix.Mmsghdr, batch),
		wiovs:  make([]unix.Iovec, batch),
		wnames: make([]unix.RawSockaddrInet6, batch),
	}
	for i := range b.rbufs {
		b.rbufs[i] = make([]byte, bufSize)
	}
	b.rfn, b.wfn = b.readFn, b.writeFn
	return b, nil
}

// read blocks until at least one datagram arrives and returns how many
// were read; datagram i is b.rbufs[i][:b.rmsgs[i].Len], from b.rnames[i].
func (b *batchConn) read() (int, error) {
	for i := range b.rmsgs {
		b.riovs[i].Base = &b.rbufs[i][0]
		b.riovs[i].SetLen(len(b.rbufs[i]))
		h := &b.rmsgs[i].Hdr
		h.Name = (*byte)(unsafe.Pointer(&b.rnames[i]))
		h.Namelen = unix.SizeofSockaddrInet6
		h.Iov = &b.riovs[i]
		h.SetIovlen(1)
		h.Control = nil
		h.SetControllen(0)
		h.Flags = 0
		b.rmsgs[i].Len = 0
	}
	b.rn, b.rgot, b.rerrno = len(b.rmsgs), 0, 0
	if err := b.raw.Read(b.rfn); err != nil {
		return 0, err
	}
	if b.rerrno != 0 {
		return 0, os.NewSyscallError("recvmmsg", b.rerrno)
	}
	return b.rgot, nil
}

func (b *batchConn) readFn(fd uintptr) bool {
	for {
		n, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&b.rmsgs[0])), uintptr(b.rn), 0, 0, 0)
		switch e {
		case 0:
			b.rgot = int(n)
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		default:
			b.rerrno = e
			return true
		}
	}
}

// data returns received datagram i.
func (b *batchConn) data(i int) []byte { return b.rbufs[i][:b.rmsgs[i].Len] }

// from returns the sender of received datagram i.
func (b *batchConn) from(i int) (netip.AddrPort, error) {
	sa := &b.rnames[i]
	switch sa.Family {
	case unix.AF_INET:
		s4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		p := (*[2]byte)(unsafe.Pointer(&s4.Port))
		return netip.AddrPortFrom(netip.AddrFrom4(s4.Addr), uint16(p[0])<<8|uint16(p[1])), nil
	case unix.AF_INET6:
		p := (*[2]byte)(unsafe.Pointer(&sa.Port))
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), uint16(p[0])<<8|uint16(p[1])), nil
	}
	return netip.AddrPort{}, fmt.Errorf("datagram from address family %d", sa.Family)
}

// queue adds an answer to datagram i (to its sender) to the next write.
func (b *batchConn) queue(i int, answer []byte) {
	j := b.wn
	b.wn++
	b.wnames[j] = b.rnames[i]
	b.wiovs[j].Base = &answer[0]
	b.wiovs[j].SetLen(len(answer))
	h := &b.wmsgs[j].Hdr
	h.Name = (*byte)(unsafe.Pointer(&b.wnames[j]))
	h.Namelen = b.rmsgs[i].Hdr.Namelen
	h.Iov = &b.wiovs[j]
	h.SetIovlen(1)
	h.Control = nil
	h.SetControllen(0)
	h.Flags = 0
}

// flush sends the queued answers and reports how many the kernel refused
// (an unreachable client, say); those are dropped.
func (b *batchConn) flush() (refused int, err error) {
	if b.wn == 0 {
		return 0, nil
	}
	b.wsent, b.werrs = 0, 0
	err = b.raw.Write(b.wfn)
	for i := range b.wn {
		b.wiovs[i].Base = nil
	}
	refused = b.werrs
	b.wn = 0
	return refused, err
}

func (b *batchConn) writeFn(fd uintptr) bool {
	for b.wsent < b.wn {
		n, _, e := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&b.wmsgs[b.wsent])), uintptr(b.wn-b.wsent), 0, 0, 0)
		switch e {
		case 0:
			b.wsent += int(n)
		case unix.EINTR:
		case unix.EAGAIN:
			return false
		default:
			// The first message could not be sent; skip it, keep the rest.
			b.wsent++
			b.werrs++
		}
	}
	return true
}

// errClosedConn reports whether err means the socket was closed.
func errClosedConn(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrClosed)
}
