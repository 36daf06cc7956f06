package dns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	mdns "github.com/miekg/dns"
)

// Defaults for ForwarderOptions fields left zero.
const (
	DefaultResolvConf      = "/etc/resolv.conf"
	DefaultUpstreamTimeout = 2 * time.Second
)

// upstreamUDPSize is the read buffer for upstream answers to queries
// without EDNS0, which should not exceed 512 bytes anyway.
const upstreamUDPSize = 4096

// ErrNoUpstream says there is no upstream server to forward to.
var ErrNoUpstream = errors.New("no upstream DNS server (none in resolv.conf or --dns-upstream, or all of them are this router)")

// ForwarderOptions configures NewForwarder.
type ForwarderOptions struct {
	// Servers are the upstream servers, tried in order. When empty they
	// are the nameservers of ResolvConf, re-read when the file changes.
	Servers []netip.AddrPort
	// ResolvConf is read when Servers is empty; DefaultResolvConf if "".
	ResolvConf string
	// Timeout bounds one exchange with one server; DefaultUpstreamTimeout
	// if zero.
	Timeout time.Duration
	// IsSelf reports whether an address is one this router answers on;
	// such servers are skipped, so queries never loop back to us.
	IsSelf  func(netip.AddrPort) bool
	Metrics *Metrics     // optional: counts forwarded queries, failures and latency
	Logger  *slog.Logger // optional: discards
	// Now is the clock upstream latency is measured with; time.Now if nil.
	Now func() time.Time
}

// Forwarder sends queries for names outside the weave domain to upstream
// servers, with failover between them and a TCP retry when an answer is
// truncated. Safe for concurrent use.
type Forwarder struct {
	explicit bool
	path     string
	isSelf   func(netip.AddrPort) bool
	metrics  *Metrics
	log      *slog.Logger
	now      func() time.Time
	udp, tcp *mdns.Client

	servers atomic.Pointer[[]netip.AddrPort]
	pref    atomic.Uint32 // index of the server that answered last

	mu     sync.Mutex // guards stamp, warned
	stamp  fileStamp  // of the resolv.conf last read
	warned map[netip.AddrPort]bool
}

type fileStamp struct {
	mod  time.Time
	size int64
	ok   bool
}

