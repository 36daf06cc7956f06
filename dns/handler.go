package dns

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	mdns "github.com/miekg/dns"
)

// Defaults for HandlerOptions fields left zero.
const (
	// DefaultTTL is short so that changes are seen at once.
	DefaultTTL = time.Second
	// DefaultForwardTimeout bounds one forwarded query, failover included.
	DefaultForwardTimeout = 5 * time.Second
	// MaxTTL is the largest TTL accepted.
	MaxTTL = 24 * time.Hour
)

// ednsSize is the UDP payload size we advertise in EDNS0 answers
// (the DNS flag day 2020 value, safe from fragmentation).
const ednsSize = 1232

// HandlerOptions configures NewHandler.
type HandlerOptions struct {
	// Domain answered from Store, canonical (see ParseDomain);
	// DefaultDomain if "".
	Domain string
	// TTL of answers and of negative answers; DefaultTTL if zero. Whole
	// seconds, 1s to MaxTTL.
	TTL   time.Duration
	Store *Store // required
	// Forwarder takes names outside Domain (and reverse names of addresses
	// with no record); without one they get SERVFAIL.
	Forwarder      *Forwarder
	ForwardTimeout time.Duration // optional: DefaultForwardTimeout
	Metrics        *Metrics      // optional: a new one
	Logger         *slog.Logger  // optional: discards
}

// Handler answers DNS queries: the weave domain from the Store, the rest
// through the Forwarder. It implements miekg/dns's Handler; its hot path
// (names in the domain over UDP) allocates nothing of its own.
type Handler struct {
	domain     string
	ttl        uint32
	store      *Store
	fwd        *Forwarder
	fwdTimeout time.Duration
	metrics    *Metrics
	log        *slog.Logger
	soa        mdns.SOA
	soaWire    []byte // soa packed, for the fast path
}

