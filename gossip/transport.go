package gossip

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-sockaddr"
	"github.com/hashicorp/memberlist"
)

// udpRecvBuf is the receive buffer asked for on the gossip socket (halved
// until the kernel grants it), as memberlist's own transport does: a
// burst of joins or a push-pull round lands many datagrams at once.
const udpRecvBuf = 2 << 20

// maxDatagram bounds a gossip datagram read.
const maxDatagram = 65536

// Transport carries memberlist's datagrams over UDP and its streams over
// TCP, on one address and port.
//
// It replaces memberlist.NetTransport, which reads every datagram into a
// fresh 64 KiB buffer and resolves the address of every datagram it
// sends. With 500 routers in one process (bench/scale) those buffers were
// half of all bytes allocated and drove most of the garbage collector's
// work, which starved the routers' probes. Here a datagram is read into
// the listener's one buffer and copied into a slice of its own size, and a
// send parses a literal address without a resolver.
type Transport struct {
	udp      *net.UDPConn
	tcp      *net.TCPListener
	packetCh chan *memberlist.Packet
	streamCh chan net.Conn
	sent     *atomic.Uint64 // nil: not counted
	log      *slog.Logger
	closing  atomic.Bool
	wg       sync.WaitGroup // the two listener loops
}

var _ memberlist.NodeAwareTransport = (*Transport)(nil)

// TransportConfig configures NewTransport.
type TransportConfig struct {
	BindAddr string // an IP address; DefaultBindAddr when empty
	Port     int    // 0: a free port, the same for TCP and UDP
	// BytesSent, when set, counts the bytes this transport sends:
	// datagrams, and what is written to streams whichever side opened them.
	BytesSent *atomic.Uint64
	Logger    *slog.Logger // optional
}

// NewTransport binds cfg's address and port, TCP and UDP, and starts
// reading them. Shutdown stops it.
func NewTransport(cfg TransportConfig) (*Transport, error) {
	if cfg.BindAddr == "" {
		cfg.BindAddr = DefaultBindAddr
	}
	ip, err := netip.ParseAddr(cfg.BindAddr)
	if err != nil {
		return nil, fmt.Errorf("gossip: bind address %q: want an IP address: %w", cfg.BindAddr, err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// A port of 0 lets the kernel pick the TCP port, which UDP may then
	// find taken: try a few times, as memberlist does.
	tries := 1
	if cfg.Port == 0 {
		tries = 10
	}
	var tcp *net.TCPListener
	var udp *net.UDPConn
	for range tries {
		tcp, udp, err = listenPair(ip, cfg.Port)
		if err == nil || !errors.Is(err, syscall.EADDRINUSE) {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	t := &Transport{
		udp: udp, tcp: tcp,
		packetCh: make(chan *memberlist.Packet),
		streamCh: make(chan net.Conn),
		sent:     cfg.BytesSent,
		log:      log,
	}
	t.wg.Add(2)
	go t.readPackets()
	go t.acceptStreams()
	return t, nil
}

// listenPair binds TCP, then UDP on the port TCP got.
func listenPair(ip netip.Addr, port int) (*net.TCPListener, *net.UDPConn, error) {
	tcp, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(netip.AddrPortFrom(ip, uint16(port))))
	if err != nil {
		return nil, nil, fmt.Errorf("gossip: listen on tcp %s: %w", netip.AddrPortFrom(ip, uint16(port)), err)
	}
	port = tcp.Addr().(*net.TCPAddr).Port
	udp, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, uint16(port))))
	if err != nil {
		tcp.Close()
		return nil, nil, fmt.Errorf("gossip: listen on udp %s: %w", netip.AddrPortFrom(ip, uint16(port)), err)
	}
	for size := udpRecvBuf; size > 0; size /= 2 {
		if udp.SetReadBuffer(size) == nil {
			break
		}
	}
	return tcp, udp, nil
}

// Port is the port bound, TCP and UDP.
func (t *Transport) Port() int { return t.tcp.Addr().(*net.TCPAddr).Port }

