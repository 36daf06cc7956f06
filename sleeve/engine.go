package sleeve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"weavemesh.dev/weave/peer"
	"weavemesh.dev/weave/sleeve/conn"
	"weavemesh.dev/weave/sleeve/secure"
	"weavemesh.dev/weave/sleeve/wire"
)

// Device is the local end of the datapath: the TAP on the weave bridge.
// sleeve/tap.Device implements it. Write must be safe for concurrent use:
// both pipelines write to it.
type Device interface {
	// Read fills bufs[i][offset:] with frames (each a virtio_net_hdr then an
	// Ethernet frame) and sizes[i] with their lengths, returning the count.
	Read(bufs [][]byte, sizes []int, offset int) (int, error)
	// Write writes each bufs[i][offset:] as one frame.
	Write(bufs [][]byte, offset int) (int, error)
	Close() error
}

// PacketConn is the underlay socket; sleeve/conn.Conn implements it.
// WriteBatch must be safe for concurrent use: three goroutines send.
type PacketConn interface {
	ReadBatch(pkts []conn.Packet) (int, error)
	WriteBatch(pkts []conn.OutPacket) error
	GSO() bool
	Close() error
}

// Options configures an Engine.
type Options struct {
	Self       peer.Name  // required
	Device     Device     // required; the engine closes it
	Conn       PacketConn // required; the engine closes it
	Mesh       Mesh       // required: MAC table and routes
	OverlayMTU int        // required: MTU of the bridge and the endpoints

	// Queues are further TAP queues and sockets (sleeve/tap
	// Options.Queues, sleeve/conn ListenGroup); Device and Conn are the
	// first. Each pair runs its own send and receive pipeline, so flows
	// are processed in parallel; the kernel keeps every frame of a flow
	// on one TAP queue, and each socket's source port keeps its datagrams
	// on one socket of the receiver, so nothing is reordered. Optional;
	// the engine closes them.
	Queues []Queue

	// HeartbeatInterval is how often each link is checked (default 1s);
	// a link is down after LinkTimeout without an answer (default 4
	// intervals).
	HeartbeatInterval time.Duration
	LinkTimeout       time.Duration
	// OnLinkChange, if set, is called when a link goes up or down. It
	// runs on the engine's health goroutine and must not block.
	OnLinkChange func()
	// PathMTU returns the largest UDP payload the local route towards
	// addr allows (default: from the routing table, see RouteMTU).
	PathMTU func(addr netip.Addr) int
	// Secure, when set, seals every datagram (mesh password): sessions
	// are set up by handshakes with each neighbour.
	Secure *secure.Manager
	Logger *slog.Logger
	// Clock, if set, replaces the real clock for heartbeats, link
	// timeouts, probes and MAC learning (tests: sleevetest.Clock).
	Clock Clock
}

// Queue is a TAP queue and a socket that one send and one receive
// pipeline own.
type Queue struct {
	Device Device
	Conn   PacketConn
}

