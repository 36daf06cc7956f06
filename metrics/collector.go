package metrics

import (
	"context"
	"net/netip"

	"github.com/prometheus/client_golang/prometheus"

	"weavemesh.dev/weave/api"
	"weavemesh.dev/weave/feature"
	"weavemesh.dev/weave/gossip"
)

// The metrics, by the names Weave Net's dashboards know where Weave Net
// had them (weave_connections, weave_ips, weave_max_ips, weave_dns_entries,
// weave_ipam_*), weave_* for the rest. docs/metrics.md lists them all.
var (
	descConnections = prometheus.NewDesc("weave_connections", "Connections to other peers, by state, datapath (type) and encryption.", []string{"state", "type", "encryption"}, nil)
	descPeers       = prometheus.NewDesc("weave_peers", "Peers in the mesh this one knows alive, itself included.", nil, nil)
	descTerminated  = prometheus.NewDesc("weave_connection_terminations_total", "Established connections that ended, by reason.", []string{"reason"}, nil)

	descFrames   = prometheus.NewDesc("weave_datapath_frames_total", "Frames carried by a datapath, by direction.", []string{"datapath", "direction"}, nil)
	descBytes    = prometheus.NewDesc("weave_datapath_bytes_total", "Bytes of frames carried by a datapath, by direction.", []string{"datapath", "direction"}, nil)
	descDrops    = prometheus.NewDesc("weave_datapath_drops_total", "Frames a datapath dropped, by reason.", []string{"datapath", "reason"}, nil)
	descRelayed  = prometheus.NewDesc("weave_datapath_relayed_frames_total", "Frames a datapath passed on for two other peers.", []string{"datapath"}, nil)
	descFailures = prometheus.NewDesc("weave_datapath_failures_total", "Times a datapath stopped on an error and was restarted.", []string{"datapath"}, nil)

	descIPs               = prometheus.NewDesc("weave_ips", "Addresses of the allocation range: handed out here (local-used) and owned by this peer (local-owned).", []string{"state"}, nil)
	descMaxIPs            = prometheus.NewDesc("weave_max_ips", "Addresses in the allocation range.", nil, nil)
	descUnreachableCount  = prometheus.NewDesc("weave_ipam_unreachable_count", "Peers owning part of the range that are unreachable.", nil, nil)
	descUnreachablePct    = prometheus.NewDesc("weave_ipam_unreachable_percentage", "Share of the range owned by unreachable peers, in percent.", nil, nil)
	descPendingClaims     = prometheus.NewDesc("weave_ipam_pending_claims", "Addresses held by endpoints here that lie in space other peers own, being claimed back.", nil, nil)
	descQuarantined       = prometheus.NewDesc("weave_ipam_quarantined", "Reclaimed addresses of this peer held back in quarantine.", nil, nil)
	descIPAMReady         = prometheus.NewDesc("weave_ipam_ready", "1 when this peer can allocate addresses now.", nil, nil)
	descIPAMConflicts     = prometheus.NewDesc("weave_ipam_address_conflicts", "Addresses found handed out twice and still held here.", nil, nil)
	descIPAMEvents        = prometheus.NewDesc("weave_ipam_events_total", "IP allocation events on this peer since it started, by kind.", []string{"kind"}, nil)
	descDNSEntries        = prometheus.NewDesc("weave_dns_entries", "Name records in weaveDNS, this peer's and the others'.", []string{"origin"}, nil)
	descDNSQueries        = prometheus.NewDesc("weave_dns_queries_total", "DNS queries received.", nil, nil)
	descDNSAnswers        = prometheus.NewDesc("weave_dns_answers_total", "DNS answers sent, by response code.", []string{"rcode"}, nil)
	descDNSForwarded      = prometheus.NewDesc("weave_dns_forwarded_total", "DNS queries sent to upstream servers.", nil, nil)
	descDNSUpstreamFailed = prometheus.NewDesc("weave_dns_upstream_failures_total", "Upstream DNS exchanges that failed.", nil, nil)
	descDNSMalformed      = prometheus.NewDesc("weave_dns_malformed_total", "DNS queries that could not be parsed.", nil, nil)
	descDNSLatency        = prometheus.NewDesc("weave_dns_upstream_latency_seconds", "How long upstream DNS servers took to answer.", nil, nil)

	descGossipMessages = prometheus.NewDesc("weave_gossip_messages_total", "Gossip messages, by kind and direction.", []string{"kind", "direction"}, nil)
	descGossipBytes    = prometheus.NewDesc("weave_gossip_bytes_total", "Bytes of gossip messages (weave's payloads, without memberlist's probes and headers), by kind and direction.", []string{"kind", "direction"}, nil)
	descGossipErrors   = prometheus.NewDesc("weave_gossip_errors_total", "Gossip messages refused, by reason.", []string{"reason"}, nil)
	descGossipPending  = prometheus.NewDesc("weave_gossip_broadcasts_pending", "Deltas waiting in the broadcast queue.", nil, nil)
)