// NewHandler validates o.
func NewHandler(o HandlerOptions) (*Handler, error) {
	if o.Store == nil {
		return nil, errors.New("dns: HandlerOptions.Store is required")
	}
	if o.Domain == "" {
		o.Domain = DefaultDomain
	}
	d, err := ParseDomain(o.Domain)
	if err != nil {
		return nil, fmt.Errorf("dns: HandlerOptions.Domain: %w", err)
	}
	if o.TTL == 0 {
		o.TTL = DefaultTTL
	}
	if o.TTL < time.Second || o.TTL > MaxTTL || o.TTL%time.Second != 0 {
		return nil, fmt.Errorf("dns: HandlerOptions.TTL %s: want whole seconds from 1s to %s", o.TTL, MaxTTL)
	}
	if o.ForwardTimeout == 0 {
		o.ForwardTimeout = DefaultForwardTimeout
	}
	if o.Metrics == nil {
		o.Metrics = new(Metrics)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	ttl := uint32(o.TTL / time.Second)
	h := &Handler{domain: d, ttl: ttl, store: o.Store, fwd: o.Forwarder, fwdTimeout: o.ForwardTimeout,
		metrics: o.Metrics, log: o.Logger}
	h.soa = mdns.SOA{
		Hdr:     mdns.RR_Header{Name: d, Rrtype: mdns.TypeSOA, Class: mdns.ClassINET, Ttl: ttl},
		Ns:      "ns." + d,
		Mbox:    "hostmaster." + d,
		Serial:  1,
		Refresh: 3600, Retry: 600, Expire: 86400,
		Minttl: ttl,
	}
	buf := make([]byte, 2*maxNameLen+64)
	n, err := mdns.PackRR(&h.soa, buf, 0, nil, false)
	if err != nil {
		return nil, fmt.Errorf("dns: pack SOA of %s: %w", d, err)
	}
	h.soaWire = buf[:n]
	return h, nil
}

// Domain returns the canonical domain answered locally.
func (h *Handler) Domain() string { return h.domain }

// Metrics returns the counters.
func (h *Handler) Metrics() *Metrics { return h.metrics }

// reply is the pooled scratch space of one answer, so that building it
// allocates nothing once the pool is warm.
type reply struct {
	m     mdns.Msg
	q     [1]mdns.Question
	a     []mdns.A
	aaaa  []mdns.AAAA
	ptr   []mdns.PTR
	rrs   []mdns.RR
	soa   mdns.SOA
	ns    [1]mdns.RR
	opt   mdns.OPT
	extra [1]mdns.RR
	addrs []netip.Addr
	names []string
	buf   []byte
}

// maxPooledBuf keeps rare huge answers from pinning memory in the pool.
const maxPooledBuf = 16 << 10

var replyPool = sync.Pool{New: func() any { return &reply{buf: make([]byte, 0, 1024)} }}

// ServeDNS implements mdns.Handler.
func (h *Handler) ServeDNS(w mdns.ResponseWriter, req *mdns.Msg) {
	h.metrics.queries.Add(1)
	if req.Response {
		return // never answer an answer: that is how reflection loops start
	}
	rp := replyPool.Get().(*reply)
	defer func() {
		if cap(rp.buf) > maxPooledBuf {
			rp.buf = make([]byte, 0, 1024)
		}
		clear(rp.rrs)
		clear(rp.names)
		replyPool.Put(rp)
	}()
	m := &rp.m
	*m = mdns.Msg{}
	m.Id = req.Id
	m.Response = true
	m.Opcode = req.Opcode
	m.RecursionDesired = req.RecursionDesired
	m.CheckingDisabled = req.CheckingDisabled
	if len(req.Question) > 0 {
		rp.q[0] = req.Question[0]
		m.Question = rp.q[:1]
	}
	_, tcp := w.RemoteAddr().(*net.TCPAddr)
	size := mdns.MinMsgSize
	if opt := req.IsEdns0(); opt != nil {
		rp.opt = mdns.OPT{Hdr: mdns.RR_Header{Name: ".", Rrtype: mdns.TypeOPT}}
		rp.opt.SetUDPSize(ednsSize)
		if opt.Do() {
			rp.opt.SetDo()
		}
		rp.extra[0] = &rp.opt
		m.Extra = rp.extra[:1]
		if opt.Version() != 0 {
			m.Rcode = mdns.RcodeBadVers
			h.write(w, rp, size, tcp)
			return
		}
		size = max(size, int(opt.UDPSize()))
	}
	switch {
	case req.Opcode != mdns.OpcodeQuery:
		m.Rcode = mdns.RcodeNotImplemented
		h.write(w, rp, size, tcp)
		return
	case len(req.Question) != 1 || len(req.Answer) != 0 || len(req.Ns) != 0:
		h.metrics.malformed.Add(1)
		m.Rcode = mdns.RcodeFormatError
		h.write(w, rp, size, tcp)
		return
	}
	q := &req.Question[0]
	name := strings.ToLower(q.Name)
	if q.Qclass != mdns.ClassINET && q.Qclass != mdns.ClassANY {
		if inDomain(name, h.domain) {
			m.Rcode = mdns.RcodeNotImplemented
			h.write(w, rp, size, tcp)
			return
		}
		h.forward(w, req, rp, size, tcp)
		return
	}
	switch {
	case inDomain(name, h.domain):
		h.local(rp, q, name)
		h.metrics.local.Add(1)
		h.write(w, rp, size, tcp)
	case (q.Qtype == mdns.TypePTR || q.Qtype == mdns.TypeANY) && isReverse(name):
		if h.reverse(rp, q, name) {
			h.metrics.local.Add(1)
			h.write(w, rp, size, tcp)
			return
		}
		h.forward(w, req, rp, size, tcp)
	default:
		h.forward(w, req, rp, size, tcp)
	}
}

// local answers a name in the domain from the records.
func (h *Handler) local(rp *reply, q *mdns.Question, name string) {
	m := &rp.m
	m.Authoritative = true
	m.RecursionAvailable = h.fwd != nil
	var exists bool
	rp.addrs, exists = h.store.AppendAddrs(rp.addrs[:0], name)
	if name == h.domain {
		exists = true
	}
	if !exists {
		m.Rcode = mdns.RcodeNameError
		h.addSOA(rp)
		return
	}
	want4 := q.Qtype == mdns.TypeA || q.Qtype == mdns.TypeANY
	want6 := q.Qtype == mdns.TypeAAAA || q.Qtype == mdns.TypeANY
	// Keep the addresses of the wanted families, then shuffle them so
	// clients spread over a name's addresses.
	as := rp.addrs[:0]
	for _, a := range rp.addrs {
		if a.Is4() && want4 || a.Is6() && want6 {
			as = append(as, a)
		}
	}
	for i := len(as) - 1; i > 0; i-- {
		j := rand.IntN(i + 1)
		as[i], as[j] = as[j], as[i]
	}
	n4, n6 := 0, 0
	for _, a := range as {
		if a.Is4() {
			n4++
		} else {
			n6++
		}
	}
	rp.a = grow(rp.a, n4)
	rp.aaaa = grow(rp.aaaa, n6)
	rp.rrs = rp.rrs[:0]
	i4, i6 := 0, 0
	for _, a := range as {
		if a.Is4() {
			rr := &rp.a[i4]
			i4++
			ip := rr.A[:0] // keep the byte slice for reuse
			*rr = mdns.A{Hdr: mdns.RR_Header{Name: q.Name, Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: h.ttl}}
			b := a.As4()
			rr.A = append(ip, b[:]...)
			rp.rrs = append(rp.rrs, rr)
		} else {
			rr := &rp.aaaa[i6]
			i6++
			ip := rr.AAAA[:0]
			*rr = mdns.AAAA{Hdr: mdns.RR_Header{Name: q.Name, Rrtype: mdns.TypeAAAA, Class: mdns.ClassINET, Ttl: h.ttl}}
			b := a.As16()
			rr.AAAA = append(ip, b[:]...)
			rp.rrs = append(rp.rrs, rr)
		}
	}
	if name == h.domain && (q.Qtype == mdns.TypeSOA || q.Qtype == mdns.TypeANY) {
		rp.soa = h.soa
		rp.rrs = append(rp.rrs, &rp.soa)
	}
	if len(rp.rrs) == 0 {
		h.addSOA(rp) // NODATA: the name exists, without this type
		return
	}
	m.Answer = rp.rrs
}

// grow returns s with length n, reusing its array when it can. The
// elements keep their byte slices, which the caller reuses.
func grow[T any](s []T, n int) []T {
	if cap(s) >= n {
		return s[:n]
	}
	return append(s[:cap(s)], make([]T, n-cap(s))...)
}

// reverse answers a PTR query for an address with records; false when
// there is none, so the query goes upstream.
func (h *Handler) reverse(rp *reply, q *mdns.Question, name string) bool {
	addr, ok := reverseAddr(name)
	if !ok {
		return false
	}
	rp.names = h.store.AppendNames(rp.names[:0], addr)
	if len(rp.names) == 0 {
		return false
	}
	m := &rp.m
	m.Authoritative = true
	m.RecursionAvailable = h.fwd != nil
	rp.ptr = grow(rp.ptr, len(rp.names))
	rp.rrs = rp.rrs[:0]
	for i, n := range rp.names {
		rp.ptr[i] = mdns.PTR{Hdr: mdns.RR_Header{Name: q.Name, Rrtype: mdns.TypePTR, Class: mdns.ClassINET, Ttl: h.ttl}, Ptr: n}
		rp.rrs = append(rp.rrs, &rp.ptr[i])
	}
	m.Answer = rp.rrs
	return true
}

// addSOA puts the domain's SOA in the authority section, which lets
// resolvers cache a negative answer for its minimum TTL.
func (h *Handler) addSOA(rp *reply) {
	rp.soa = h.soa
	rp.ns[0] = &rp.soa
	rp.m.Ns = rp.ns[:1]
}

// forward sends req upstream and relays the answer, or SERVFAIL.
func (h *Handler) forward(w mdns.ResponseWriter, req *mdns.Msg, rp *reply, size int, tcp bool) {
	if h.fwd == nil {
		rp.m.Rcode = mdns.RcodeServerFailure
		h.write(w, rp, size, tcp)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), h.fwdTimeout)
	resp, err := h.fwd.Exchange(ctx, req, tcp)
	cancel()
	if err != nil {
		h.log.Debug("dns: forwarding failed", "name", req.Question[0].Name, "err", err)
		rp.m.Rcode = mdns.RcodeServerFailure
		rp.m.RecursionAvailable = true
		h.write(w, rp, size, tcp)
		return
	}
	if !tcp {
		resp.Truncate(size)
	}
	if resp.Truncated {
		h.metrics.truncated.Add(1)
	}
	if err := w.WriteMsg(resp); err != nil {
		h.log.Debug("dns: write answer", "err", err)
	}
	h.metrics.answered(resp.Rcode)
}

