package conn

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"weavemesh.dev/weave/internal/mmsg"
)

// Limits of UDP segmentation offload. The kernel accepts at most
// UDP_MAX_SEGMENTS segments per send (64 on older kernels, 128 since 6.9;
// the lower bound is used) and the whole datagram must fit an IPv4 packet.
const (
	maxGSOSegments = 64
	maxUDPPayload  = 65535 - 20 - 8
)

// MinGROBuffer is the smallest Packet.Buf ReadBatch accepts while GRO is
// on: a coalesced receive can carry up to an IPv4 packet's worth of payload.
const MinGROBuffer = 65535

// DefaultBuffer is the socket buffer size asked for when Options leave it 0.
const DefaultBuffer = 8 << 20

// maxBatch bounds how many packets one ReadBatch or WriteBatch call hands
// to the kernel per system call (UIO_MAXIOV).
const maxBatch = 1024

// sendWindow is how many messages WriteBatch prepares per sendmmsg.
const sendWindow = 128

// Control-message space per message: room for the UDP_GRO int (and any
// other control message the kernel might add) on receive, and for the
// UDP_SEGMENT uint16 on send.
var (
	recvOOBLen = unix.CmsgSpace(4)*2 + unix.CmsgSpace(16) // UDP_GRO, SO_RXQ_OVFL and SO_TIMESTAMPNS
	sendOOBLen = unix.CmsgSpace(2)
)

// Options configure Listen.
type Options struct {
	// Addr is the local IPv4 address and port to bind, e.g. 0.0.0.0:6784.
	// Required. The underlay is IPv4 only.
	Addr netip.AddrPort
	// RecvBuffer and SendBuffer are socket buffer sizes in bytes
	// (default DefaultBuffer). With CAP_NET_ADMIN they may exceed the
	// net.core.{r,w}mem_max sysctls; otherwise the kernel caps them.
	RecvBuffer, SendBuffer int
	// DisableGSO and DisableGRO turn the UDP offloads off even where the
	// kernel supports them.
	DisableGSO, DisableGRO bool
	// Logger receives setup messages and the one-time GSO fallback
	// warning; nil discards them.
	Logger *slog.Logger
}

// Packet is one received datagram, or with GRO several datagrams from the
// same source coalesced by the kernel.
type Packet struct {
	Buf     []byte // caller-provided; at least MinGROBuffer bytes while GRO is on
	N       int    // bytes received into Buf
	Addr    netip.AddrPort
	SegSize int // GRO: size of each coalesced datagram (the last may be shorter); 0 = one datagram
	// Stamp is when the kernel received it (unix nanoseconds,
	// CLOCK_REALTIME, SO_TIMESTAMPNS), so that the reader can tell how
	// long it waited in the socket's queue; 0 where the kernel gave none.
	Stamp int64
}

// OutPacket is one datagram to send, or with SegSize several.
type OutPacket struct {
	// Bufs are concatenated by the kernel (an iovec each), so headers and
	// payload can live in separate buffers without copying.
	Bufs [][]byte
	Addr netip.AddrPort
	// SegSize > 0 cuts the concatenation into datagrams of SegSize bytes
	// (the last may be shorter): one UDP_SEGMENT send per up to 64 of
	// them, or one send each without GSO. 0 = one datagram.
	SegSize int
	// Err is set by WriteBatch when the packet (or one of its datagrams)
	// was not sent, e.g. an error satisfying errors.Is(err,
	// syscall.EMSGSIZE) when it exceeds the path MTU. Datagrams after the
	// failing one are not sent.
	Err error
}

// Conn is a batched UDP socket.
//
// ReadBatch and WriteBatch are each meant for a single caller (one reader
// goroutine, one writer goroutine); each has its own scratch space, so the
// two run concurrently. Concurrent calls to the same one are serialised.
type Conn struct {
	log *slog.Logger
	udp *net.UDPConn
	raw syscall.RawConn
	// send and wraw are the socket WriteBatch sends from: udp itself,
	// or in a group (ListenGroup) a socket of its own whose source port
	// steers the receiver's choice of socket.
	send  *net.UDPConn
	wraw  syscall.RawConn
	local netip.AddrPort
	gro   bool
	gso   atomic.Bool // cleared for good if the kernel rejects UDP_SEGMENT

	// sends counts sendmmsg system calls.
	sends atomic.Uint64
	// overflow is the kernel's count of datagrams this socket dropped
	// for want of receive buffer space (SO_RXQ_OVFL), as of the last
	// datagram received; ovfl says the kernel reports it.
	overflow atomic.Uint32
	ovfl     bool
	// stamps says the kernel timestamps received datagrams.
	stamps bool

	gsoOffOnce sync.Once
	closeOnce  sync.Once
	closeErr   error

	rmu sync.Mutex // serialises ReadBatch; guards rd
	rd  reader

	wmu sync.Mutex // serialises WriteBatch; guards wr
	wr  writer
}

