package dns

import (
	"bytes"
	"log/slog"
	"net"
	"net/netip"
	"sync"

	mdns "github.com/miekg/dns"
)

// Sizes of the UDP loop.
const (
	udpBatch = 64 // datagrams per recvmmsg or sendmmsg
	// maxSlowInFlight bounds the queries on the full path (forwarding)
	// at once per socket; beyond it queries are dropped and clients retry.
	maxSlowInFlight = 1024
)

// udpLoop serves one UDP socket bound to a specific address: one
// goroutine reads batches of queries, answers those the fast path can at
// once and writes the answers back in one batch; the rest go, each in a
// goroutine of their own, through the full path.
type udpLoop struct {
	h    *Handler
	log  *slog.Logger
	conn *net.UDPConn
	bc   *batchConn
	out  [][]byte
	sc   fastScratch
	slow chan struct{}   // semaphore of full-path goroutines
	wg   *sync.WaitGroup // the Server's: full-path goroutines
	done chan struct{}   // closed when run returns
}

func newUDPLoop(h *Handler, log *slog.Logger, conn *net.UDPConn, wg *sync.WaitGroup) (*udpLoop, error) {
	bc, err := newBatchConn(conn, udpBatch, maxUDPQuery)
	if err != nil {
		return nil, err
	}
	l := &udpLoop{h: h, log: log, conn: conn, bc: bc, out: make([][]byte, udpBatch),
		slow: make(chan struct{}, maxSlowInFlight), wg: wg, done: make(chan struct{})}
	for i := range l.out {
		l.out[i] = make([]byte, maxFastAnswer)
	}
	return l, nil
}

// run serves until the socket is closed.
func (l *udpLoop) run() {
	defer close(l.done)
	for {
		n, err := l.bc.read()
		if err != nil {
			if errClosedConn(err) {
				return
			}
			l.log.Debug("dns: read queries", "addr", l.conn.LocalAddr(), "err", err)
			continue
		}
		for i := range n {
			q := l.bc.data(i)
			if k, ok := l.h.answerFast(q, l.out[i], &l.sc); ok {
				l.bc.queue(i, l.out[i][:k])
				continue
			}
			l.full(i, q)
		}
		if _, err := l.bc.flush(); err != nil {
			if errClosedConn(err) {
				return
			}
			l.log.Debug("dns: write answers", "addr", l.conn.LocalAddr(), "err", err)
		}
	}
}

// full hands query i to the full path in a goroutine.
func (l *udpLoop) full(i int, q []byte) {
	to, err := l.bc.from(i)
	if err != nil {
		return
	}
	select {
	case l.slow <- struct{}{}:
	default:
		l.log.Debug("dns: too many queries in flight; dropping one", "from", to)
		return
	}
	m := bytes.Clone(q)
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		defer func() { <-l.slow }()
		l.h.serveRaw(m, &udpWriter{conn: l.conn, to: to})
	}()
}

// udpWriter is the mdns.ResponseWriter of a query on the full path.
type udpWriter struct {
	conn *net.UDPConn
	to   netip.AddrPort
}

func (w *udpWriter) LocalAddr() net.Addr  { return w.conn.LocalAddr() }
func (w *udpWriter) RemoteAddr() net.Addr { return net.UDPAddrFromAddrPort(w.to) }
func (w *udpWriter) WriteMsg(m *mdns.Msg) error {
	b, err := m.Pack()
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}
func (w *udpWriter) Write(b []byte) (int, error) { return w.conn.WriteToUDPAddrPort(b, w.to) }
func (w *udpWriter) Close() error                { return nil }
func (w *udpWriter) TsigStatus() error           { return nil }
func (w *udpWriter) TsigTimersOnly(bool)         {}
func (w *udpWriter) Hijack()                     {}
