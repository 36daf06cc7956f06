package mmsg

import (
	"net/netip"
	"os"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Reader reads batches of datagrams from one socket with recvmmsg. It
// belongs to one reader goroutine: it is not safe for concurrent use.
type Reader struct {
	raw   syscall.RawConn
	fn    func(fd uintptr) bool // r.read, bound once so Read does not allocate
	msgs  []unix.Mmsghdr
	got   int
	errno syscall.Errno
	calls atomic.Uint64
}

// Calls is the number of recvmmsg system calls made, those that found
// nothing included; safe to call from any goroutine.
func (r *Reader) Calls() uint64 { return r.calls.Load() }

// NewReader returns a Reader for the socket behind raw (from
// (*net.UDPConn).SyscallConn).
func NewReader(raw syscall.RawConn) *Reader {
	r := &Reader{raw: raw}
	r.fn = r.read
	return r
}

// Read blocks until at least one datagram arrives and returns how many of
// msgs the kernel filled; for each, Len is the datagram's length and the
// header's Namelen, Controllen and Flags are as the kernel set them. The
// caller points every header at its buffers, name and control space
// before each call. After the socket is closed Read returns the poller's
// error, which satisfies errors.Is(err, net.ErrClosed); a failed system
// call returns an *os.SyscallError.
func (r *Reader) Read(msgs []unix.Mmsghdr) (int, error) {
	if len(msgs) == 0 {
		return 0, nil
	}
	r.msgs, r.got, r.errno = msgs, 0, 0
	err := r.raw.Read(r.fn)
	r.msgs = nil // the caller's headers point at its buffers
	if err != nil {
		return 0, err
	}
	if r.errno != 0 {
		return 0, os.NewSyscallError("recvmmsg", r.errno)
	}
	return r.got, nil
}

// read is the poller callback: false asks the poller to wait until the
// socket is readable and call again.
func (r *Reader) read(fd uintptr) bool {
	for {
		r.calls.Add(1)
		n, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&r.msgs[0])), uintptr(len(r.msgs)), 0, 0, 0)
		switch e {
		case 0:
			r.got = int(n)
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		default:
			r.errno = e
			return true
		}
	}
}

// Writer sends batches of datagrams on one socket with sendmmsg. It
// belongs to one writer goroutine: it is not safe for concurrent use.
type Writer struct {
	raw     syscall.RawConn
	fn      func(fd uintptr) bool // w.write, bound once so Write does not allocate
	msgs    []unix.Mmsghdr
	sent    int // messages handed to the kernel or skipped
	refused int
}

// NewWriter returns a Writer for the socket behind raw.
func NewWriter(raw syscall.RawConn) *Writer {
	w := &Writer{raw: raw}
	w.fn = w.write
	return w
}

// Write sends every message of msgs, as many per system call as the
// kernel takes, waiting while the socket buffer is full. A message the
// kernel refuses (an unreachable destination, say) is skipped and counted
// in refused, and the rest are still sent: one bad destination must not
// hold up the others. err is the poller's (net.ErrClosed after Close).
func (w *Writer) Write(msgs []unix.Mmsghdr) (refused int, err error) {
	if len(msgs) == 0 {
		return 0, nil
	}
	w.msgs, w.sent, w.refused = msgs, 0, 0
	err = w.raw.Write(w.fn)
	w.msgs = nil
	return w.refused, err
}

func (w *Writer) write(fd uintptr) bool {
	for w.sent < len(w.msgs) {
		n, e := Sendmmsg(fd, w.msgs[w.sent:])
		switch e {
		case 0:
			w.sent += n
		case unix.EINTR:
		case unix.EAGAIN:
			return false
		default:
			// The first message could not be sent; skip it, keep the rest.
			w.sent++
			w.refused++
		}
	}
	return true
}

// Sendmmsg is one raw sendmmsg(2) of msgs on fd, for callers with their
// own retry rules; it returns how many messages the kernel took.
func Sendmmsg(fd uintptr, msgs []unix.Mmsghdr) (int, syscall.Errno) {
	n, _, e := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&msgs[0])), uintptr(len(msgs)), 0, 0, 0)
	return int(n), e
}

// AddrPort decodes a socket address the kernel wrote into a buffer large
// enough for IPv4 and IPv6; IPv4-mapped IPv6 addresses are unmapped. It
// reports false for another address family.
func AddrPort(sa *unix.RawSockaddrInet6) (netip.AddrPort, bool) {
	switch sa.Family {
	case unix.AF_INET:
		return AddrPort4((*unix.RawSockaddrInet4)(unsafe.Pointer(sa))), true
	case unix.AF_INET6:
		p := (*[2]byte)(unsafe.Pointer(&sa.Port))
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), uint16(p[0])<<8|uint16(p[1])), true
	}
	return netip.AddrPort{}, false
}

// AddrPort4 decodes an IPv4 socket address.
func AddrPort4(sa *unix.RawSockaddrInet4) netip.AddrPort {
	p := (*[2]byte)(unsafe.Pointer(&sa.Port))
	return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(p[0])<<8|uint16(p[1]))
}

// PutAddrPort4 encodes an IPv4 address and port as a socket address; ap
// must hold an IPv4 address.
func PutAddrPort4(sa *unix.RawSockaddrInet4, ap netip.AddrPort) {
	sa.Family = unix.AF_INET
	p := (*[2]byte)(unsafe.Pointer(&sa.Port))
	p[0], p[1] = byte(ap.Port()>>8), byte(ap.Port())
	sa.Addr = ap.Addr().As4()
}