// reader is ReadBatch's scratch space, allocated once per Conn; mr runs
// the recvmmsg loop through the poller.
type reader struct {
	mr    *mmsg.Reader
	msgs  []unix.Mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet4
	oob   []byte
}

// Listen opens the UDP socket in the calling thread's network namespace.
func Listen(o Options) (*Conn, error) { return listenConn(o, false) }

// listenConn opens the socket, with SO_REUSEPORT set before the bind when
// reuse is true.
func listenConn(o Options, reuse bool) (*Conn, error) {
	if !o.Addr.IsValid() {
		return nil, errors.New("conn: Options.Addr is required")
	}
	addr := netip.AddrPortFrom(o.Addr.Addr().Unmap(), o.Addr.Port())
	if !addr.Addr().Is4() {
		return nil, fmt.Errorf("conn: Options.Addr %v is not IPv4; the underlay is IPv4 only", o.Addr)
	}
	if o.RecvBuffer < 0 || o.SendBuffer < 0 {
		return nil, fmt.Errorf("conn: Options.RecvBuffer/SendBuffer must not be negative (%d/%d)", o.RecvBuffer, o.SendBuffer)
	}
	if o.RecvBuffer == 0 {
		o.RecvBuffer = DefaultBuffer
	}
	if o.SendBuffer == 0 {
		o.SendBuffer = DefaultBuffer
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}

	udp, err := listenUDP(addr, reuse)
	if err != nil {
		return nil, err
	}
	raw, err := udp.SyscallConn()
	if err != nil {
		udp.Close()
		return nil, fmt.Errorf("conn: %w", err)
	}
	c := &Conn{log: log, udp: udp, raw: raw, send: udp, wraw: raw, local: udp.LocalAddr().(*net.UDPAddr).AddrPort()}
	c.log = log.With("udp", c.local.String())

	var setupErr error
	var rcv, snd int
	var rcvForced, sndForced bool
	err = raw.Control(func(fd uintptr) {
		s := int(fd)
		// DF on every datagram: the engine discovers the path MTU itself
		// and needs EMSGSIZE rather than silent fragmentation.
		if err := setPMTUDisc(s); err != nil {
			setupErr = err
			return
		}
		rcv, rcvForced = setBuffer(s, unix.SO_RCVBUFFORCE, unix.SO_RCVBUF, o.RecvBuffer)
		snd, sndForced = setBuffer(s, unix.SO_SNDBUFFORCE, unix.SO_SNDBUF, o.SendBuffer)
		if !o.DisableGSO {
			// Reading UDP_SEGMENT succeeds exactly when the kernel knows it.
			_, err := unix.GetsockoptInt(s, unix.IPPROTO_UDP, unix.UDP_SEGMENT)
			c.gso.Store(err == nil)
		}
		if !o.DisableGRO {
			c.gro = unix.SetsockoptInt(s, unix.IPPROTO_UDP, unix.UDP_GRO, 1) == nil
		}
		c.ovfl = unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_RXQ_OVFL, 1) == nil
		c.stamps = unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1) == nil
	})
	if err == nil {
		err = setupErr
	}
	if err != nil {
		udp.Close()
		return nil, fmt.Errorf("conn: configure socket on %v: %w", addr, err)
	}
	c.log.Info("UDP socket ready",
		"rcvbuf", rcv, "rcvbuf_forced", rcvForced, "sndbuf", snd, "sndbuf_forced", sndForced,
		"gso", c.gso.Load(), "gro", c.gro)
	if rcv < o.RecvBuffer {
		c.log.Warn("kernel granted a smaller receive buffer than asked; raise net.core.rmem_max or grant CAP_NET_ADMIN",
			"asked", o.RecvBuffer, "granted", rcv)
	}

	c.rd.mr = mmsg.NewReader(raw)
	c.wr.fn = c.writeFn
	c.rd.grow(64)
	c.wr.init()
	return c, nil
}

// setBuffer asks for size bytes, first past the sysctl limit (needs
// CAP_NET_ADMIN) and otherwise within it, and returns what the kernel
// reports (which counts its bookkeeping overhead, so is about twice size).
func setBuffer(fd, forceOpt, opt, size int) (granted int, forced bool) {
	forced = unix.SetsockoptInt(fd, unix.SOL_SOCKET, forceOpt, size) == nil
	if !forced {
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, opt, size)
	}
	granted, _ = unix.GetsockoptInt(fd, unix.SOL_SOCKET, opt)
	return granted, forced
}

