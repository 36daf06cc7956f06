package dns

import (
	"sync/atomic"
	"time"

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

	// upstream answer latency: counts per bucket of UpstreamLatencyBounds
	// (the last slot: above all), and the sum in nanoseconds.
	latency    [len(UpstreamLatencyBounds) + 1]atomic.Uint64
	latencySum atomic.Uint64
}

// UpstreamLatencyBounds are the upper bounds of the upstream latency
// buckets: a cached answer on the LAN takes a millisecond, a recursive
// lookup across the world hundreds.
var UpstreamLatencyBounds = [...]time.Duration{
	time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond, 10 * time.Millisecond,
	25 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond, 250 * time.Millisecond,
	500 * time.Millisecond, time.Second, 2500 * time.Millisecond, 5 * time.Second,
}

// Histogram is a latency histogram: Counts[i] answers took at most
// Bounds[i] (and more than Bounds[i-1]); Counts has one more slot, for
// the slower ones.
type Histogram struct {
	Bounds []time.Duration
	Counts []uint64
	Sum    time.Duration
}

// Count is the number of observations.
func (h Histogram) Count() uint64 {
	var n uint64
	for _, c := range h.Counts {
		n += c
	}
	return n
}

// upstreamAnswered records how long an upstream server took to answer.
func (m *Metrics) upstreamAnswered(d time.Duration) {
	d = max(d, 0)
	i := 0
	for i < len(UpstreamLatencyBounds) && d > UpstreamLatencyBounds[i] {
		i++
	}
	m.latency[i].Add(1)
	m.latencySum.Add(uint64(d))
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
	UpstreamLatency  Histogram         // how long upstream servers took to answer
}

// Snapshot copies the counters.
func (m *Metrics) Snapshot() MetricsSnapshot {
	s := MetricsSnapshot{
		Queries: m.queries.Load(), Local: m.local.Load(), Forwarded: m.forwarded.Load(),
		UpstreamFailures: m.upstreamFailures.Load(), Truncated: m.truncated.Load(),
		Malformed: m.malformed.Load(), Answers: map[string]uint64{},
		UpstreamLatency: Histogram{Bounds: UpstreamLatencyBounds[:], Counts: make([]uint64, len(m.latency)),
			Sum: time.Duration(m.latencySum.Load())},
	}
	for i := range m.latency {
		s.UpstreamLatency.Counts[i] = m.latency[i].Load()
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