// collector reads everything at scrape time from what the router and the
// features already count, so the hot paths carry no extra instrumentation.
type collector struct{ h feature.Host }

// Describe sends nothing: the collector is unchecked, since which label
// values exist depends on the mesh.
func (c *collector) Describe(chan<- *prometheus.Desc) {}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	c.collectMesh(ctx, gauge)
	if c.h.Terminations != nil {
		for reason, n := range c.h.Terminations() {
			counter(descTerminated, n, reason)
		}
	}
	if c.h.Datapaths != nil {
		for _, d := range c.h.Datapaths() {
			counter(descFrames, d.TxFrames, d.Name, "tx")
			counter(descFrames, d.RxFrames, d.Name, "rx")
			counter(descBytes, d.TxBytes, d.Name, "tx")
			counter(descBytes, d.RxBytes, d.Name, "rx")
			counter(descRelayed, d.Relayed, d.Name)
			counter(descFailures, d.Failures, d.Name)
			for reason, n := range d.Drops {
				counter(descDrops, n, d.Name, reason)
			}
		}
	}
	if st, ok := c.status(ctx, "ipam").(api.IPAMStatus); ok {
		collectIPAM(st, gauge, counter)
	}
	if st, ok := c.status(ctx, "dns").(api.DNSStatus); ok {
		collectDNS(c.h.Self.String(), st, gauge, counter)
		if m, ok := latencyHistogram(descDNSLatency, st.Counters.UpstreamLatency); ok {
			ch <- m
		}
	}
	if c.h.Gossip != nil {
		collectGossip(c.h.Gossip(), gauge, counter)
	}
}

type (
	gaugeFunc   func(d *prometheus.Desc, v float64, labels ...string)
	counterFunc func(d *prometheus.Desc, v uint64, labels ...string)
)

func (c *collector) collectMesh(ctx context.Context, gauge gaugeFunc) {
	alive := 0
	for _, m := range c.h.Members() {
		if m.State == gossip.Alive || m.State == gossip.Suspect {
			alive++
		}
	}
	gauge(descPeers, float64(alive))
	if c.h.Connections == nil {
		return
	}
	conns, err := c.h.Connections(ctx)
	if err != nil {
		return
	}
	type key struct{ state, dp, enc string }
	n := map[key]int{}
	for _, cn := range conns {
		enc := "no"
		if cn.Encrypted {
			enc = "yes"
		}
		n[key{cn.State, cn.Datapath, enc}]++
	}
	for k, v := range n {
		gauge(descConnections, float64(v), k.state, k.dp, k.enc)
	}
}

// status is another feature's status section, nil when it is not there.
func (c *collector) status(ctx context.Context, name string) any {
	if c.h.Feature == nil {
		return nil
	}
	f, ok := c.h.Feature(name)
	if !ok {
		return nil
	}
	st, err := f.Status(ctx)
	if err != nil {
		return nil
	}
	return st
}

