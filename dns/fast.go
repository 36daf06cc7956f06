package dns

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"

	mdns "github.com/miekg/dns"
)

// The UDP fast path answers the queries that make up nearly all of the
// traffic (an A or AAAA of a name in the domain, a PTR of a known
// address) straight from the query's bytes into an answer buffer: no
// message objects, no allocation. Anything else (forwarding, errors,
// other types, compressed or unusual names) goes to the full path over
// miekg/dns messages, which gives the same answers for these queries.

// Sizes of the fast path.
const (
	maxFastAnswer = 4096 // answer buffer; larger EDNS0 sizes are capped to it
	headerLen     = 12
	optLen        = 11 // an OPT record without options
)

// DNS header bits.
const (
	bitQR = 1 << 15
	bitAA = 1 << 10
	bitTC = 1 << 9
	bitRD = 1 << 8
	bitRA = 1 << 7
	bitCD = 1 << 4
)

// fastScratch is the fast path's working space, one per serving
// goroutine.
type fastScratch struct {
	name  [256]byte // the question name, lower case, with dots
	addrs []netip.Addr
	names []string
}

// answerFast answers query q into out (at least maxFastAnswer bytes) and
// returns the answer's length, or false to leave the query to the full
// path.
func (h *Handler) answerFast(q, out []byte, sc *fastScratch) (int, bool) {
	if len(q) < headerLen || len(out) < maxFastAnswer {
		return 0, false
	}
	flags := binary.BigEndian.Uint16(q[2:])
	if flags&bitQR != 0 || (flags>>11)&0xf != mdns.OpcodeQuery {
		return 0, false
	}
	if binary.BigEndian.Uint16(q[4:]) != 1 || binary.BigEndian.Uint16(q[6:]) != 0 || binary.BigEndian.Uint16(q[8:]) != 0 {
		return 0, false
	}
	arcount := binary.BigEndian.Uint16(q[10:])
	if arcount > 1 {
		return 0, false
	}
	// The question name: plain labels of name characters only (no
	// compression, nothing to escape), lowered into sc.name.
	off, n := headerLen, 0
	for {
		if off >= len(q) {
			return 0, false
		}
		l := int(q[off])
		off++
		if l == 0 {
			break
		}
		if l > maxLabelLen || off+l > len(q) || n+l+1 > maxNameLen+1 {
			return 0, false
		}
		for _, c := range q[off : off+l] {
			if c >= 'A' && c <= 'Z' {
				c += 'a' - 'A'
			}
			if !nameChar(c) {
				return 0, false
			}
			sc.name[n] = c
			n++
		}
		sc.name[n] = '.'
		n++
		off += l
	}
	if n == 0 || off+4 > len(q) {
		return 0, false
	}
	qtype := binary.BigEndian.Uint16(q[off:])
	if binary.BigEndian.Uint16(q[off+2:]) != mdns.ClassINET {
		return 0, false
	}
	off += 4
	qEnd := off
	size, hasOpt, do := mdns.MinMsgSize, false, false
	if arcount == 1 {
		// EDNS0: an OPT record for the root, version 0, without options
		// (options, such as cookies, take the full path, which checks them).
		if off+optLen > len(q) || q[off] != 0 || binary.BigEndian.Uint16(q[off+1:]) != mdns.TypeOPT ||
			q[off+6] != 0 || binary.BigEndian.Uint16(q[off+9:]) != 0 {
			return 0, false
		}
		size = max(size, int(binary.BigEndian.Uint16(q[off+3:])))
		do = binary.BigEndian.Uint16(q[off+7:])&0x8000 != 0
		off += optLen
		hasOpt = true
	}
	if off != len(q) {
		return 0, false
	}
	size = min(size, len(out))
	name := sc.name[:n]

	rcode := mdns.RcodeSuccess
	var rrtype uint16
	switch {
	case (qtype == mdns.TypeA || qtype == mdns.TypeAAAA) && inDomainBytes(name, h.domain):
		var exists bool
		sc.addrs, exists = h.store.appendAddrsBytes(sc.addrs[:0], name)
		if string(name) == h.domain {
			exists = true
		}
		if !exists {
			rcode = mdns.RcodeNameError
		}
		as := sc.addrs[:0]
		for _, a := range sc.addrs {
			if a.Is4() == (qtype == mdns.TypeA) {
				as = append(as, a)
			}
		}
		for i := len(as) - 1; i > 0; i-- {
			j := rand.IntN(i + 1)
			as[i], as[j] = as[j], as[i]
		}
		sc.addrs = as
		rrtype = qtype
	case qtype == mdns.TypePTR && isReverse(name):
		addr, ok := reverseAddr(name)
		if !ok {
			return 0, false
		}
		sc.names = h.store.AppendNames(sc.names[:0], addr)
		if len(sc.names) == 0 {
			return 0, false // not ours: upstream may know it
		}
		rrtype = mdns.TypePTR
	default:
		return 0, false
	}

	// The answer: header, the question as asked, the records that fit.
	b := out[:headerLen]
	copy(b, q[:2]) // ID
	b = append(b, q[headerLen:qEnd]...)
	reserve := 0
	if hasOpt {
		reserve = optLen
	}
	an, tc := 0, false
	if rrtype == mdns.TypePTR {
		for _, nm := range sc.names {
			if len(b)+12+len(nm)+1+reserve > size {
				tc = true
				break
			}
			b = appendRRHeader(b, mdns.TypePTR, h.ttl, len(nm)+1)
			b = appendWireName(b, nm)
			an++
		}
	} else {
		for _, a := range sc.addrs {
			rdlen := 4
			if a.Is6() {
				rdlen = 16
			}
			if len(b)+12+rdlen+reserve > size {
				tc = true
				break
			}
			b = appendRRHeader(b, rrtype, h.ttl, rdlen)
			if a.Is4() {
				v := a.As4()
				b = append(b, v[:]...)
			} else {
				v := a.As16()
				b = append(b, v[:]...)
			}
			an++
		}
	}
	ns := 0
	if an == 0 && !tc {
		// NXDOMAIN or NODATA: the SOA lets resolvers cache the answer.
		if len(b)+len(h.soaWire)+reserve <= size {
			b = append(b, h.soaWire...)
			ns = 1
		} else {
			tc = true
		}
	}
	ar := 0
	if hasOpt {
		var optFlags byte
		if do {
			optFlags = 0x80
		}
		b = append(b, 0, byte(mdns.TypeOPT>>8), byte(mdns.TypeOPT), byte(ednsSize>>8), byte(ednsSize&0xff),
			0, 0, optFlags, 0, 0, 0)
		ar = 1
	}
	rflags := uint16(bitQR|bitAA) | flags&(bitRD|bitCD) | uint16(rcode)
	if h.fwd != nil {
		rflags |= bitRA
	}
	if tc {
		rflags |= bitTC
		h.metrics.truncated.Add(1)
	}
	binary.BigEndian.PutUint16(b[2:], rflags)
	binary.BigEndian.PutUint16(b[4:], 1)
	binary.BigEndian.PutUint16(b[6:], uint16(an))
	binary.BigEndian.PutUint16(b[8:], uint16(ns))
	binary.BigEndian.PutUint16(b[10:], uint16(ar))
	h.metrics.queries.Add(1)
	h.metrics.local.Add(1)
	h.metrics.answered(rcode)
	return len(b), true
}

// appendRRHeader appends a record header whose owner is the question name
// (a compression pointer to offset 12).
func appendRRHeader(b []byte, rrtype uint16, ttl uint32, rdlen int) []byte {
	return append(b, 0xc0, headerLen, byte(rrtype>>8), byte(rrtype), 0, mdns.ClassINET,
		byte(ttl>>24), byte(ttl>>16), byte(ttl>>8), byte(ttl), byte(rdlen>>8), byte(rdlen))
}

// appendWireName appends a canonical name ("a.b.") in wire form.
func appendWireName(b []byte, name string) []byte {
	start := 0
	for i := 0; i < len(name); i++ {
		if name[i] == '.' {
			b = append(b, byte(i-start))
			b = append(b, name[start:i]...)
			start = i + 1
		}
	}
	return append(b, 0)
}

// inDomainBytes is inDomain for a name in bytes.
func inDomainBytes(n []byte, d string) bool {
	if len(n) == len(d) {
		return string(n) == d
	}
	return len(n) > len(d) && n[len(n)-len(d)-1] == '.' && string(n[len(n)-len(d):]) == d
}
