package dns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Timings and sizes of the listeners.
const (
	shutdownWait = 2 * time.Second
	// udpReadBuffer absorbs bursts of queries (a benchmark, a container
	// starting many lookups at once).
	udpReadBuffer = 4 << 20
	// maxUDPQuery is the largest query read: EDNS0 queries are small, but
	// a client may send a large one.
	maxUDPQuery = 4096
)

// ContainerNameserver is where weaveDNS answers inside every attached
// namespace: a loopback address, so a container reaches it whatever its
// addresses and routes, with no host address on the overlay. It is not
// Docker's 127.0.0.11 nor systemd-resolved's 127.0.0.53 and 127.0.0.54.
var ContainerNameserver = netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 153}), 53)

// ErrClosed reports use of a Server after Close.
var ErrClosed = errors.New("dns: server is closed")

// Server runs a Handler on pairs of UDP and TCP listeners, each under a
// key, in this process's network namespace or in another one. Safe for
// concurrent use.
type Server struct {
	h   *Handler
	log *slog.Logger

	mu     sync.Mutex // guards ls and closed
	ls     map[string]*listener
	closed bool
	wg     sync.WaitGroup // serving goroutines
}

// Listener describes one address the Server answers on.
type Listener struct {
	Key   string
	Addr  netip.AddrPort
	Netns string // namespace file, "" for the router's own namespace
}

type listener struct {
	Listener
	// UDP is served by loop on a specific address, by udp (miekg/dns's
	// server, which picks the source address of each answer) on an
	// unspecified one.
	loop     *udpLoop
	udp, tcp *mdns.Server
	pc       *net.UDPConn
}

// NewServer returns a Server for h with no listeners yet.
func NewServer(h *Handler, log *slog.Logger) (*Server, error) {
	if h == nil {
		return nil, errors.New("dns: NewServer: handler is nil")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{h: h, log: log, ls: map[string]*listener{}}, nil
}

// Listen answers on addr (UDP and TCP) under key, in the network namespace
// at netnsPath, or in the router's own when it is "". Listening again with
// the same key, address and namespace does nothing; with another address
// the old listener is replaced.
func (s *Server) Listen(key string, addr netip.AddrPort, netnsPath string) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	old := s.ls[key]
	s.mu.Unlock()
	if old != nil {
		if old.Addr == addr && old.Netns == netnsPath {
			return nil
		}
		s.Stop(key)
	}
	var (
		pc  *net.UDPConn
		ln  net.Listener
		err error
	)
	if netnsPath == "" {
		pc, ln, err = listenHere(addr)
	} else {
		pc, ln, err = ListenNetns(netnsPath, addr)
	}
	if err != nil {
		return err
	}
	if addr.Port() == 0 {
		addr = netip.AddrPortFrom(addr.Addr(), pc.LocalAddr().(*net.UDPAddr).AddrPort().Port())
	}
	l := &listener{Listener: Listener{Key: key, Addr: addr, Netns: netnsPath}, pc: pc}
	if addr.Addr().IsUnspecified() {
		l.udp = &mdns.Server{PacketConn: pc, Handler: s.h, UDPSize: maxUDPQuery,
			MsgAcceptFunc: s.h.Accept, MsgInvalidFunc: s.h.Invalid}
	} else if l.loop, err = newUDPLoop(s.h, s.log, pc, &s.wg); err != nil {
		pc.Close()
		ln.Close()
		return fmt.Errorf("dns: serve on %s: %w", addr, err)
	}
	l.tcp = &mdns.Server{Listener: ln, Handler: s.h,
		MsgAcceptFunc: s.h.Accept, MsgInvalidFunc: s.h.Invalid}
	s.mu.Lock()
	if s.closed || s.ls[key] != nil {
		closed := s.closed
		s.mu.Unlock()
		pc.Close()
		ln.Close()
		if closed {
			return ErrClosed
		}
		return fmt.Errorf("dns: listener %q was started concurrently", key)
	}
	s.ls[key] = l
	// Serving starts under the lock so Close cannot miss it.
	var errU error
	if l.loop != nil {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			l.loop.run()
		}()
	} else {
		errU = s.serve(l.udp)
	}
	errT := s.serve(l.tcp)
	s.mu.Unlock()
	if err := errors.Join(errU, errT); err != nil {
		s.Stop(key)
		return fmt.Errorf("dns: serve on %s: %w", addr, err)
	}
	return nil
}

// serve runs srv in a goroutine and returns once it serves.
func (s *Server) serve(srv *mdns.Server) error {
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	errc := make(chan error, 1)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		errc <- srv.ActivateAndServe()
	}()
	select {
	case <-started:
		return nil
	case err := <-errc:
		if err == nil {
			err = errors.New("stopped at once")
		}
		return err
	}
}

// Stop closes the listeners under key, if any.
func (s *Server) Stop(key string) {
	s.mu.Lock()
	l := s.ls[key]
	delete(s.ls, key)
	s.mu.Unlock()
	if l != nil {
		s.shutdown(l)
	}
}