// RcvbufDrops is the number of datagrams the kernel dropped because this
// socket's receive buffer was full, as the last datagram received
// reported it (SO_RXQ_OVFL); 0 where the kernel does not report it.
func (c *Conn) RcvbufDrops() uint64 { return uint64(c.overflow.Load()) }

// Syscalls is the number of recvmmsg and sendmmsg system calls made so
// far, calls that found nothing to read included.
func (c *Conn) Syscalls() uint64 { return c.rd.mr.Calls() + c.sends.Load() }

// GSO reports whether sends use UDP segmentation offload. It turns false
// for good if the kernel rejects a segmented send.
func (c *Conn) GSO() bool { return c.gso.Load() }

// GRO reports whether receives may coalesce datagrams (Packet.SegSize).
func (c *Conn) GRO() bool { return c.gro }

// LocalAddr is the bound address, with the port the kernel chose if
// Options.Addr had port 0.
func (c *Conn) LocalAddr() netip.AddrPort { return c.local }

// Close closes the socket. It is idempotent; a blocked ReadBatch returns an
// error satisfying errors.Is(err, net.ErrClosed).
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		err := c.udp.Close()
		if c.send != c.udp {
			err = errors.Join(err, c.send.Close())
		}
		if err != nil {
			c.closeErr = fmt.Errorf("conn: close %v: %w", c.local, err)
		}
	})
	return c.closeErr
}

func (r *reader) grow(n int) {
	if n <= len(r.msgs) {
		return
	}
	r.msgs = make([]unix.Mmsghdr, n)
	r.iovs = make([]unix.Iovec, n)
	r.names = make([]unix.RawSockaddrInet4, n)
	r.oob = make([]byte, n*recvOOBLen)
}

// ReadBatch blocks until at least one datagram arrives, then returns as
// many as are queued, up to len(pkts) (at most 1024). It fills N, Addr and
// SegSize of pkts[:n]. A datagram larger than its Buf is truncated.
func (c *Conn) ReadBatch(pkts []Packet) (int, error) {
	n := min(len(pkts), maxBatch)
	if n == 0 {
		return 0, nil
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	r := &c.rd
	r.grow(n)
	for i := range n {
		buf := pkts[i].Buf
		if len(buf) == 0 || (c.gro && len(buf) < MinGROBuffer) {
			return 0, fmt.Errorf("conn: pkts[%d].Buf has %d bytes; need at least %d with GRO, 1 without", i, len(buf), MinGROBuffer)
		}
		r.iovs[i].Base = &buf[0]
		r.iovs[i].SetLen(len(buf))
		h := &r.msgs[i].Hdr
		h.Name = (*byte)(unsafe.Pointer(&r.names[i]))
		h.Namelen = unix.SizeofSockaddrInet4
		h.Iov = &r.iovs[i]
		h.SetIovlen(1)
		if c.gro || c.ovfl || c.stamps {
			h.Control = &r.oob[i*recvOOBLen]
			h.SetControllen(recvOOBLen)
		} else {
			h.Control = nil
			h.SetControllen(0)
		}
		h.Flags = 0
		r.msgs[i].Len = 0
	}
	got, err := r.mr.Read(r.msgs[:n])
	// Drop references to the caller's buffers.
	for i := range n {
		r.iovs[i].Base = nil
	}
	if err != nil {
		return 0, fmt.Errorf("conn: read %v: %w", c.local, err)
	}
	for i := range got {
		m := &r.msgs[i]
		p := &pkts[i]
		p.N = int(m.Len)
		p.Addr = mmsg.AddrPort4(&r.names[i])
		p.SegSize = 0
		p.Stamp = 0
		if m.Hdr.Controllen > 0 {
			oob := r.oob[i*recvOOBLen : i*recvOOBLen+int(m.Hdr.Controllen)]
			if c.gro {
				p.SegSize = parseGRO(oob)
			}
			if v, ok := parseOverflow(oob); ok {
				c.overflow.Store(v)
			}
			if c.stamps {
				p.Stamp = parseStamp(oob)
			}
		}
	}
	return got, nil
}

// disableGSO switches to software segmentation for the rest of the
// Conn's life.
func (c *Conn) disableGSO(why string, err error) {
	c.gso.Store(false)
	c.gsoOffOnce.Do(func() {
		c.log.Warn("kernel rejected UDP segmentation offload; segmenting in software from now on", "why", why, "err", err)
	})
}
