package conn

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"golang.org/x/sys/unix"
)

// MaxGroup is the largest socket group ListenGroup opens.
const MaxGroup = 16

// ListenGroup opens n sockets that all receive on o.Addr (SO_REUSEPORT),
// one per pipeline, so that n goroutines receive in parallel.
//
// The kernel hands each datagram to the socket whose index is the
// datagram's UDP source port modulo n (a classic BPF program attached to
// the group). Socket 0 sends from o.Addr itself; socket i > 0 sends from a
// socket of its own, bound to a port chosen so that its value modulo n is
// o.Addr's port plus i: datagrams sent through socket i of one peer arrive
// at socket i of a peer whose group has the same size, and the datagrams
// of different sending sockets at different receiving sockets whenever
// the two groups have at least two sockets. Whoever keeps one flow on one
// sending socket keeps it on one receiving socket, in order.
//
// With n == 1 it is Listen. Where the kernel refuses the steering program
// (it logs why), the kernel's own choice by a hash of the addresses and
// ports applies: it too keeps each sending socket's datagrams on one
// receiving socket, but two senders may share one. On error nothing stays
// open.
func ListenGroup(o Options, n int) ([]*Conn, error) {
	if n < 1 || n > MaxGroup {
		return nil, fmt.Errorf("conn: group of %d sockets; want 1-%d", n, MaxGroup)
	}
	if n == 1 {
		c, err := Listen(o)
		if err != nil {
			return nil, err
		}
		return []*Conn{c}, nil
	}
	if o.Addr.Port() != 0 {
		// SO_REUSEPORT would let a second group (another router) share
		// the port unnoticed; a plain bind first fails if anyone holds it.
		probe, err := listenUDP(o.Addr, false)
		if err != nil {
			return nil, err
		}
		probe.Close()
	}
	var out []*Conn
	fail := func(err error) ([]*Conn, error) {
		for _, c := range out {
			c.Close()
		}
		return nil, err
	}
	for range n {
		c, err := listenConn(o, true)
		if err != nil {
			return fail(err)
		}
		if len(out) == 0 {
			// Later binds would take the kernel's choice of port 0.
			o.Addr = c.local
		}
		out = append(out, c)
	}
	if err := steer(out[0], n); err != nil {
		out[0].log.Warn("kernel refused to steer the UDP socket group by source port; it picks sockets by address hash",
			"sockets", n, "err", err)
	}
	base := int(out[0].local.Port())
	for i := 1; i < n; i++ {
		s, err := sendSocket(out[0].local.Addr(), (base+i)%n, n, o)
		if err != nil {
			return fail(err)
		}
		raw, err := s.SyscallConn()
		if err != nil {
			s.Close()
			return fail(fmt.Errorf("conn: %w", err))
		}
		out[i].send, out[i].wraw = s, raw
		out[i].log.Info("UDP group socket sends from its own port", "index", i, "send_port", s.LocalAddr().(*net.UDPAddr).Port)
	}
	return out, nil
}

// SendAddr is the address WriteBatch sends from: LocalAddr, or in a
// group, the socket's own sending port.
func (c *Conn) SendAddr() netip.AddrPort {
	return c.send.LocalAddr().(*net.UDPAddr).AddrPort()
}

// skfNetOff is SKF_NET_OFF (linux/filter.h): classic BPF loads at this
// offset plus k read the packet from its network header.
const skfNetOff = -0x100000

// steerProgram picks the group socket for a datagram: its UDP source port
// modulo n. The program runs with the packet's data at the UDP payload;
// the source port is read relative to the network header, which the
// underlay's IPv4 packets carry without options (20 bytes). A packet with
// options only lands on another socket of the group.
func steerProgram(n int) []unix.SockFilter {
	off := int32(skfNetOff + 20)
	return []unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_H | unix.BPF_ABS, K: uint32(off)},
		{Code: unix.BPF_ALU | unix.BPF_MOD | unix.BPF_K, K: uint32(n)},
		{Code: unix.BPF_RET | unix.BPF_A},
	}
}

// steer attaches steerProgram to c's reuseport group.
func steer(c *Conn, n int) error {
	filter := steerProgram(n)
	fprog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	var serr error
	err := c.raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptSockFprog(int(fd), unix.SOL_SOCKET, unix.SO_ATTACH_REUSEPORT_CBPF, &fprog)
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("conn: attach the steering program to the socket group on %v: %w", c.local, err)
	}
	return nil
}

// sendTries bounds the binds sendSocket tries for a port of the right
// residue; each try has a 1 in n chance.
const sendTries = 64

// sendSocket binds a UDP socket on addr to a kernel-chosen port whose
// value modulo n is want, configured for sending like the group's.
func sendSocket(addr netip.Addr, want, n int, o Options) (*net.UDPConn, error) {
	var spare []*net.UDPConn
	defer func() {
		for _, s := range spare {
			s.Close()
		}
	}()
	for range sendTries {
		s, err := listenUDP(netip.AddrPortFrom(addr, 0), false)
		if err != nil {
			return nil, err
		}
		if s.LocalAddr().(*net.UDPAddr).Port%n != want {
			// Held until the end so the kernel does not offer it again.
			spare = append(spare, s)
			continue
		}
		raw, err := s.SyscallConn()
		var serr error
		if err == nil {
			err = raw.Control(func(fd uintptr) {
				if serr = setPMTUDisc(int(fd)); serr != nil {
					return
				}
				size := o.SendBuffer
				if size == 0 {
					size = DefaultBuffer
				}
				setBuffer(int(fd), unix.SO_SNDBUFFORCE, unix.SO_SNDBUF, size)
				// Nothing is sent to this port; a small receive
				// buffer keeps strays from holding memory.
				unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 4096)
			})
		}
		if err == nil {
			err = serr
		}
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("conn: configure sending socket: %w", err)
		}
		return s, nil
	}
	return nil, fmt.Errorf("conn: no port with residue %d modulo %d in %d binds on %v", want, n, sendTries, addr)
}

// listenUDP binds an IPv4 UDP socket, with SO_REUSEPORT before the bind
// when reuse is true.
func listenUDP(addr netip.AddrPort, reuse bool) (*net.UDPConn, error) {
	lc := net.ListenConfig{}
	if reuse {
		lc.Control = func(_, _ string, c syscall.RawConn) error {
			var serr error
			if err := c.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
			}); err != nil {
				return err
			}
			return serr
		}
	}
	pc, err := lc.ListenPacket(context.Background(), "udp4", addr.String())
	if err != nil {
		return nil, fmt.Errorf("conn: listen on %v: %w", addr, err)
	}
	udp, ok := pc.(*net.UDPConn)
	if !ok {
		pc.Close()
		return nil, errors.New("conn: listen returned no UDP socket")
	}
	return udp, nil
}

// setPMTUDisc sets DF on every datagram: the engine discovers the path
// MTU itself and needs EMSGSIZE rather than silent fragmentation.
func setPMTUDisc(fd int) error {
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_DO); err != nil {
		return fmt.Errorf("set IP_MTU_DISCOVER: %w", err)
	}
	return nil
}
