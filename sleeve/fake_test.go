package sleeve

import (
	"bytes"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"weavemesh.dev/weave/sleeve/conn"
)

// fakeNet connects fakeConns in memory. Datagrams larger than mtu, or
// between cut pairs, vanish as on a real underlay.
type fakeNet struct {
	mu    sync.Mutex
	conns map[netip.AddrPort]*fakeConn
	mtu   map[[2]netip.AddrPort]int
	cut   map[[2]netip.AddrPort]bool
	gro   bool
	taps  []tapRule
}

type tapRule struct {
	to netip.AddrPort
	ch chan []byte
}

func newFakeNet() *fakeNet {
	return &fakeNet{conns: map[netip.AddrPort]*fakeConn{}, mtu: map[[2]netip.AddrPort]int{}, cut: map[[2]netip.AddrPort]bool{}}
}

func (n *fakeNet) conn(addr netip.AddrPort) *fakeConn {
	c := &fakeConn{net: n, addr: addr, in: make(chan conn.Packet, 4096), done: make(chan struct{})}
	n.mu.Lock()
	n.conns[addr] = c
	n.mu.Unlock()
	return c
}

func (n *fakeNet) setCut(a, b netip.AddrPort, cut bool) {
	n.mu.Lock()
	n.cut[[2]netip.AddrPort{a, b}] = cut
	n.cut[[2]netip.AddrPort{b, a}] = cut
	n.mu.Unlock()
}

func (n *fakeNet) setMTU(a, b netip.AddrPort, mtu int) {
	n.mu.Lock()
	n.mtu[[2]netip.AddrPort{a, b}] = mtu
	n.mtu[[2]netip.AddrPort{b, a}] = mtu
	n.mu.Unlock()
}

type fakeConn struct {
	net       *fakeNet
	addr      netip.AddrPort
	in        chan conn.Packet
	done      chan struct{}
	closeOnce sync.Once
}

func (c *fakeConn) GSO() bool { return true }

func (c *fakeConn) Close() error {
	c.closeOnce.Do(func() { close(c.done) })
	return nil
}

func (c *fakeConn) ReadBatch(pkts []conn.Packet) (int, error) {
	var p conn.Packet
	select {
	case p = <-c.in:
	case <-c.done:
		return 0, net.ErrClosed
	}
	n := 0
	for {
		pkts[n].N = copy(pkts[n].Buf, p.Buf)
		pkts[n].Addr = p.Addr
		pkts[n].SegSize = p.SegSize
		n++
		if n == len(pkts) {
			return n, nil
		}
		select {
		case p = <-c.in:
		default:
			return n, nil
		}
	}
}

func (c *fakeConn) WriteBatch(pkts []conn.OutPacket) error {
	select {
	case <-c.done:
		return net.ErrClosed
	default:
	}
	for i := range pkts {
		var all []byte
		for _, b := range pkts[i].Bufs {
			all = append(all, b...)
		}
		seg := pkts[i].SegSize
		if seg == 0 {
			seg = len(all)
		}
		c.net.mu.Lock()
		dst := c.net.conns[pkts[i].Addr]
		key := [2]netip.AddrPort{c.addr, pkts[i].Addr}
		mtu, cut, gro := c.net.mtu[key], c.net.cut[key], c.net.gro
		var taps []chan []byte
		for _, r := range c.net.taps {
			if r.to == pkts[i].Addr {
				taps = append(taps, r.ch)
			}
		}
		c.net.mu.Unlock()
		for _, ch := range taps {
			for rest := all; len(rest) > 0; {
				d := rest[:min(seg, len(rest))]
				rest = rest[len(d):]
				select {
				case ch <- bytes.Clone(d):
				default:
				}
			}
		}
		if dst == nil || cut {
			continue
		}
		if gro && pkts[i].SegSize > 0 && (mtu == 0 || seg <= mtu) {
			// As the real socket: at most 64 datagrams and one
			// IPv4 packet's worth per GSO send, and so per GRO read.
			per := min(64, (65535-28)/seg) * seg
			for len(all) > 0 {
				n := min(per, len(all))
				dst.in <- conn.Packet{Buf: all[:n], Addr: c.addr, SegSize: seg}
				all = all[n:]
			}
			continue
		}
		for len(all) > 0 {
			d := all[:min(seg, len(all))]
			all = all[len(d):]
			if mtu > 0 && len(d) > mtu {
				continue
			}
			dst.in <- conn.Packet{Buf: bytes.Clone(d), Addr: c.addr}
		}
	}
	return nil
}

// fakeDev is a TAP in memory: frames pushed to in are read by the engine;
// frames the engine writes arrive on out.
type fakeDev struct {
	in        chan []byte
	out       chan []byte
	done      chan struct{}
	closeOnce sync.Once
}

func newFakeDev() *fakeDev {
	return &fakeDev{in: make(chan []byte, 1024), out: make(chan []byte, 4096), done: make(chan struct{})}
}

func (d *fakeDev) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	select {
	case f := <-d.in:
		sizes[0] = copy(bufs[0][offset:], f)
		return 1, nil
	case <-d.done:
		return 0, net.ErrClosed
	}
}

func (d *fakeDev) Write(bufs [][]byte, offset int) (int, error) {
	for i, b := range bufs {
		select {
		case d.out <- bytes.Clone(b[offset:]):
		case <-d.done:
			return i, net.ErrClosed
		}
	}
	return len(bufs), nil
}

func (d *fakeDev) Close() error {
	d.closeOnce.Do(func() { close(d.done) })
	return nil
}

// expectFrame waits for a frame on d's output that satisfies match.
func expectFrame(t *testing.T, d *fakeDev, what string, match func([]byte) bool) []byte {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case f := <-d.out:
			if match(f) {
				return f
			}
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
			return nil
		}
	}
}

// noFrame checks that nothing matching arrives within d.
func noFrame(t *testing.T, dev *fakeDev, what string, wait time.Duration, match func([]byte) bool) {
	t.Helper()
	deadline := time.After(wait)
	for {
		select {
		case f := <-dev.out:
			if match(f) {
				t.Fatalf("unexpected %s", what)
			}
		case <-deadline:
			return
		}
	}
}

func packet(b []byte, from netip.AddrPort) conn.Packet {
	return conn.Packet{Buf: b, Addr: from}
}
