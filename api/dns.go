package api

import (
	"context"
	"net/http"
	"net/url"
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
	// UpstreamLatency is how long upstream servers took to answer.
	UpstreamLatency LatencyHistogram `json:"upstream_latency"`
}

// LatencyHistogram counts observations by bucket: Counts[i] took at most
// BoundsSeconds[i] (and more than the bound before); the last of Counts,
// one more than the bounds, took longer than all.
type LatencyHistogram struct {
	BoundsSeconds []float64 `json:"bounds_s"`
	Counts        []uint64  `json:"counts"`
	SumSeconds    float64   `json:"sum_s"`
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