// write packs the reply into the pooled buffer, truncated to size for UDP,
// and sends it.
func (h *Handler) write(w mdns.ResponseWriter, rp *reply, size int, tcp bool) {
	m := &rp.m
	if tcp {
		m.Compress = len(m.Answer) > 1
	} else {
		m.Truncate(size)
	}
	if m.Truncated {
		h.metrics.truncated.Add(1)
	}
	b, err := m.PackBuffer(rp.buf[:cap(rp.buf)])
	if err != nil {
		h.log.Warn("dns: cannot pack an answer", "err", err)
		return
	}
	if cap(b) > cap(rp.buf) {
		rp.buf = b[:0]
	}
	if _, err := w.Write(b); err != nil {
		h.log.Debug("dns: write answer", "err", err)
	}
	h.metrics.answered(m.Rcode)
}

// Accept is the server's first look at a query's header (see
// mdns.Server.MsgAcceptFunc): miekg/dns's default checks, with rejected
// queries counted.
func (h *Handler) Accept(dh mdns.Header) mdns.MsgAcceptAction {
	a := mdns.DefaultMsgAcceptFunc(dh)
	switch a {
	case mdns.MsgReject:
		h.metrics.queries.Add(1)
		h.metrics.malformed.Add(1)
		h.metrics.answered(mdns.RcodeFormatError)
	case mdns.MsgRejectNotImplemented:
		h.metrics.queries.Add(1)
		h.metrics.answered(mdns.RcodeNotImplemented)
	}
	return a
}

