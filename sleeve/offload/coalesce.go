package offload

import (
	"bytes"
	"encoding/binary"
)

// Coalescer limits.
const (
	// MaxQueued is how many frames a Coalescer holds before Full reports
	// true and the caller must write them out.
	MaxQueued = 256
	// maxBufs bounds the merge buffers (one per super-frame being built,
	// MaxFrame bytes each, allocated on first use).
	maxBufs = 24
	// maxOpen is how many flows are candidates for merging at once; a
	// segment of any other flow starts a new super-frame.
	maxOpen = 8
)

// Coalescer merges consecutive in-order TCP segments of one flow, received
// in one batch, into super-frames (receive offload, GRO, in user space), and
// keeps every other frame as it is, in arrival order. A segment is merged
// into the super-frame of its flow being built when all of these hold:
//
//   - both carry a partial checksum (NEEDS_CSUM at the TCP header, no GSO),
//     the form Segmenter produces, and an untagged Ethernet header;
//   - IPv4 without options or fragmentation, or IPv6 without extension
//     headers, and the IP length matches the frame;
//   - the Ethernet header, the addresses, ports, TOS/traffic class and flow
//     label, TTL/hop limit, DF bit, IPv4 ID (one more than the last),
//     acknowledgement number, window, urgent pointer and TCP options are
//     the same;
//   - the flags are ACK (with ECE or not, the same as the super-frame's)
//     and PSH only; FIN, SYN, RST, URG and CWR segments are never merged;
//   - the sequence number follows on, the super-frame has no PSH yet, no
//     segment before was shorter than the first, this one is not longer,
//     and the result stays within a 64 KiB IP packet.
//
// A merged super-frame has the first segment's headers, with the lengths,
// the IPv4 header checksum and the partial TCP checksum redone, PSH if its
// last segment had it, and a virtio header with NEEDS_CSUM and gso_type
// TCPv4 or TCPv6, gso_size the first segment's payload length. The segments
// of a flow stay in order relative to each other; different flows may be
// reordered relative to each other, as GRO does.
type Coalescer struct {
	items []item
	open  [maxOpen]int // indices of items still accepting segments; -1 = none
	bufs  [][]byte     // merge buffers, allocated on first use
	free  []int        // indices into bufs not in use
	out   [][]byte
	// Merged counts segments merged into a super-frame (not the first
	// of each); Coalesced counts super-frames built.
	Merged, Coalesced uint64
}

// item is one frame to write: a frame as received, or a super-frame being
// built in bufs[buf].
type item struct {
	frame   []byte
	buf     int // index into bufs, or -1 while frame is the received frame
	l4, pay int // offsets (from the virtio header) of the TCP header and the payload
	v6      bool
	gso     int    // payload of the first segment
	nextSeq uint32 // sequence number the next segment must have
	nextID  uint16
	psh     bool
	short   bool // a segment shorter than gso was merged: nothing may follow
	segs    int
}

// NewCoalescer returns an empty Coalescer.
func NewCoalescer() *Coalescer {
	c := &Coalescer{
		items: make([]item, 0, MaxQueued),
		out:   make([][]byte, 0, MaxQueued),
		free:  make([]int, 0, maxBufs),
	}
	for i := range c.open {
		c.open[i] = -1
	}
	return c
}

// Full reports whether the Coalescer holds MaxQueued frames; the caller
// then takes them with Frames and calls Reset before adding more.
func (c *Coalescer) Full() bool { return len(c.items) == cap(c.items) }

// Len is the number of frames queued.
func (c *Coalescer) Len() int { return len(c.items) }

// Add queues frame (virtio header and Ethernet frame). The Coalescer keeps
// a reference to frame until Reset: the caller must not reuse it before.
func (c *Coalescer) Add(frame []byte) {
	if c.Full() {
		return
	}
	var s seg
	if !s.parse(frame) {
		// A frame of a flow being merged (a FIN, a pure ACK) ends that
		// flow's super-frame, so nothing later overtakes it.
		if s.tcpFlow(frame) {
			for i, idx := range c.open {
				if idx >= 0 && sameFlow(&c.items[idx], frame, &s) {
					c.open[i] = -1
				}
			}
		}
		c.items = append(c.items, item{frame: frame, buf: -1})
		return
	}
	slot := -1
	for i, idx := range c.open {
		if idx < 0 {
			if slot < 0 {
				slot = i
			}
			continue
		}
		it := &c.items[idx]
		if !sameFlow(it, frame, &s) {
			continue
		}
		if c.merge(it, frame, &s) {
			return
		}
		slot = i // this item is done: the new one replaces it
		break
	}
	if slot < 0 {
		// Every slot is taken by other flows: evict the oldest.
		slot = 0
		for i, idx := range c.open {
			if idx < c.open[slot] {
				slot = i
			}
		}
	}
	c.open[slot] = len(c.items)
	c.items = append(c.items, item{
		frame: frame, buf: -1, l4: s.l4, pay: s.pay, v6: s.v6, gso: s.plen,
		nextSeq: s.seq + uint32(s.plen), nextID: s.id + 1, psh: s.flags&tcpPSH != 0, segs: 1,
	})
}

