package dns

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"

	"weavemesh.dev/weave/internal/mmsg"
)

// batchConn reads and writes datagrams of a UDP socket in batches with
// recvmmsg and sendmmsg (internal/mmsg runs the system calls). It is owned
// by one goroutine: nothing in it is safe for concurrent use.
type batchConn struct {
	// Receiving: one buffer per message.
	r      *mmsg.Reader
	rmsgs  []unix.Mmsghdr
	riovs  []unix.Iovec
	rnames []unix.RawSockaddrInet6 // large enough for IPv4 and IPv6
	rbufs  [][]byte

	// Sending.
	w      *mmsg.Writer
	wmsgs  []unix.Mmsghdr
	wiovs  []unix.Iovec
	wnames []unix.RawSockaddrInet6
	wn     int // messages to send
}

func newBatchConn(c *net.UDPConn, batch, bufSize int) (*batchConn, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	b := &batchConn{
		r:      mmsg.NewReader(raw),
		w:      mmsg.NewWriter(raw),
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
	return b.r.Read(b.rmsgs)
}

// data returns received datagram i.
func (b *batchConn) data(i int) []byte { return b.rbufs[i][:b.rmsgs[i].Len] }

// from returns the sender of received datagram i.
func (b *batchConn) from(i int) (netip.AddrPort, error) {
	ap, ok := mmsg.AddrPort(&b.rnames[i])
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("datagram from address family %d", b.rnames[i].Family)
	}
	return ap, nil
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
	refused, err = b.w.Write(b.wmsgs[:b.wn])
	for i := range b.wn {
		b.wiovs[i].Base = nil
	}
	b.wn = 0
	return refused, err
}

// errClosedConn reports whether err means the socket was closed.
func errClosedConn(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrClosed)
}