// Invalid counts a query that could not be parsed (mdns.Server.MsgInvalidFunc);
// the server answers those with a header of at least 12 bytes with FORMERR.
func (h *Handler) Invalid(m []byte, err error) {
	h.metrics.queries.Add(1)
	h.metrics.malformed.Add(1)
	if len(m) >= 12 {
		h.metrics.answered(mdns.RcodeFormatError)
	}
}

// serveRaw answers the query in m the way miekg/dns's server does: a
// header it refuses gets FORMERR or NOTIMP (or nothing, for answers), a
// message that does not parse FORMERR, the rest ServeDNS.
func (h *Handler) serveRaw(m []byte, w mdns.ResponseWriter) {
	if len(m) < headerLen {
		h.Invalid(m, errShort)
		return
	}
	dh := mdns.Header{
		Id: binary.BigEndian.Uint16(m), Bits: binary.BigEndian.Uint16(m[2:]),
		Qdcount: binary.BigEndian.Uint16(m[4:]), Ancount: binary.BigEndian.Uint16(m[6:]),
		Nscount: binary.BigEndian.Uint16(m[8:]), Arcount: binary.BigEndian.Uint16(m[10:]),
	}
	refuse := func(rcode int) {
		r := new(mdns.Msg)
		r.Id = dh.Id
		r.Response = true
		r.Opcode = int(dh.Bits>>11) & 0xf
		r.RecursionDesired = dh.Bits&bitRD != 0
		r.Rcode = rcode
		_ = w.WriteMsg(r)
	}
	switch h.Accept(dh) {
	case mdns.MsgIgnore:
		return
	case mdns.MsgReject:
		refuse(mdns.RcodeFormatError)
		return
	case mdns.MsgRejectNotImplemented:
		refuse(mdns.RcodeNotImplemented)
		return
	}
	req := new(mdns.Msg)
	if err := req.Unpack(m); err != nil {
		h.Invalid(m, err)
		refuse(mdns.RcodeFormatError)
		return
	}
	h.ServeDNS(w, req)
}
