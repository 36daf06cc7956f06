package api

import (
	"context"
	"net/http"
	"net/url"
	"strings"
)

// DNSEntry is one name-to-address record of weaveDNS (GET /status/dns).
type DNSEntry struct {
	Name     string `json:"name"`    // fully qualified, e.g. "web.weave.local."
	Address  string `json:"address"` // IPv4 or IPv6
	Peer     string `json:"peer"`    // peer name of the router that registered it
	Nickname string `json:"nickname,omitempty"`
	// Endpoint is the ID of the endpoint the record belongs to; empty for
	// records added with weave dns-add.
	Endpoint string `json:"endpoint,omitempty"`
	// Hidden is set while the owning peer is gone: such records are kept
	// but not answered, and answered again if the peer returns.
	Hidden bool `json:"hidden,omitempty"`
}

// DNSCounters are the DNS server's counters since the router started.
type DNSCounters struct {
	Queries          uint64 `json:"queries"`
	Local            uint64 `json:"local"`             // answered from the records
	Forwarded        uint64 `json:"forwarded"`         // sent to upstream servers
	UpstreamFailures uint64 `json:"upstream_failures"` // upstream exchanges that failed
	Truncated        uint64 `json:"truncated"`         // answers sent with the TC bit
	Malformed        uint64 `json:"malformed"`
	// Answers counts answers by response code (NOERROR, NXDOMAIN, ...).
	Answers map[string]uint64 `json:"answers"`
}

// DNSStatus is the answer to GET /status/dns.
type DNSStatus struct {
	Domain string `json:"domain"` // e.g. "weave.local."
	TTL    int    `json:"ttl_s"`  // of answers, in seconds
	// Nameserver is the address containers use: the router listens on it
	// inside every attached namespace, and it is the nameserver of the
	// resolv.conf weave writes.
	Nameserver string `json:"nameserver"`
	// Listen lists the addresses the router answers on in its own
	// namespace (host:port).
	Listen []string `json:"listen"`
	// Upstream lists the servers names outside the domain go to.
	Upstream []string    `json:"upstream"`
	Entries  []DNSEntry  `json:"entries"`
	Counters DNSCounters `json:"counters"`
}

// DNSRequest is the body of POST /dns/add and POST /dns/remove, and their
// answer (with Name fully qualified).
type DNSRequest struct {
	Name string `json:"name"`
	// IPs are plain addresses without prefix length. POST /dns/remove
	// with no IPs removes every address of the name.
	IPs []string `json:"ips"`
}

// DNSLookup is the answer to GET /dns/lookup?name=NAME: the addresses of a
// name, or for an address (name=IP) the names that have it.
type DNSLookup struct {
	Name  string   `json:"name"`
	IPs   []string `json:"ips,omitempty"`
	Names []string `json:"names,omitempty"`
}

// DNSBackend answers the weaveDNS routes; the router implements it. Errors
// follow the kinds in errors.go.
type DNSBackend interface {
	DNSStatus(ctx context.Context) (DNSStatus, error)
	DNSAdd(ctx context.Context, req DNSRequest) (DNSRequest, error)
	DNSRemove(ctx context.Context, req DNSRequest) (DNSRequest, error)
	DNSLookup(ctx context.Context, name string) (DNSLookup, error)
}

// HandleDNS registers the weaveDNS routes over b (see docs/api.md).
func (s *Server) HandleDNS(b DNSBackend) {
	s.Handle("GET /status/dns", jsonHandler(func(r *http.Request) (any, error) {
		st, err := b.DNSStatus(r.Context())
		st.Listen, st.Upstream, st.Entries = nonNil(st.Listen), nonNil(st.Upstream), nonNil(st.Entries)
		if st.Counters.Answers == nil {
			st.Counters.Answers = map[string]uint64{}
		}
		return st, err
	}))
	s.Handle("POST /dns/add", bodyHandler(func(r *http.Request, req DNSRequest) (any, error) {
		if err := req.validate(true); err != nil {
			return nil, err
		}
		return b.DNSAdd(r.Context(), req)
	}))
	s.Handle("POST /dns/remove", bodyHandler(func(r *http.Request, req DNSRequest) (any, error) {
		if err := req.validate(false); err != nil {
			return nil, err
		}
		return b.DNSRemove(r.Context(), req)
	}))
	s.Handle("GET /dns/lookup", jsonHandler(func(r *http.Request) (any, error) {
		name := strings.TrimSpace(r.URL.Query().Get("name"))
		if name == "" {
			return nil, BadRequest("give the name to look up as ?name=NAME")
		}
		return b.DNSLookup(r.Context(), name)
	}))
}

func (d DNSRequest) validate(needIPs bool) error {
	if strings.TrimSpace(d.Name) == "" {
		return BadRequest("name: give a name, like web or web.weave.local")
	}
	if needIPs && len(d.IPs) == 0 {
		return BadRequest("ips: give at least one address, like 10.32.1.5")
	}
	return nil
}

// DNSStatus returns GET /status/dns.
func (c *Client) DNSStatus(ctx context.Context) (DNSStatus, error) {
	var s DNSStatus
	return s, c.do(ctx, http.MethodGet, "/status/dns", nil, &s)
}

// DNSAdd registers name at the addresses (POST /dns/add).
func (c *Client) DNSAdd(ctx context.Context, req DNSRequest) (DNSRequest, error) {
	var out DNSRequest
	return out, c.do(ctx, http.MethodPost, "/dns/add", req, &out)
}

// DNSRemove removes name at the addresses, or at all of them when there
// are none (POST /dns/remove).
func (c *Client) DNSRemove(ctx context.Context, req DNSRequest) (DNSRequest, error) {
	var out DNSRequest
	return out, c.do(ctx, http.MethodPost, "/dns/remove", req, &out)
}

// DNSLookup looks a name (or an address) up in the records (GET /dns/lookup).
func (c *Client) DNSLookup(ctx context.Context, name string) (DNSLookup, error) {
	var out DNSLookup
	return out, c.do(ctx, http.MethodGet, "/dns/lookup?name="+url.QueryEscape(name), nil, &out)
}