// seg is a parsed merge candidate.
type seg struct {
	l4, pay int // offsets from the start of the virtio header
	plen    int
	v6      bool
	seq     uint32
	id      uint16
	flags   uint8
}

// parse reports whether frame is a TCP segment the Coalescer may merge.
func (s *seg) parse(f []byte) bool {
	const eth = VnetHdrLen + ethLen
	if len(f) < eth+ipv4MinLen+tcpMinLen || len(f) > MaxFrame || f[0] != FlagNeedsCsum || f[1] != GSONone {
		return false
	}
	var l4 int
	switch binary.BigEndian.Uint16(f[VnetHdrLen+12:]) {
	case etherIPv4:
		ip := f[eth:]
		if ip[0] != 0x45 || int(binary.BigEndian.Uint16(ip[2:])) != len(ip) ||
			binary.BigEndian.Uint16(ip[6:])&0x3fff != 0 || ip[9] != protoTCP {
			return false
		}
		s.v6, s.id = false, binary.BigEndian.Uint16(ip[4:])
		l4 = eth + ipv4MinLen
	case etherIPv6:
		ip := f[eth:]
		if len(ip) < ipv6Len+tcpMinLen || ip[0]>>4 != 6 || int(binary.BigEndian.Uint16(ip[4:])) != len(ip)-ipv6Len || ip[6] != protoTCP {
			return false
		}
		s.v6, s.id = true, 0
		l4 = eth + ipv6Len
	default:
		return false
	}
	csumStart := int(binary.LittleEndian.Uint16(f[6:]))
	if csumStart != l4-VnetHdrLen || binary.LittleEndian.Uint16(f[8:]) != tcpCsumOff {
		return false
	}
	doff := int(f[l4+12]>>4) * 4
	if doff < tcpMinLen || l4+doff >= len(f) {
		return false // bad offset, or no payload
	}
	s.flags = f[l4+13]
	if s.flags&^(tcpPSH|tcpECE) != tcpACK {
		return false
	}
	s.l4, s.pay = l4, l4+doff
	s.plen = len(f) - s.pay
	s.seq = binary.BigEndian.Uint32(f[l4+4:])
	return true
}

// tcpFlow reports whether f is an untagged TCP packet with room for its
// ports, filling s.v6 and s.l4 for sameFlow.
func (s *seg) tcpFlow(f []byte) bool {
	const eth = VnetHdrLen + ethLen
	if len(f) < eth+ipv4MinLen+4 {
		return false
	}
	switch binary.BigEndian.Uint16(f[VnetHdrLen+12:]) {
	case etherIPv4:
		s.v6, s.l4 = false, eth+ipv4MinLen
		return f[eth] == 0x45 && f[eth+9] == protoTCP
	case etherIPv6:
		s.v6, s.l4 = true, eth+ipv6Len
		return len(f) >= eth+ipv6Len+4 && f[eth]>>4 == 6 && f[eth+6] == protoTCP
	}
	return false
}

// sameFlow reports whether the segment f belongs to it's flow: same
// Ethernet header, IP version, addresses and ports.
func sameFlow(it *item, f []byte, s *seg) bool {
	a := it.frame
	if it.v6 != s.v6 || it.l4 != s.l4 || !bytes.Equal(a[VnetHdrLen:VnetHdrLen+ethLen], f[VnetHdrLen:VnetHdrLen+ethLen]) {
		return false
	}
	ip := VnetHdrLen + ethLen
	if s.v6 {
		if !bytes.Equal(a[ip+8:ip+40], f[ip+8:ip+40]) {
			return false
		}
	} else if !bytes.Equal(a[ip+12:ip+20], f[ip+12:ip+20]) {
		return false
	}
	return bytes.Equal(a[s.l4:s.l4+4], f[s.l4:s.l4+4])
}

