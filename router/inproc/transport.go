package inproc

import (
	"io"
	"log"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// countingTransport is memberlist's own network transport, counting the
// bytes this router sends: datagrams (probes, gossip) and what it writes
// on streams (push-pull, reliable sends), whichever side opened them.
type countingTransport struct {
	*memberlist.NetTransport
	sent    *atomic.Uint64
	streams chan net.Conn
	done    chan struct{}
	once    sync.Once
	wg      sync.WaitGroup // the stream relay
}

var _ memberlist.NodeAwareTransport = (*countingTransport)(nil)

// newCountingTransport binds addr:port (tcp+udp) and counts into sent.
func newCountingTransport(addr string, port int, sent *atomic.Uint64) (*countingTransport, error) {
	nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{
		BindAddrs: []string{addr}, BindPort: port, Logger: log.New(io.Discard, "", 0),
	})
	if err != nil {
		return nil, err
	}
	t := &countingTransport{NetTransport: nt, sent: sent, streams: make(chan net.Conn), done: make(chan struct{})}
	t.wg.Add(1)
	go t.relay()
	return t, nil
}

// relay hands accepted streams on, counting what is written to them.
func (t *countingTransport) relay() {
	defer t.wg.Done()
	in := t.NetTransport.StreamCh()
	for {
		select {
		case c := <-in:
			select {
			case t.streams <- &countingConn{Conn: c, sent: t.sent}:
			case <-t.done:
				c.Close()
				return
			}
		case <-t.done:
			return
		}
	}
}

func (t *countingTransport) StreamCh() <-chan net.Conn { return t.streams }

func (t *countingTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	t.sent.Add(uint64(len(b)))
	return t.NetTransport.WriteTo(b, addr)
}

func (t *countingTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	t.sent.Add(uint64(len(b)))
	return t.NetTransport.WriteToAddress(b, a)
}

func (t *countingTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	c, err := t.NetTransport.DialTimeout(addr, timeout)
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, sent: t.sent}, nil
}

func (t *countingTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	c, err := t.NetTransport.DialAddressTimeout(a, timeout)
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, sent: t.sent}, nil
}

func (t *countingTransport) Shutdown() error {
	err := t.NetTransport.Shutdown()
	t.once.Do(func() { close(t.done) })
	t.wg.Wait()
	return err
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

// tune is router i's memberlist tuning: the mesh's, then, when bytes are
// counted, the counting transport on the router's address.
func (m *Mesh) tune(i int) func(*memberlist.Config) {
	if !m.opts.CountBytes {
		return m.opts.Tune
	}
	return func(c *memberlist.Config) {
		if m.opts.Tune != nil {
			m.opts.Tune(c)
		}
		t, err := newCountingTransport(m.Addr(i).String(), m.opts.Port, &m.sent[i])
		if err != nil {
			// memberlist binds the port itself and reports why it cannot.
			return
		}
		c.Transport = t
	}
}

// BytesSent is how many gossip bytes router i has sent in all its runs
// (Options.CountBytes).
func (m *Mesh) BytesSent(i int) uint64 { return m.sent[i].Load() }

// TotalBytesSent sums BytesSent over the mesh.
func (m *Mesh) TotalBytesSent() uint64 {
	var n uint64
	for i := range m.sent {
		n += m.sent[i].Load()
	}
	return n
}
