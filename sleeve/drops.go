package sleeve

import (
	"errors"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"weavemesh.dev/weave/sleeve/wire"
)

// DropReason says why a datagram or frame was not delivered.
type DropReason int

const (
	DropTruncated   DropReason = iota // datagram shorter than its header says
	DropVersion                       // unsupported protocol version
	DropType                          // unknown datagram type
	DropFrame                         // malformed frame record
	DropUnknownPeer                   // source peer not in the mesh
	DropSelf                          // our own datagram came back
	DropNoRoute                       // no path to the destination peer
	DropTTL                           // relayed too many times
	DropOffload                       // super-frame that cannot be cut into packets
	DropTooBig                        // frame larger than the path; ICMP sent
	DropRunt                          // frame too short to be Ethernet
	DropSend                          // the socket refused a datagram
	DropTapWrite                      // the TAP refused a frame
	DropNoSession                     // encrypted mesh, no session with the peer yet
	DropAuth                          // sealed datagram failed authentication
	DropReplay                        // sealed datagram seen before, or too old
	DropUnencrypted                   // plaintext from an untrusted address in an encrypted mesh
	DropHandshake                     // malformed or unauthentic handshake
	DropAQM                           // TCP segment dropped by queue management (aqm.go): a congestion signal, not a fault
	numDrops
)

var dropNames = [numDrops]string{
	"truncated", "bad_version", "bad_type", "bad_frame", "unknown_peer", "own_datagram",
	"no_route", "ttl_expired", "bad_offload", "too_big", "runt", "send_error", "tap_write_error",
	"no_session", "auth_failed", "replay", "unencrypted", "bad_handshake", "aqm",
}

func (r DropReason) String() string { return dropNames[r] }

// drop counts one drop and logs it, at most once per reason per 10s.
func (e *Engine) drop(r DropReason, err error) {
	n := e.drops[r].Add(1)
	if e.limiter.allow(r) {
		args := []any{"reason", r.String(), "total", n}
		if err != nil {
			args = append(args, "err", err)
		}
		e.log.Warn("dropped", args...)
	}
}

// dropDecode maps a wire decoding error to its reason.
func (e *Engine) dropDecode(err error) {
	switch {
	case errors.Is(err, wire.ErrVersion):
		e.drop(DropVersion, err)
	case errors.Is(err, wire.ErrType):
		e.drop(DropType, err)
	case errors.Is(err, wire.ErrFrame):
		e.drop(DropFrame, err)
	default:
		e.drop(DropTruncated, err)
	}
}

// Drops the kernel counts, for the devices and sockets that report them
// (sleeve/tap and sleeve/conn do): datagrams lost because a socket's
// receive buffer was full, and frames lost because the TAP's queues
// towards the engine were.
const (
	DropRcvbuf    = "rcvbuf"
	DropQueueFull = "queue_full"
)

type rcvbufCounter interface{ RcvbufDrops() uint64 }

type queueDropCounter interface{ QueueDrops() (uint64, error) }

// Drops returns the drop counters by reason name: the engine's own, and
// DropRcvbuf and DropQueueFull from the kernel.
func (e *Engine) Drops() map[string]uint64 {
	m := make(map[string]uint64, numDrops+2)
	for i := range e.drops {
		if v := e.drops[i].Load(); v > 0 {
			m[dropNames[i]] = v
		}
	}
	var rcvbuf uint64
	for _, q := range e.qs {
		if c, ok := q.Conn.(rcvbufCounter); ok {
			rcvbuf += c.RcvbufDrops()
		}
	}
	if rcvbuf > 0 {
		m[DropRcvbuf] = rcvbuf
	}
	// The queues of one TAP share the interface's counter.
	if d, ok := e.qs[0].Device.(queueDropCounter); ok {
		if v, err := d.QueueDrops(); err == nil && v > 0 {
			m[DropQueueFull] = v
		}
	}
	return m
}

type logLimiter struct {
	last [numDrops]atomic.Int64
}

func (l *logLimiter) allow(r DropReason) bool {
	now := time.Now().UnixNano()
	prev := l.last[r].Load()
	return now-prev >= int64(10*time.Second) && l.last[r].CompareAndSwap(prev, now)
}

// icmpLimiter caps ICMP errors like a router does, per 100 ms window.
type icmpLimiter struct {
	window atomic.Int64
	count  atomic.Int32
}

const icmpPerWindow = 100

func (l *icmpLimiter) allow() bool {
	w := time.Now().UnixNano() / int64(100*time.Millisecond)
	if l.window.Load() != w {
		l.window.Store(w)
		l.count.Store(0)
	}
	return l.count.Add(1) <= icmpPerWindow
}

var errClosed = net.ErrClosed

func isClosed(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrClosed)
}

func isMsgSize(err error) bool { return errors.Is(err, syscall.EMSGSIZE) }