// NewForwarder validates o and reads the upstream servers.
func NewForwarder(o ForwarderOptions) (*Forwarder, error) {
	if o.Timeout == 0 {
		o.Timeout = DefaultUpstreamTimeout
	}
	if o.Timeout < 0 {
		return nil, fmt.Errorf("dns: ForwarderOptions.Timeout %s: must be positive", o.Timeout)
	}
	if o.ResolvConf == "" {
		o.ResolvConf = DefaultResolvConf
	}
	if o.IsSelf == nil {
		o.IsSelf = func(netip.AddrPort) bool { return false }
	}
	if o.Metrics == nil {
		o.Metrics = new(Metrics)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	for _, s := range o.Servers {
		if !s.IsValid() || s.Port() == 0 {
			return nil, fmt.Errorf("dns: ForwarderOptions.Servers: %v is not an address and port", s)
		}
	}
	f := &Forwarder{
		explicit: len(o.Servers) > 0,
		path:     o.ResolvConf,
		isSelf:   o.IsSelf,
		metrics:  o.Metrics,
		log:      o.Logger,
		now:      o.Now,
		udp:      &mdns.Client{Net: "udp", Timeout: o.Timeout, UDPSize: upstreamUDPSize},
		tcp:      &mdns.Client{Net: "tcp", Timeout: o.Timeout},
		warned:   map[netip.AddrPort]bool{},
	}
	if f.explicit {
		s := append([]netip.AddrPort(nil), o.Servers...)
		f.servers.Store(&s)
	} else {
		empty := []netip.AddrPort{}
		f.servers.Store(&empty)
		f.Reload()
	}
	return f, nil
}

// Reload re-reads resolv.conf if it changed since the last read; with
// explicit servers it does nothing. Call it now and then.
func (f *Forwarder) Reload() {
	if f.explicit {
		return
	}
	var st fileStamp
	if fi, err := os.Stat(f.path); err == nil {
		st = fileStamp{mod: fi.ModTime(), size: fi.Size(), ok: true}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if st == f.stamp && st.ok {
		return
	}
	f.stamp = st
	servers, err := ReadResolvConf(f.path)
	if err != nil {
		f.log.Warn("dns: cannot read upstream servers; names outside the weave domain will not resolve", "file", f.path, "err", err)
		servers = []netip.AddrPort{}
	}
	f.servers.Store(&servers)
	f.pref.Store(0)
	f.log.Info("dns: upstream servers", "file", f.path, "servers", servers)
}

// Servers returns the upstream servers queries may go to: the configured
// ones less those that are this router.
func (f *Forwarder) Servers() []netip.AddrPort {
	all := *f.servers.Load()
	out := make([]netip.AddrPort, 0, len(all))
	for _, s := range all {
		if f.isSelf(s) {
			f.mu.Lock()
			if !f.warned[s] {
				f.warned[s] = true
				f.log.Warn("dns: skipping an upstream server that is this router (it would loop)", "server", s)
			}
			f.mu.Unlock()
			continue
		}
		out = append(out, s)
	}
	return out
}

// Exchange forwards req to the upstream servers, starting with the one that
// answered last and failing over to the next on a timeout, a network error,
// SERVFAIL or REFUSED. An answer truncated over UDP is fetched again over
// TCP; overTCP starts with TCP. The answer carries req's ID.
func (f *Forwarder) Exchange(ctx context.Context, req *mdns.Msg, overTCP bool) (*mdns.Msg, error) {
	servers := f.Servers()
	if len(servers) == 0 {
		return nil, ErrNoUpstream
	}
	f.metrics.forwarded.Add(1)
	q := *req // shallow: the exchange only reads it
	q.Id = mdns.Id()
	start := int(f.pref.Load()) % len(servers)
	var (
		fallback *mdns.Msg
		lastErr  error
	)
	for i := range servers {
		idx := (start + i) % len(servers)
		t0 := f.now()
		resp, err := f.exchange(ctx, &q, servers[idx], overTCP)
		if err == nil {
			// Every answer counts, SERVFAIL included: it is how long the
			// server took to say something.
			f.metrics.upstreamAnswered(f.now().Sub(t0))
		}
		if err != nil {
			f.metrics.upstreamFailures.Add(1)
			lastErr = fmt.Errorf("upstream %s: %w", servers[idx], err)
			if ctx.Err() != nil {
				break
			}
			continue
		}
		if resp.Rcode == mdns.RcodeServerFailure || resp.Rcode == mdns.RcodeRefused {
			f.metrics.upstreamFailures.Add(1)
			if fallback == nil {
				fallback = resp
			}
			continue
		}
		f.pref.Store(uint32(idx))
		resp.Id = req.Id
		return resp, nil
	}
	if fallback != nil {
		fallback.Id = req.Id
		return fallback, nil
	}
	return nil, lastErr
}

func (f *Forwarder) exchange(ctx context.Context, q *mdns.Msg, server netip.AddrPort, overTCP bool) (*mdns.Msg, error) {
	addr := server.String()
	if overTCP {
		resp, _, err := f.tcp.ExchangeContext(ctx, q, addr)
		return resp, err
	}
	resp, _, err := f.udp.ExchangeContext(ctx, q, addr)
	if err != nil {
		return nil, err
	}
	if !resp.Truncated {
		return resp, nil
	}
	full, _, err := f.tcp.ExchangeContext(ctx, q, addr)
	if err != nil {
		// The truncated answer is still an answer; the client may retry
		// over TCP itself.
		f.metrics.upstreamFailures.Add(1)
		f.log.Debug("dns: TCP retry of a truncated upstream answer failed", "server", addr, "err", err)
		return resp, nil
	}
	return full, nil
}
