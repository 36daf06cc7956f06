package conn

import (
	"fmt"
	"net/netip"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"weavemesh.dev/weave/internal/mmsg"
)

// msgMeta records where a prepared message came from, so a failed send
// can be charged to its packet or re-prepared differently.
type msgMeta struct {
	pkt  int  // index into the OutPacket slice
	off  int  // byte offset in the packet where the message starts
	len  int  // bytes in the message
	gso  bool // carries a UDP_SEGMENT control message
	iov0 int  // first iovec in writer.iovs
	niov int
}

// pos is a place in the OutPacket stream: packet index and byte offset.
type pos struct{ pkt, off int }

func (a pos) before(b pos) bool { return a.pkt < b.pkt || (a.pkt == b.pkt && a.off < b.off) }

// writer is WriteBatch's scratch space, allocated once per Conn (iovs grows
// if packets carry many buffers). It turns OutPackets into a window of
// mmsghdrs at a time: one message per datagram, or per UDP_SEGMENT batch of
// datagrams, each message's iovecs slicing the caller's buffers in place.
type writer struct {
	fn       func(fd uintptr) bool
	sendmmsg func(fd uintptr, msgs []unix.Mmsghdr) (int, syscall.Errno) // mmsg.Sendmmsg; tests inject refusals
	msgs     []unix.Mmsghdr
	meta     []msgMeta
	iovs     []unix.Iovec
	names    []unix.RawSockaddrInet4
	oob      []byte

	// sendmmsg arguments and results for fn.
	start, end int
	sent       int
	errno      syscall.Errno

	// Generator state.
	pkts   []OutPacket
	next   pos // where the next message starts
	total  int // bytes in pkts[next.pkt]
	bufIdx int // cursor into pkts[next.pkt].Bufs matching next.off
	bufOff int
	soft   pos  // messages starting before soft are split in software
	probe  bool // a software re-send after a GSO EINVAL is in flight
}

func (w *writer) init() {
	w.sendmmsg = mmsg.Sendmmsg
	w.msgs = make([]unix.Mmsghdr, sendWindow)
	w.meta = make([]msgMeta, sendWindow)
	w.names = make([]unix.RawSockaddrInet4, sendWindow)
	w.oob = make([]byte, sendWindow*sendOOBLen)
	w.iovs = make([]unix.Iovec, 0, 2*sendWindow)
}

// seek moves the generator to p.
func (w *writer) seek(p pos) {
	w.next = pos{pkt: p.pkt}
	w.bufIdx, w.bufOff, w.total = 0, 0, 0
	if p.pkt >= len(w.pkts) {
		return
	}
	for _, b := range w.pkts[p.pkt].Bufs {
		w.total += len(b)
	}
	w.advance(p.off, false)
	w.next.off = p.off
}

// advance moves the buffer cursor n bytes on, appending iovecs for the
// bytes it passes if emit is set.
func (w *writer) advance(n int, emit bool) {
	bufs := w.pkts[w.next.pkt].Bufs
	for n > 0 && w.bufIdx < len(bufs) {
		b := bufs[w.bufIdx][w.bufOff:]
		take := min(n, len(b))
		if take > 0 && emit {
			var iov unix.Iovec
			iov.Base = &b[0]
			iov.SetLen(take)
			w.iovs = append(w.iovs, iov)
		}
		n -= take
		w.bufOff += take
		if w.bufOff == len(bufs[w.bufIdx]) {
			w.bufIdx++
			w.bufOff = 0
		}
	}
}

// fill prepares up to sendWindow messages from the generator position and
// returns how many.
func (w *writer) fill(gso bool) int {
	w.iovs = w.iovs[:0]
	nm := 0
	for nm < sendWindow && w.next.pkt < len(w.pkts) {
		p := &w.pkts[w.next.pkt]
		if p.Err != nil {
			w.seek(pos{pkt: w.next.pkt + 1})
			continue
		}
		length, isGSO := w.total-w.next.off, false
		if p.SegSize > 0 && length > p.SegSize {
			if gso && !w.next.before(w.soft) {
				segs := max(1, min(maxGSOSegments, maxUDPPayload/p.SegSize))
				length = min(length, segs*p.SegSize)
				isGSO = length > p.SegSize
			} else {
				length = p.SegSize
			}
		}
		m := &w.meta[nm]
		*m = msgMeta{pkt: w.next.pkt, off: w.next.off, len: length, gso: isGSO, iov0: len(w.iovs)}
		w.advance(length, true)
		m.niov = len(w.iovs) - m.iov0
		mmsg.PutAddrPort4(&w.names[nm], p.Addr)
		if isGSO {
			putGSO(w.oob[nm*sendOOBLen:], p.SegSize)
		}
		nm++
		w.next.off += length
		if w.next.off >= w.total {
			w.seek(pos{pkt: w.next.pkt + 1})
		}
	}
	// Point the headers at the scratch arrays only now: appending to iovs
	// may have moved it.
	for k := range nm {
		m := &w.meta[k]
		h := &w.msgs[k].Hdr
		*h = unix.Msghdr{}
		w.msgs[k].Len = 0
		h.Name = (*byte)(unsafe.Pointer(&w.names[k]))
		h.Namelen = unix.SizeofSockaddrInet4
		if m.niov > 0 {
			h.Iov = &w.iovs[m.iov0]
			h.SetIovlen(m.niov)
		}
		if m.gso {
			h.Control = &w.oob[k*sendOOBLen]
			h.SetControllen(sendOOBLen)
		}
	}
	return nm
}

