package dns

import (
	"sync/atomic"

	mdns "github.com/miekg/dns"
)

// maxRcode is the highest response code counted by name; higher ones
// (extended codes) are counted together.
const maxRcode = 23

// Metrics counts what the DNS server does. The zero value is ready; all
// methods are safe for concurrent use.
type Metrics struct {
	queries          atomic.Uint64
	local            atomic.Uint64
	forwarded        atomic.Uint64
	upstreamFailures atomic.Uint64
	truncated        atomic.Uint64
	malformed        atomic.Uint64
	rcodes           [maxRcode + 2]atomic.Uint64 // last slot: anything above maxRcode
}

// MetricsSnapshot is a copy of the counters.
type MetricsSnapshot struct {
	Queries          uint64            // queries received (malformed ones included)
	Local            uint64            // answered from the records
	Forwarded        uint64            // sent upstream
	UpstreamFailures uint64            // upstream exchanges that failed (timeouts, network errors)
	Truncated        uint64            // answers sent with the TC bit
	Malformed        uint64            // queries that could not be parsed
	Answers          map[string]uint64 // answers sent, by response code name (NOERROR, NXDOMAIN, ...)
}

// Snapshot copies the counters.
func (m *Metrics) Snapshot() MetricsSnapshot {
	s := MetricsSnapshot{
		Queries: m.queries.Load(), Local: m.local.Load(), Forwarded: m.forwarded.Load(),
		UpstreamFailures: m.upstreamFailures.Load(), Truncated: m.truncated.Load(),
		Malformed: m.malformed.Load(), Answers: map[string]uint64{},
	}
	for rc := range m.rcodes {
		n := m.rcodes[rc].Load()
		if n == 0 {
			continue
		}
		name := "OTHER"
		if rc <= maxRcode {
			if str, ok := mdns.RcodeToString[rc]; ok {
				name = str
			}
		}
		s.Answers[name] += n
	}
	return s
}

func (m *Metrics) answered(rcode int) {
	if rcode < 0 || rcode > maxRcode {
		rcode = maxRcode + 1
	}
	m.rcodes[rcode].Add(1)
}