func collectIPAM(st api.IPAMStatus, gauge gaugeFunc, counter counterFunc) {
	var owned, unreachable uint64
	var unreachablePeers int
	for _, p := range st.Peers {
		if p.Self {
			owned = uint64(p.Addresses)
		} else if !p.Reachable && p.Addresses > 0 {
			unreachablePeers++
			unreachable += uint64(p.Addresses)
		}
	}
	size := 0.0
	if r, err := netip.ParsePrefix(st.Range); err == nil {
		size = float64(uint64(1) << (32 - r.Bits()))
	}
	gauge(descIPs, float64(len(st.Allocations)), "local-used")
	gauge(descIPs, float64(owned), "local-owned")
	gauge(descMaxIPs, size)
	gauge(descUnreachableCount, float64(unreachablePeers))
	pct := 0.0
	if size > 0 {
		pct = 100 * float64(unreachable) / size
	}
	gauge(descUnreachablePct, pct)
	gauge(descPendingClaims, float64(st.PendingClaims))
	gauge(descQuarantined, float64(st.Quarantined))
	ready := 0.0
	if st.Ready {
		ready = 1
	}
	gauge(descIPAMReady, ready)
	gauge(descIPAMConflicts, float64(len(st.AddressConflicts)))
	cs := st.Counters
	for kind, v := range map[string]uint64{
		"donated": cs.Donated, "received": cs.Received, "reclaims": cs.Reclaims, "handed_back": cs.HandedBack,
		"claimed_back": cs.ClaimedBack, "conflicts": cs.Conflicts, "rings_adopted": cs.RingsAdopted,
	} {
		counter(descIPAMEvents, v, kind)
	}
}

func collectDNS(self string, st api.DNSStatus, gauge gaugeFunc, counter counterFunc) {
	local, remote := 0, 0
	for _, e := range st.Entries {
		if e.Peer == self {
			local++
		} else {
			remote++
		}
	}
	gauge(descDNSEntries, float64(local), "local")
	gauge(descDNSEntries, float64(remote), "remote")
	cs := st.Counters
	counter(descDNSQueries, cs.Queries)
	counter(descDNSForwarded, cs.Forwarded)
	counter(descDNSUpstreamFailed, cs.UpstreamFailures)
	counter(descDNSMalformed, cs.Malformed)
	for rcode, n := range cs.Answers {
		counter(descDNSAnswers, n, rcode)
	}
}

func collectGossip(s gossip.Stats, gauge gaugeFunc, counter counterFunc) {
	counter(descGossipMessages, s.BroadcastsSent, "broadcast", "tx")
	counter(descGossipMessages, s.BroadcastsReceived, "broadcast", "rx")
	counter(descGossipMessages, s.BroadcastsRelayed, "broadcast", "relayed")
	counter(descGossipMessages, s.UnicastSent, "unicast", "tx")
	counter(descGossipMessages, s.UnicastReceived, "unicast", "rx")
	counter(descGossipMessages, s.PushPullSent, "push_pull", "tx")
	counter(descGossipMessages, s.PushPullReceived, "push_pull", "rx")
	b := s.Bytes
	counter(descGossipBytes, b.BroadcastSent, "broadcast", "tx")
	counter(descGossipBytes, b.BroadcastReceived, "broadcast", "rx")
	counter(descGossipBytes, b.UnicastSent, "unicast", "tx")
	counter(descGossipBytes, b.UnicastReceived, "unicast", "rx")
	counter(descGossipBytes, b.PushPullSent, "push_pull", "tx")
	counter(descGossipBytes, b.PushPullReceived, "push_pull", "rx")
	counter(descGossipErrors, s.DecodeErrors, "decode")
	counter(descGossipErrors, s.MergeErrors, "merge")
	counter(descGossipErrors, s.AsyncDropped, "queue_full")
	counter(descGossipErrors, s.AsyncFailed, "send_failed")
	gauge(descGossipPending, float64(s.BroadcastsPending))
}

// latencyHistogram turns the per-bucket counts of a status into a
// Prometheus histogram, whose buckets are cumulative; false when the
// status has none or they do not fit their bounds.
func latencyHistogram(d *prometheus.Desc, h api.LatencyHistogram) (prometheus.Metric, bool) {
	if len(h.BoundsSeconds) == 0 || len(h.Counts) != len(h.BoundsSeconds)+1 {
		return nil, false
	}
	buckets := make(map[float64]uint64, len(h.BoundsSeconds))
	var n uint64
	for i, b := range h.BoundsSeconds {
		n += h.Counts[i]
		buckets[b] = n
	}
	n += h.Counts[len(h.BoundsSeconds)]
	m, err := prometheus.NewConstHistogram(d, n, h.SumSeconds, buckets)
	return m, err == nil
}