// WriteBatch sends pkts. Per-packet failures land in pkts[i].Err (cleared
// first); the returned error is for the Conn as a whole (e.g. closed,
// satisfying errors.Is(err, net.ErrClosed)).
//
// Partial sends are resumed. A packet whose SegSize cuts it into more
// datagrams than one UDP_SEGMENT send may carry (64 segments, 64 KiB) is
// sent in several. If the kernel refuses UDP_SEGMENT (EIO: the route's
// device cannot checksum; or EINVAL while the same datagrams sent one by
// one succeed) GSO is switched off for good, logged once, and the
// datagrams go out one per message.
func (c *Conn) WriteBatch(pkts []OutPacket) error {
	if len(pkts) == 0 {
		return nil
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	w := &c.wr
	for i := range pkts {
		p := &pkts[i]
		p.Err = nil
		if a := p.Addr.Addr(); !a.Is4() && !a.Is4In6() {
			p.Err = fmt.Errorf("conn: destination %v is not an IPv4 address", p.Addr)
		} else if a.Is4In6() {
			p.Addr = netip.AddrPortFrom(a.Unmap(), p.Addr.Port())
		}
		if p.SegSize < 0 {
			p.Err = fmt.Errorf("conn: negative SegSize %d", p.SegSize)
		}
	}
	w.pkts = pkts
	w.soft, w.probe = pos{}, false
	w.seek(pos{})
	defer func() {
		w.pkts = nil
		for i := range w.iovs {
			w.iovs[i].Base = nil
		}
	}()

refill:
	for {
		nm := w.fill(c.gso.Load())
		if nm == 0 {
			return nil
		}
		for k := 0; k < nm; {
			w.start, w.end = k, nm
			if err := c.wraw.Write(w.fn); err != nil {
				return fmt.Errorf("conn: write %v: %w", c.local, err)
			}
			if w.errno == 0 && w.sent <= 0 {
				// sendmmsg makes progress or fails; never spin on neither.
				w.errno = unix.ENOBUFS
			}
			if w.errno == 0 {
				if w.probe && (pos{w.meta[k].pkt, w.meta[k].off}).before(w.soft) {
					// The datagrams the kernel refused as one GSO send
					// went out individually: GSO itself is the problem.
					c.disableGSO("UDP_SEGMENT send failed but the same datagrams sent singly succeeded", unix.EINVAL)
					w.probe = false
					if k += w.sent; k < nm {
						// Re-prepare the rest of the window without GSO.
						w.seek(pos{w.meta[k].pkt, w.meta[k].off})
						continue refill
					}
					continue
				}
				k += w.sent
				continue
			}
			m := w.meta[k]
			at := pos{m.pkt, m.off}
			if m.gso && (w.errno == unix.EIO || w.errno == unix.EINVAL) {
				c.log.Debug("UDP_SEGMENT send refused; resending as single datagrams",
					"to", w.pkts[m.pkt].Addr, "segsize", w.pkts[m.pkt].SegSize, "bytes", m.len, "err", w.errno)
				if w.errno == unix.EIO {
					c.disableGSO("route's device cannot checksum UDP_SEGMENT sends", w.errno)
				} else {
					// Older kernels also say EINVAL for a segment larger
					// than the route MTU (6.18 says EMSGSIZE); resend
					// singly to learn which it is.
					w.soft = pos{m.pkt, m.off + m.len}
					w.probe = true
				}
				w.seek(at)
				continue refill
			}
			if w.probe && at.before(w.soft) {
				w.probe = false
			}
			pkts[m.pkt].Err = os.NewSyscallError("sendmmsg", w.errno)
			// Skip the rest of the failed packet.
			for k++; k < nm && w.meta[k].pkt == m.pkt; k++ {
			}
			if w.next.pkt == m.pkt {
				w.seek(pos{pkt: m.pkt + 1})
			}
		}
	}
}

func (c *Conn) writeFn(fd uintptr) bool {
	w := &c.wr
	for {
		c.sends.Add(1)
		n, e := w.sendmmsg(fd, w.msgs[w.start:w.end])
		switch e {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		}
		w.sent, w.errno = n, e
		return true
	}
}
