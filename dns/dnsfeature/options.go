package dnsfeature

import (
	"fmt"
	"time"

	"weavemesh.dev/weave/dns"
)

// DefaultListenAddress is where the router also answers DNS in its own
// namespace unless Options.ListenAddress says otherwise; skipped with a
// warning when something else has it.
const DefaultListenAddress = "127.0.0.1:53"

// Options configures New. Zero values take the defaults; errors name the
// flag of the bad field.
type Options struct {
	// Off turns weaveDNS off: its routes then answer that it is off.
	Off bool
	// Domain is answered from the records (default dns.DefaultDomain).
	Domain string
	// ListenAddress is an extra address to answer on in the host's
	// namespace; optional, DefaultListenAddress when empty, and then not
	// having it is no error.
	ListenAddress string
	// TTL of answers, whole seconds (default dns.DefaultTTL).
	TTL time.Duration
	// Upstream are the servers for other names (default: resolv.conf's).
	Upstream []string
}

// withDefaults validates o and fills in defaults, naming the flag of any
// bad field.
func (o Options) withDefaults() (Options, error) {
	if o.Off {
		return o, nil
	}
	if o.Domain == "" {
		o.Domain = dns.DefaultDomain
	}
	d, err := dns.ParseDomain(o.Domain)
	if err != nil {
		return o, fmt.Errorf("--dns-domain: %w", err)
	}
	o.Domain = d
	if o.TTL == 0 {
		o.TTL = dns.DefaultTTL
	}
	if o.TTL < time.Second || o.TTL > dns.MaxTTL || o.TTL%time.Second != 0 {
		return o, fmt.Errorf("--dns-ttl %s: want whole seconds from 1 to %d", o.TTL, int(dns.MaxTTL/time.Second))
	}
	if o.ListenAddress != "" {
		ap, err := dns.ParseListenAddr(o.ListenAddress)
		if err != nil {
			return o, fmt.Errorf("--dns-listen-address: %w", err)
		}
		o.ListenAddress = ap.String()
	}
	ups := make([]string, 0, len(o.Upstream))
	for _, u := range o.Upstream {
		ap, err := dns.ParseUpstream(u)
		if err != nil {
			return o, fmt.Errorf("--dns-upstream: %w", err)
		}
		ups = append(ups, ap.String())
	}
	if len(ups) > 0 {
		o.Upstream = ups
	}
	return o, nil
}
