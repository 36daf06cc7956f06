package offload

import "encoding/binary"

// Fragmenter cuts an IPv4 packet without DF that is too large for the path
// into IPv4 fragments, as a router would, without copying payload: Next
// writes each fragment's virtio header (all zero: fragments carry no
// offload state) and headers, and returns its payload as a slice of the
// packet. Every fragment but the last carries the same payload length (a
// multiple of 8), so the encapsulated fragments form one GSO train.
//
// Options not marked "copied" are kept in the first fragment only; in the
// others they become NOPs, so every fragment has the same header length.
type Fragmenter struct {
	frame  []byte // Ethernet frame trimmed to the end of the IP packet
	l3     int
	ihl    int
	per    int // payload bytes per fragment
	off    int
	frag0  int // fragment offset (bytes) of the packet itself; 0 unless it is a fragment
	moreIn bool
	idx, n int
}

// Reset prepares to cut frame (virtio header, Ethernet frame holding an
// IPv4 packet without DF) into fragments of at most maxFrame bytes each,
// virtio header included. A partial L4 checksum (NEEDS_CSUM) is completed in place
// first: it must be whole before the packet is cut.
func (f *Fragmenter) Reset(frame []byte, maxFrame int) error {
	*f = Fragmenter{}
	if len(frame) < VnetHdrLen {
		return malformed("%d-byte frame has no virtio header", len(frame))
	}
	var h vnet
	h.decode(frame)
	if h.gsoType != GSONone {
		return malformed("cannot fragment a GSO frame")
	}
	eth := frame[VnetHdrLen:]
	l3, et, ok := l3(eth)
	if !ok || et != etherIPv4 || len(eth) < l3+ipv4MinLen || eth[l3]>>4 != 4 {
		return malformed("not an IPv4 frame")
	}
	ihl := int(eth[l3]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(eth[l3+2:]))
	if ihl < ipv4MinLen || total < ihl || l3+total > len(eth) {
		return malformed("IPv4 header length %d, total length %d in a %d-byte frame", ihl, total, len(eth))
	}
	ff := binary.BigEndian.Uint16(eth[l3+6:])
	if ff&0x4000 != 0 {
		return malformed("IPv4 packet has DF set")
	}
	f.per = (maxFrame - VnetHdrLen - l3 - ihl) &^ 7
	if f.per <= 0 {
		return malformed("%d bytes leave no room for fragment payload", maxFrame)
	}
	if h.flags&FlagNeedsCsum != 0 {
		start, field := int(h.csumStart), int(h.csumStart)+int(h.csumOffset)
		if start < l3+ihl || field+2 > l3+total {
			return malformed("checksum at %d+%d outside the packet", h.csumStart, h.csumOffset)
		}
		c := Checksum(eth[start:l3+total], 0)
		if c == 0 && eth[l3+9] == protoUDP {
			c = 0xffff
		}
		binary.BigEndian.PutUint16(eth[field:], c)
		frame[0] &^= FlagNeedsCsum
	}
	f.frame = eth[:l3+total]
	f.l3, f.ihl = l3, ihl
	f.frag0 = int(ff&0x1fff) * 8
	f.moreIn = ff&0x2000 != 0
	f.n = max(1, (total-ihl+f.per-1)/f.per)
	return nil
}

// HeaderLen is the length of what Next writes.
func (f *Fragmenter) HeaderLen() int { return VnetHdrLen + f.l3 + f.ihl }

// Count is the number of fragments.
func (f *Fragmenter) Count() int { return f.n }

// Next writes the next fragment's virtio header and headers into
// hdr[:HeaderLen()] and returns its payload; ok is false when done.
func (f *Fragmenter) Next(hdr []byte) (payload []byte, ok bool) {
	if f.idx >= f.n {
		return nil, false
	}
	l3, ihl := f.l3, f.ihl
	data := f.frame[l3+ihl:]
	plen := min(f.per, len(data)-f.off)
	last := f.idx == f.n-1
	h := hdr[:VnetHdrLen+l3+ihl]
	clear(h[:VnetHdrLen])
	d := h[VnetHdrLen:]
	copy(d, f.frame[:l3+ihl])
	ip := d[l3:]
	if f.idx > 0 {
		uncopiedToNOP(ip[ipv4MinLen:ihl])
	}
	binary.BigEndian.PutUint16(ip[2:], uint16(ihl+plen))
	ff := uint16((f.frag0 + f.off) / 8)
	if !last || f.moreIn {
		ff |= 0x2000
	}
	binary.BigEndian.PutUint16(ip[6:], ff)
	ip[10], ip[11] = 0, 0
	binary.BigEndian.PutUint16(ip[10:], Checksum(ip[:ihl], 0))
	payload = data[f.off : f.off+plen]
	f.off += plen
	f.idx++
	return payload, true
}

// uncopiedToNOP replaces IPv4 options without the "copied" bit by NOPs.
func uncopiedToNOP(opts []byte) {
	for i := 0; i < len(opts); {
		t := opts[i]
		switch {
		case t == 0: // end of options
			return
		case t == 1: // NOP
			i++
			continue
		}
		n := 2
		if i+1 < len(opts) {
			n = int(opts[i+1])
		}
		if n < 2 || i+n > len(opts) {
			n = len(opts) - i // malformed: blank the rest
			t = 0
		}
		if t&0x80 == 0 {
			for k := i; k < i+n; k++ {
				opts[k] = 1
			}
		}
		i += n
	}
}
