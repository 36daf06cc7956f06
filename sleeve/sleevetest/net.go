package sleevetest

import (
	"bytes"
	"net"
	"net/netip"
	"sync"
	"time"

	"weavemesh.dev/weave/sleeve/conn"
)

// Net connects Conns in memory, as an underlay does. Datagrams larger
// than a link's MTU, or sent over a cut link or to an address without a
// Conn, vanish.
type Net struct {
	mu    sync.Mutex // guards all following fields
	conns map[netip.AddrPort]*Conn
	mtu   map[[2]netip.AddrPort]int
	cut   map[[2]netip.AddrPort]bool
	gro   bool
	taps  []tap
	// pending counts the packets queued for open Conns or taken by their
	// last ReadBatch; idle is closed when it falls to zero.
	pending int
	idle    []chan struct{}
}

type tap struct {
	to netip.AddrPort
	ch chan []byte
}

// NewNet returns an empty network, without GRO.
func NewNet() *Net {
	return &Net{conns: map[netip.AddrPort]*Conn{}, mtu: map[[2]netip.AddrPort]int{}, cut: map[[2]netip.AddrPort]bool{}}
}

// SetGRO makes receivers get GSO trains as one coalesced read, as the real
// socket does with UDP GRO on.
func (n *Net) SetGRO(on bool) {
	n.mu.Lock()
	n.gro = on
	n.mu.Unlock()
}

// Conn returns a new socket bound to addr.
func (n *Net) Conn(addr netip.AddrPort) *Conn {
	c := &Conn{net: n, addr: addr, in: make(chan conn.Packet, 4096), fail: make(chan error, 16), done: make(chan struct{})}
	n.mu.Lock()
	n.conns[addr] = c
	n.mu.Unlock()
	return c
}

// SetCut cuts the link between a and b, both ways, or heals it.
func (n *Net) SetCut(a, b netip.AddrPort, cut bool) {
	n.mu.Lock()
	n.cut[[2]netip.AddrPort{a, b}] = cut
	n.cut[[2]netip.AddrPort{b, a}] = cut
	n.mu.Unlock()
}

// SetMTU sets the largest datagram the link between a and b carries.
func (n *Net) SetMTU(a, b netip.AddrPort, mtu int) {
	n.mu.Lock()
	n.mtu[[2]netip.AddrPort{a, b}] = mtu
	n.mtu[[2]netip.AddrPort{b, a}] = mtu
	n.mu.Unlock()
}

// Capture returns a channel that gets a copy of every datagram sent to
// to from now on, whether or not it arrives; copies that do not fit the
// channel are dropped.
func (n *Net) Capture(to netip.AddrPort) <-chan []byte {
	ch := make(chan []byte, 4096)
	n.mu.Lock()
	n.taps = append(n.taps, tap{to: to, ch: ch})
	n.mu.Unlock()
	return ch
}

// Deliver queues p for the Conn bound to to, as if it had come off the
// wire; p.Addr is its source. It reports false when no Conn is bound to to.
func (n *Net) Deliver(to netip.AddrPort, p conn.Packet) bool {
	n.mu.Lock()
	c := n.conns[to]
	n.mu.Unlock()
	if c == nil {
		return false
	}
	n.enqueue(c, p)
	return true
}

// enqueue queues p for c, counted as pending until c's reader comes back
// for more after taking it.
func (n *Net) enqueue(c *Conn, p conn.Packet) {
	n.mu.Lock()
	if c.closed {
		n.mu.Unlock()
		return
	}
	c.queued++
	n.pending++
	n.mu.Unlock()
	c.in <- p
}

// settleLocked subtracts k from pending and wakes WaitIdle at zero.
func (n *Net) settleLocked(k int) {
	n.pending -= k
	if n.pending == 0 {
		for _, ch := range n.idle {
			close(ch)
		}
		n.idle = nil
	}
}