func (s *Server) shutdown(l *listener) {
	ctx, cancel := context.WithTimeout(context.Background(), shutdownWait)
	defer cancel()
	for _, srv := range []*mdns.Server{l.udp, l.tcp} {
		if srv == nil {
			continue
		}
		if err := srv.ShutdownContext(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			s.log.Debug("dns: stop listener", "addr", l.Addr, "err", err)
		}
	}
	l.pc.Close()
	if l.loop != nil {
		<-l.loop.done
	}
}

// Listeners returns the listeners, sorted by key.
func (s *Server) Listeners() []Listener {
	s.mu.Lock()
	out := make([]Listener, 0, len(s.ls))
	for _, l := range s.ls {
		out = append(out, l.Listener)
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b Listener) int { return strings.Compare(a.Key, b.Key) })
	return out
}

// Keys returns the keys with listeners.
func (s *Server) Keys() []string {
	var keys []string
	for _, l := range s.Listeners() {
		keys = append(keys, l.Key)
	}
	return keys
}

// Close stops every listener and waits for the goroutines serving them.
// Idempotent.
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	ls := s.ls
	s.ls = map[string]*listener{}
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, l := range ls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.shutdown(l)
		}()
	}
	wg.Wait()
	s.wg.Wait()
}

// listenHere opens the UDP socket and TCP listener in the calling thread's
// network namespace.
func listenHere(addr netip.AddrPort) (*net.UDPConn, net.Listener, error) {
	if addr.Port() != 0 {
		return listenPairAt(addr)
	}
	// Port 0: TCP takes the port UDP got. That port was free for UDP
	// only; an outgoing TCP connection may hold it on a busy host, so a
	// few others are tried.
	var err error
	for range 16 {
		var pc *net.UDPConn
		var ln net.Listener
		if pc, ln, err = listenPairAt(addr); err == nil {
			return pc, ln, nil
		}
		if !errors.Is(err, syscall.EADDRINUSE) {
			break
		}
	}
	return nil, nil, err
}

// listenPairAt opens UDP on addr and TCP on the port UDP got.
func listenPairAt(addr netip.AddrPort) (*net.UDPConn, net.Listener, error) {
	pc, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr))
	if err != nil {
		return nil, nil, fmt.Errorf("listen for DNS on udp %s: %w", addr, err)
	}
	_ = pc.SetReadBuffer(udpReadBuffer) // best effort
	addr = netip.AddrPortFrom(addr.Addr(), pc.LocalAddr().(*net.UDPAddr).AddrPort().Port())
	ln, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(addr))
	if err != nil {
		pc.Close()
		return nil, nil, fmt.Errorf("listen for DNS on tcp %s: %w", addr, err)
	}
	return pc, ln, nil
}

// ListenNetns opens a UDP socket and a TCP listener on addr inside the
// network namespace at path (/var/run/netns/NAME, /proc/PID/ns/net, ...).
// A socket stays in the namespace it was made in, so the caller can serve
// them from anywhere. A loopback addr brings the namespace's lo up if it
// is down.
func ListenNetns(path string, addr netip.AddrPort) (*net.UDPConn, net.Listener, error) {
	target, err := netns.GetFromPath(path)
	if err != nil {
		return nil, nil, fmt.Errorf("open network namespace %s: %w", path, err)
	}
	defer target.Close()
	type result struct {
		pc  *net.UDPConn
		ln  net.Listener
		err error
	}
	res := make(chan result, 1)
	// A goroutine of its own, locked to its thread: should the thread's
	// namespace not be restored, the thread is discarded with the
	// goroutine instead of running other goroutines in the wrong
	// namespace.
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			res <- result{err: fmt.Errorf("get own network namespace: %w", err)}
			return
		}
		defer orig.Close()
		if err := netns.Set(target); err != nil {
			runtime.UnlockOSThread()
			res <- result{err: fmt.Errorf("enter network namespace %s: %w", path, err)}
			return
		}
		var r result
		if addr.Addr().IsLoopback() {
			r.err = loopbackUp()
		}
		if r.err == nil {
			r.pc, r.ln, r.err = listenHere(addr)
		}
		if err := netns.Set(orig); err != nil {
			// Stay locked: the thread ends with this goroutine.
			if r.err == nil {
				r.pc.Close()
				r.ln.Close()
			}
			res <- result{err: fmt.Errorf("return from network namespace %s: %w", path, err)}
			return
		}
		runtime.UnlockOSThread()
		if r.err != nil {
			r.err = fmt.Errorf("in network namespace %s: %w", path, r.err)
		}
		res <- r
	}()
	r := <-res
	return r.pc, r.ln, r.err
}

// loopbackUp brings lo up in the calling thread's namespace; a namespace
// made with ip netns add starts with it down, and loopback addresses only
// work once it is up.
func loopbackUp() error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("find lo: %w", err)
	}
	if lo.Attrs().Flags&net.FlagUp != 0 {
		return nil
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		return fmt.Errorf("bring lo up: %w", err)
	}
	return nil
}