func (o *Options) validate() error {
	switch {
	case o.Self == peer.None || o.Self == peer.Broadcast:
		return errors.New("sleeve: Options.Self must be a real peer name")
	case o.Device == nil:
		return errors.New("sleeve: Options.Device is required")
	case o.Conn == nil:
		return errors.New("sleeve: Options.Conn is required")
	case o.Mesh == nil:
		return errors.New("sleeve: Options.Mesh is required")
	case o.OverlayMTU < 576 || o.OverlayMTU > 65000:
		return fmt.Errorf("sleeve: Options.OverlayMTU %d out of range 576-65000", o.OverlayMTU)
	}
	for i, q := range o.Queues {
		if q.Device == nil || q.Conn == nil {
			return fmt.Errorf("sleeve: Options.Queues[%d] needs both Device and Conn", i)
		}
	}
	if o.HeartbeatInterval <= 0 {
		o.HeartbeatInterval = time.Second
	}
	if o.LinkTimeout <= 0 {
		o.LinkTimeout = 4 * o.HeartbeatInterval
	}
	if o.PathMTU == nil {
		o.PathMTU = RouteMTU
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Clock == nil {
		o.Clock = realClock
	}
	return nil
}

// PeerInfo is what the engine needs to know of another peer.
type PeerInfo struct {
	Name peer.Name
	Addr netip.AddrPort // sleeve address on the underlay
}

// Engine runs the sleeve datapath. Create with New, then Start; Close stops
// it and waits for its goroutines. A pipeline that stops on an error closes
// Done and sets Err; Restart runs it again (run.go).
type Engine struct {
	o    Options
	self peer.Name
	log  *slog.Logger
	// qs are the TAP queues and sockets, Options.Device and Conn first.
	qs []Queue

	peers atomic.Pointer[map[peer.Name]*peerState]
	// kernel: the peers whose frames the kernel datapath carries (kernel.go).
	kernel atomic.Pointer[map[peer.Name]struct{}]
	drops  [numDrops]atomic.Uint64
	stats  counters

	limiter logLimiter
	icmp    icmpLimiter

	cancel context.CancelFunc
	wg     sync.WaitGroup
	close  sync.Once

	run runState
}

type counters struct {
	txFrames, rxFrames  atomic.Uint64
	txBytes, rxBytes    atomic.Uint64
	txDgrams, rxDgrams  atomic.Uint64
	relayed, floodedOut atomic.Uint64
	icmpSent, cutOut    atomic.Uint64 // cutOut: super-frames and packets cut into several datagrams
	coalesced, merged   atomic.Uint64 // the receive pipeline's Coalescer totals
	aqmMarked           atomic.Uint64 // packets marked ECN CE by queue management (aqm.go)
}

// New validates o and returns an engine that is not yet running.
func New(o Options) (*Engine, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	e := &Engine{o: o, self: o.Self, log: o.Logger.With("component", "sleeve")}
	e.qs = append([]Queue{{Device: o.Device, Conn: o.Conn}}, o.Queues...)
	e.run.running = make([]bool, len(e.qs)*int(pipesPerQueue))
	empty := map[peer.Name]*peerState{}
	e.peers.Store(&empty)
	e.run.done = make(chan struct{})
	return e, nil
}

// SetPeers replaces the set of peers the engine talks to. Link state of
// peers that stay is kept.
func (e *Engine) SetPeers(infos []PeerInfo) {
	old := maps.Clone(*e.peers.Load())
	next := make(map[peer.Name]*peerState, len(infos))
	now := e.o.Clock.Now().UnixNano()
	for _, in := range infos {
		if in.Name == e.self {
			continue
		}
		p, ok := old[in.Name]
		delete(old, in.Name)
		if ok && p.addr == in.Addr {
			next[in.Name] = p
			continue
		}
		next[in.Name] = newPeerState(in, now, e.o.PathMTU(in.Addr.Addr()))
	}
	e.peers.Store(&next)
	if e.o.Secure != nil {
		for gone := range old {
			e.o.Secure.Forget(gone)
		}
	}
}

func (e *Engine) peer(n peer.Name) *peerState { return (*e.peers.Load())[n] }

// Pipelines returns the number of send (and of receive) pipelines.
func (e *Engine) Pipelines() int { return len(e.qs) }

// send hands a batch to socket c and accounts for per-packet errors.
// Packets left empty (dropped while sealing) are moved out of the way.
func (e *Engine) send(c PacketConn, pkts []conn.OutPacket, to []*peerState) {
	w := 0
	for i := range pkts {
		if len(pkts[i].Bufs) > 0 {
			pkts[w], pkts[i] = pkts[i], pkts[w]
			to[w], to[i] = to[i], to[w]
			w++
		}
	}
	pkts, to = pkts[:w], to[:w]
	if len(pkts) == 0 {
		return
	}
	err := c.WriteBatch(pkts)
	if err != nil && !isClosed(err) {
		e.drop(DropSend, err)
	}
	for i := range pkts {
		if pkts[i].Err == nil {
			e.stats.txDgrams.Add(1)
			continue
		}
		if isMsgSize(pkts[i].Err) {
			to[i].tooBigOnSend(pkts[i].SegSize, packetLen(&pkts[i]))
		}
		e.drop(DropSend, pkts[i].Err)
	}
}

func packetLen(p *conn.OutPacket) int {
	n := 0
	for _, b := range p.Bufs {
		n += len(b)
	}
	return n
}

// overlayMTUTo returns the largest IP packet the path to p carries in one
// datagram, capped at the overlay MTU.
func (e *Engine) overlayMTUTo(p *peerState) int {
	return min(maxFrameData(e.payloadMTU(p))-wire.VnetHdrLen-ethHeaderLen, e.o.OverlayMTU)
}

const ethHeaderLen = 14

// maxFrameData is the frame data (virtio header included) one datagram of
// payload bytes can carry.
func maxFrameData(payload int) int { return payload - wire.HeaderLen - wire.FrameLen }

// overhead is what sealing adds to each datagram to p.
func (e *Engine) overhead(p *peerState) int {
	if e.o.Secure == nil || e.o.Secure.Plain(p.name) {
		return 0
	}
	return secure.Overhead
}

// payloadMTU is the largest datagram, before sealing, the path to p takes.
func (e *Engine) payloadMTU(p *peerState) int {
	return int(p.pmtu.Load()) - e.overhead(p)
}

// Cipher names the cipher traffic to p is sealed with, or "" when it is
// not sealed.
func (e *Engine) Cipher(p peer.Name) string {
	if e.o.Secure == nil {
		return ""
	}
	s := e.o.Secure.Current(p)
	if s == nil || s.Plain() {
		return ""
	}
	return s.Cipher().String()
}

// Encrypted reports whether traffic to p is sealed.
func (e *Engine) Encrypted(p peer.Name) bool {
	return e.o.Secure != nil && !e.o.Secure.Plain(p)
}