// WaitIdle waits until every packet sent to an open Conn has been read,
// and each reader that took some has come back to ReadBatch (so whatever
// the packets made it send is counted in turn), or until timeout passes;
// it reports whether the network went idle. Readers that stopped reading
// keep the network busy until their Conn is closed.
func (n *Net) WaitIdle(timeout time.Duration) bool {
	n.mu.Lock()
	if n.pending == 0 {
		n.mu.Unlock()
		return true
	}
	ch := make(chan struct{})
	n.idle = append(n.idle, ch)
	n.mu.Unlock()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-ch:
		return true
	case <-t.C:
		return false
	}
}

// Conn is one socket on a Net, implementing sleeve.PacketConn. It always
// claims GSO.
type Conn struct {
	net       *Net
	addr      netip.AddrPort
	in        chan conn.Packet
	fail      chan error // errors the next ReadBatches return, in order
	done      chan struct{}
	closeOnce sync.Once
	// Guarded by the Net's mu.
	closed bool
	queued int // packets in in, or taken by the last ReadBatch
	held   int // packets taken by the last ReadBatch
}

// FailRead makes a coming ReadBatch return err: the next one, or a
// blocked one at once. Errors queue up, one per call.
func (c *Conn) FailRead(err error) { c.fail <- err }

// GSO implements sleeve.PacketConn.
func (c *Conn) GSO() bool { return true }

// Close implements sleeve.PacketConn. Idempotent.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		close(c.done)
		c.net.mu.Lock()
		c.closed = true
		c.net.settleLocked(c.queued)
		c.queued, c.held = 0, 0
		c.net.mu.Unlock()
	})
	return nil
}

// taken records that the reader took k packets; the previous ones are
// done with, since the reader came back.
func (c *Conn) taken(k int) {
	c.net.mu.Lock()
	defer c.net.mu.Unlock()
	if c.closed {
		return
	}
	c.queued -= c.held
	c.net.settleLocked(c.held)
	c.held = k
}

// ReadBatch implements sleeve.PacketConn: it blocks for one packet, then
// takes what else is queued, up to len(pkts).
func (c *Conn) ReadBatch(pkts []conn.Packet) (int, error) {
	c.taken(0)
	var p conn.Packet
	select {
	case err := <-c.fail:
		return 0, err
	default:
	}
	select {
	case err := <-c.fail:
		return 0, err
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
			c.taken(n)
			return n, nil
		}
		select {
		case p = <-c.in:
		default:
			c.taken(n)
			return n, nil
		}
	}
}

// WriteBatch implements sleeve.PacketConn.
func (c *Conn) WriteBatch(pkts []conn.OutPacket) error {
	select {
	case <-c.done:
		return net.ErrClosed
	default:
	}
	for i := range pkts {
		c.write(&pkts[i])
	}
	return nil
}

func (c *Conn) write(p *conn.OutPacket) {
	var all []byte
	for _, b := range p.Bufs {
		all = append(all, b...)
	}
	seg := p.SegSize
	if seg == 0 {
		seg = len(all)
	}
	c.net.mu.Lock()
	dst := c.net.conns[p.Addr]
	key := [2]netip.AddrPort{c.addr, p.Addr}
	mtu, cut, gro := c.net.mtu[key], c.net.cut[key], c.net.gro
	var taps []chan []byte
	for _, t := range c.net.taps {
		if t.to == p.Addr {
			taps = append(taps, t.ch)
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
		return
	}
	if gro && p.SegSize > 0 && (mtu == 0 || seg <= mtu) {
		// As the real socket: at most 64 datagrams and one IPv4
		// packet's worth per GSO send, and so per GRO read.
		per := min(64, (65535-28)/seg) * seg
		for len(all) > 0 {
			n := min(per, len(all))
			c.net.enqueue(dst, conn.Packet{Buf: all[:n], Addr: c.addr, SegSize: seg})
			all = all[n:]
		}
		return
	}
	for len(all) > 0 {
		d := all[:min(seg, len(all))]
		all = all[len(d):]
		if mtu > 0 && len(d) > mtu {
			continue
		}
		c.net.enqueue(dst, conn.Packet{Buf: bytes.Clone(d), Addr: c.addr})
	}
}
