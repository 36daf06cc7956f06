package sleeve

import (
	"encoding/binary"
	"math"
	"time"

	"weavemesh.dev/weave/sleeve/wire"
)

// Queue management on the receive side. Under a full-rate transfer the
// standing queue of the sleeve is the receiving socket's buffer: the
// receive pipeline is the slowest stage (it merges segments into
// super-frames), and its 8 MiB buffer, sized so that bursts are not lost,
// held several milliseconds of traffic in front of every other packet,
// pings included. A CoDel controller (RFC 8289) on each receive pipeline
// keeps that queue short without making the buffer small: it takes each
// datagram's sojourn from the kernel's receive timestamp, and once the
// sojourn has stayed above aqmTarget for aqmInterval it signals
// congestion to the inner flows at CoDel's rising rate until the sojourn
// falls below target again. A signal sets ECN CE on the next ECN-capable
// IPv4 or IPv6 packet, or else drops the next TCP segment that carries
// data; since every datagram is one segment, the sender loses one
// segment and slows down, as it would behind a kernel router's CoDel.
const (
	// aqmTarget is the acceptable standing sojourn: a few batches' worth
	// at full rate, and above the scheduling noise of a busy host.
	aqmTarget = 500 * time.Microsecond
	// aqmInterval is how long the sojourn must stay above target before
	// the first signal, about the inner flows' round trip under load.
	aqmInterval = 10 * time.Millisecond
)

// codel is one receive pipeline's controller; it belongs to the
// pipeline's goroutine. Times are unix nanoseconds.
type codel struct {
	target, interval int64
	firstAbove       int64 // when the sojourn will have been above target for an interval; 0: below
	dropNext         int64 // when the next signal is due while dropping
	count, lastCount int   // signals in this dropping state, and in the last
	dropping         bool
}

func newCodel(target, interval time.Duration) codel {
	return codel{target: int64(target), interval: int64(interval)}
}

// dequeue is told the sojourn of each datagram as it is read, and whether
// the queue is empty after it, and reports whether to signal congestion.
func (c *codel) dequeue(now, sojourn int64, empty bool) bool {
	ok := c.okToSignal(now, sojourn, empty)
	if c.dropping {
		if !ok {
			c.dropping = false
			return false
		}
		if now < c.dropNext {
			return false
		}
		c.count++
		c.dropNext = c.controlLaw(c.dropNext)
		return true
	}
	if !ok {
		return false
	}
	c.dropping = true
	// Back in the dropping state soon after leaving it: resume near the
	// rate that controlled the queue last time.
	if d := c.count - c.lastCount; d > 1 && now-c.dropNext < 16*c.interval {
		c.count = d
	} else {
		c.count = 1
	}
	c.lastCount = c.count
	c.dropNext = c.controlLaw(now)
	return true
}

func (c *codel) okToSignal(now, sojourn int64, empty bool) bool {
	if sojourn < c.target || empty {
		// A queue that a read emptied is no standing queue, however
		// long its few datagrams waited for a descheduled reader.
		c.firstAbove = 0
		return false
	}
	if c.firstAbove == 0 {
		c.firstAbove = now + c.interval
		return false
	}
	return now >= c.firstAbove
}

func (c *codel) controlLaw(t int64) int64 {
	return t + int64(float64(c.interval)/math.Sqrt(float64(c.count)))
}

// congestion is what a signal did to a frame.
type congestion int

const (
	congestionNone   congestion = iota // the frame cannot carry it; try the next
	congestionMarked                   // ECN CE set
	congestionDrop                     // a TCP segment with data: drop it
)

// Offsets in a frame as the receive pipeline sees it: vnet_hdr, then
// Ethernet.
const (
	aqmIP        = wire.VnetHdrLen + ethHeaderLen
	etherTypeIP4 = 0x0800
	etherTypeIP6 = 0x86dd
	protoTCP     = 6
	ecnMask      = 0x03
	ecnCE        = 0x03
)

// signal applies a congestion signal to frame: ECN CE on an ECN-capable
// IP packet (the IPv4 header checksum updated), a drop for a TCP segment
// with data, nothing for anything else (ARP, pure ACKs, ICMP, ...).
func signal(frame []byte) congestion {
	if len(frame) < aqmIP+40 {
		return congestionNone
	}
	ip := frame[aqmIP:]
	switch binary.BigEndian.Uint16(frame[aqmIP-2:]) {
	case etherTypeIP4:
		ihl := int(ip[0]&0x0f) * 4
		if ip[0]>>4 != 4 || ihl < 20 {
			return congestionNone
		}
		if tos := ip[1]; tos&ecnMask != 0 {
			if tos&ecnMask == ecnCE {
				return congestionMarked // already marked upstream
			}
			old := binary.BigEndian.Uint16(ip[0:2])
			ip[1] = tos | ecnCE
			csumUpdate(ip[10:12], old, binary.BigEndian.Uint16(ip[0:2]))
			return congestionMarked
		}
		if ip[9] != protoTCP || len(ip) < ihl+20 {
			return congestionNone
		}
		total := int(binary.BigEndian.Uint16(ip[2:4]))
		if total > len(ip) {
			total = len(ip) // a super-frame's IPv4 length may be stale
		}
		return tcpData(ip[ihl:total])
	case etherTypeIP6:
		if ip[0]>>4 != 6 {
			return congestionNone
		}
		if ecn := (ip[1] >> 4) & ecnMask; ecn != 0 {
			ip[1] |= ecnCE << 4
			return congestionMarked
		}
		if ip[6] != protoTCP {
			return congestionNone // extension headers: leave them be
		}
		return tcpData(ip[40:])
	}
	return congestionNone
}

// tcpData reports congestionDrop for a TCP segment that carries data.
func tcpData(tcp []byte) congestion {
	if len(tcp) < 20 {
		return congestionNone
	}
	if off := int(tcp[12]>>4) * 4; off >= 20 && len(tcp) > off {
		return congestionDrop
	}
	return congestionNone
}

// csumUpdate adjusts the Internet checksum at sum for a 16-bit word that
// changed from old to new (RFC 1624, eqn. 3).
func csumUpdate(sum []byte, old, new uint16) {
	s := uint32(^binary.BigEndian.Uint16(sum)) + uint32(^old) + uint32(new)
	s = (s & 0xffff) + (s >> 16)
	s = (s & 0xffff) + (s >> 16)
	binary.BigEndian.PutUint16(sum, ^uint16(s))
}