// FinalAdvertiseAddr is the address and port other peers reach this one
// at: the given ones, else the bound address (a private address of this
// host when bound to all).
func (t *Transport) FinalAdvertiseAddr(ip string, port int) (net.IP, int, error) {
	if ip != "" {
		a := net.ParseIP(ip)
		if a == nil {
			return nil, 0, fmt.Errorf("gossip: advertise address %q is not an IP address", ip)
		}
		if a4 := a.To4(); a4 != nil {
			a = a4
		}
		return a, port, nil
	}
	bound := t.tcp.Addr().(*net.TCPAddr)
	if !bound.IP.IsUnspecified() {
		return bound.IP, bound.Port, nil
	}
	priv, err := sockaddr.GetPrivateIP()
	if err != nil {
		return nil, 0, fmt.Errorf("gossip: find a private address to advertise: %w", err)
	}
	if priv == "" {
		return nil, 0, errors.New("gossip: no private IP address found to advertise; give one with --advertise-addr")
	}
	return net.ParseIP(priv), bound.Port, nil
}

// WriteTo sends a datagram to addr (host:port).
func (t *Transport) WriteTo(b []byte, addr string) (time.Time, error) {
	return t.WriteToAddress(b, memberlist.Address{Addr: addr})
}

// WriteToAddress sends a datagram to a.Addr.
func (t *Transport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	ap, err := netip.ParseAddrPort(a.Addr)
	if err != nil {
		// Not a literal address: a name given to join.
		ua, rerr := net.ResolveUDPAddr("udp", a.Addr)
		if rerr != nil {
			return time.Time{}, rerr
		}
		ap = ua.AddrPort()
	}
	_, err = t.udp.WriteToUDPAddrPort(b, ap)
	if err == nil && t.sent != nil {
		t.sent.Add(uint64(len(b)))
	}
	return time.Now(), err
}

// PacketCh delivers the datagrams read.
func (t *Transport) PacketCh() <-chan *memberlist.Packet { return t.packetCh }

// DialTimeout opens a stream to addr.
func (t *Transport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

// DialAddressTimeout opens a stream to a.Addr.
func (t *Transport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout}
	c, err := d.Dial("tcp", a.Addr)
	if err != nil {
		return nil, err
	}
	return t.counted(c), nil
}

// StreamCh delivers the streams accepted.
func (t *Transport) StreamCh() <-chan net.Conn { return t.streamCh }

// Shutdown closes both sockets and waits for the listener loops. It is
// called by memberlist once, after it stopped reading the channels.
func (t *Transport) Shutdown() error {
	t.closing.Store(true)
	t.tcp.Close()
	t.udp.Close()
	t.wg.Wait()
	return nil
}

func (t *Transport) counted(c net.Conn) net.Conn {
	if t.sent == nil {
		return c
	}
	return &countingConn{Conn: c, sent: t.sent}
}

// readPackets reads datagrams until Shutdown. memberlist keeps a packet's
// bytes after the hand-off, so each gets a copy of its own size.
func (t *Transport) readPackets() {
	defer t.wg.Done()
	buf := make([]byte, maxDatagram)
	for {
		n, from, err := t.udp.ReadFromUDPAddrPort(buf)
		now := time.Now()
		if err != nil {
			if t.closing.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			t.log.Warn("gossip: read a datagram", "err", err)
			continue
		}
		if n < 1 {
			continue
		}
		b := make([]byte, n)
		copy(b, buf)
		t.packetCh <- &memberlist.Packet{
			Buf:       b,
			From:      net.UDPAddrFromAddrPort(from),
			Timestamp: now,
		}
	}
}

// acceptStreams accepts streams until Shutdown, backing off on errors
// (such as running out of file descriptors) rather than spinning.
func (t *Transport) acceptStreams() {
	defer t.wg.Done()
	var delay time.Duration
	for {
		c, err := t.tcp.Accept()
		if err != nil {
			if t.closing.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			t.log.Warn("gossip: accept a stream", "err", err, "retry_in", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		t.streamCh <- t.counted(c)
	}
}

// countingConn counts the bytes written to a stream.
type countingConn struct {
	net.Conn
	sent *atomic.Uint64
}

func (c *countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.sent.Add(uint64(n))
	return n, err
}