// merge appends segment f to it if the rules allow, reporting whether it
// did.
func (c *Coalescer) merge(it *item, f []byte, s *seg) bool {
	a := it.frame
	ip := VnetHdrLen + ethLen
	if s.v6 {
		if !bytes.Equal(a[ip:ip+4], f[ip:ip+4]) || a[ip+7] != f[ip+7] {
			return false
		}
	} else if a[ip+1] != f[ip+1] || a[ip+6] != f[ip+6] || a[ip+8] != f[ip+8] || s.id != it.nextID {
		return false
	}
	l4 := s.l4
	if it.pay != s.pay || it.psh || it.short || s.seq != it.nextSeq || s.plen > it.gso ||
		a[l4+12] != f[l4+12] || (a[l4+13]^s.flags)&^tcpPSH != 0 ||
		!bytes.Equal(a[l4+8:l4+12], f[l4+8:l4+12]) || // ack
		!bytes.Equal(a[l4+14:l4+16], f[l4+14:l4+16]) || // window
		!bytes.Equal(a[l4+18:s.pay], f[l4+18:s.pay]) { // urgent pointer, options
		return false
	}
	if len(a)+s.plen-ip > maxIPLen+boolInt(s.v6)*ipv6Len {
		return false
	}
	if it.buf < 0 {
		b := c.getBuf()
		if b < 0 {
			return false
		}
		it.buf = b
		it.frame = append(c.bufs[b][:0], a...)
	}
	it.frame = append(it.frame, f[s.pay:]...)
	it.nextSeq += uint32(s.plen)
	it.nextID++
	it.segs++
	it.psh = s.flags&tcpPSH != 0
	it.short = s.plen < it.gso
	c.Merged++
	return true
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (c *Coalescer) getBuf() int {
	if n := len(c.free); n > 0 {
		b := c.free[n-1]
		c.free = c.free[:n-1]
		return b
	}
	if len(c.bufs) == maxBufs {
		return -1
	}
	c.bufs = append(c.bufs, make([]byte, 0, MaxFrame))
	return len(c.bufs) - 1
}

// Frames finishes the super-frames and returns every queued frame in
// order. The slice and the frames are valid until Reset.
func (c *Coalescer) Frames() [][]byte {
	c.out = c.out[:0]
	for i := range c.items {
		it := &c.items[i]
		if it.segs > 1 {
			finish(it)
			c.Coalesced++
		}
		c.out = append(c.out, it.frame)
	}
	for i := range c.open {
		c.open[i] = -1
	}
	return c.out
}

// finish writes a merged item's headers for its full length.
func finish(it *item) {
	f := it.frame
	ip := f[VnetHdrLen+ethLen:]
	var addrSum uint64
	gsoType := uint8(GSOTCPv4)
	if it.v6 {
		gsoType = GSOTCPv6
		binary.BigEndian.PutUint16(ip[4:], uint16(len(ip)-ipv6Len))
		addrSum = sum(0, ip[8:40])
	} else {
		binary.BigEndian.PutUint16(ip[2:], uint16(len(ip)))
		ip[10], ip[11] = 0, 0
		binary.BigEndian.PutUint16(ip[10:], Checksum(ip[:ipv4MinLen], 0))
		addrSum = sum(0, ip[12:20])
	}
	if it.psh {
		f[it.l4+13] |= tcpPSH
	}
	binary.BigEndian.PutUint16(f[it.l4+tcpCsumOff:], pseudo(addrSum, protoTCP, len(f)-it.l4))
	v := vnet{
		flags: FlagNeedsCsum, gsoType: gsoType, hdrLen: uint16(it.pay - VnetHdrLen), gsoSize: uint16(it.gso),
		csumStart: uint16(it.l4 - VnetHdrLen), csumOffset: tcpCsumOff,
	}
	v.encode(f)
}

// Reset forgets every queued frame and returns the merge buffers.
func (c *Coalescer) Reset() {
	for i := range c.items {
		if b := c.items[i].buf; b >= 0 {
			c.free = append(c.free, b)
		}
	}
	clear(c.items)
	c.items = c.items[:0]
	clear(c.out)
	c.out = c.out[:0]
	for i := range c.open {
		c.open[i] = -1
	}
}
