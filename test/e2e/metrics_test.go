package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"weavemesh.dev/weave/test/harness"
)

// scrapeMetrics fetches a router's /metrics from inside its host and
// parses it with Prometheus' text parser.
func scrapeMetrics(t *testing.T, h *harness.Host) map[string]*dto.MetricFamily {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := h.Output(ctx, "curl", "-sS", "--max-time", "5", "http://127.0.0.1:6782/metrics")
	if err != nil {
		t.Fatalf("%s: scrape /metrics: %v: %s", h.Name, err, out)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(out))
	if err != nil {
		t.Fatalf("%s: parse /metrics: %v", h.Name, err)
	}
	return fams
}

// metric sums the values of name's samples whose labels include want.
func metric(fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	var sum float64
	fam, ok := fams[name]
	if !ok {
		return 0
	}
next:
	for _, m := range fam.Metric {
		for _, l := range m.Label {
			if v, ok := want[l.GetName()]; ok && v != l.GetValue() {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		}
	}
	return sum
}

// TestMetricsDuringTransfer: /metrics, parsed by Prometheus' parser, counts
// a 20 MB transfer in the datapaths' byte counters on both ends (within
// the framing overhead), the established connection, the peers and the
// addresses handed out; garbage sent at the sleeve port raises a drop
// counter.
func TestMetricsDuringTransfer(t *testing.T) {
	m := startMesh(t, harness.Options{Hosts: 2}, 1)
	h1, h2 := m.cl.Host(1), m.cl.Host(2)
	src, dst := m.ctrs[0][0], m.ctrs[1][0]
	ctx := ctxFor(t, 2*time.Minute)
	if err := ping(ctx, src, dst.IP()); err != nil {
		t.Fatal(err)
	}
	// Whichever datapath carries it (fastdp or sleeve), summed.
	sleeveTx := map[string]string{"direction": "tx"}
	sleeveRx := map[string]string{"direction": "rx"}
	before1, before2 := scrapeMetrics(t, h1), scrapeMetrics(t, h2)
	const size = 20 << 20
	if _, err := harness.Transfer(ctx, src.NS, dst.NS, dst.IP(), 5001, size); err != nil {
		t.Fatal(err)
	}
	after1, after2 := scrapeMetrics(t, h1), scrapeMetrics(t, h2)
	tx := metric(after1, "weave_datapath_bytes_total", sleeveTx) - metric(before1, "weave_datapath_bytes_total", sleeveTx)
	rx := metric(after2, "weave_datapath_bytes_total", sleeveRx) - metric(before2, "weave_datapath_bytes_total", sleeveRx)
	for _, c := range []struct {
		what string
		got  float64
	}{{"host1 sent", tx}, {"host2 received", rx}} {
		// Ethernet, IP and TCP headers add about 5% at this MTU; ACKs
		// and heartbeats little more.
		if c.got < size || c.got > size*1.15 {
			t.Errorf("%s %.0f bytes for a %d-byte transfer, want %d to %.0f", c.what, c.got, size, size, size*1.15)
		}
	}
	if n := metric(after1, "weave_connections", map[string]string{"state": "established"}); n != 1 {
		t.Errorf("weave_connections{state=established} = %v, want 1", n)
	}
	if n := metric(after1, "weave_peers", nil); n != 2 {
		t.Errorf("weave_peers = %v, want 2", n)
	}
	if n := metric(after1, "weave_max_ips", nil); n != 1<<20 {
		t.Errorf("weave_max_ips = %v, want %d", n, 1<<20)
	}

	drops := metric(after1, "weave_datapath_drops_total", map[string]string{"datapath": "sleeve"})
	// Garbage at host1's sleeve port, from host2's namespace.
	junk := fmt.Sprintf("for i in $(seq 20); do printf 'not a sleeve datagram' >/dev/udp/%s/6784; done", h1.IP)
	if out, err := h2.Output(ctx, "bash", "-c", junk); err != nil {
		t.Fatalf("send garbage: %v: %s", err, out)
	}
	err := harness.PollFor(20*time.Second, "a drop counted", func(context.Context) error {
		now := metric(scrapeMetrics(t, h1), "weave_datapath_drops_total", map[string]string{"datapath": "sleeve"})
		if now < drops+20 {
			return fmt.Errorf("drops %v, was %v", now, drops)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// histogramCount is the sample count of name's histogram, 0 if none.
func histogramCount(fams map[string]*dto.MetricFamily, name string) uint64 {
	var n uint64
	for _, m := range fams[name].GetMetric() {
		n += m.GetHistogram().GetSampleCount()
	}
	return n
}

// TestMetricsMeshEvents: the counters of events, parsed by Prometheus'
// parser, move when the events happen: gossip bytes with a DNS record
// broadcast, DNS upstream failures and latency with a query forwarded
// past a server that refuses to one that answers, and a connection
// termination (peer_left) on host1 when host2 stops.
func TestMetricsMeshEvents(t *testing.T) {
	cl := newCluster(t, harness.Options{Hosts: 2})
	h1, h2 := cl.Host(1), cl.Host(2)
	startTestUpstream(t, cl)
	// Nothing listens on port 5399 of host1's own address: the query is
	// refused at once and fails over to the test upstream.
	upstreams := fmt.Sprintf("--dns-upstream=%s:5399,%s", h1.IP, upstreamIP)
	if err := h1.StartRouter(upstreams); err != nil {
		t.Fatal(err)
	}
	if err := h2.StartRouter(routerArgs(cl, h2)...); err != nil {
		t.Fatal(err)
	}
	waitMesh(t, cl)
	c, err := h1.AddContainer("mq1")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Attach("10.32.1.1/12"); err != nil {
		t.Fatal(err)
	}
	ctx := ctxFor(t, 2*time.Minute)
	before1, before2 := scrapeMetrics(t, h1), scrapeMetrics(t, h2)

	if out, err := h1.Weave("dns-add", "10.32.1.9", "metrics-probe"); err != nil {
		t.Fatalf("dns-add: %v %s", err, out)
	}
	r, err := dig(ctx, c, "www.example.test")
	if err != nil || len(r.answers) != 1 {
		t.Fatalf("forwarded query: %v\n%s", err, r.out)
	}
	bcastTx := map[string]string{"kind": "broadcast", "direction": "tx"}
	bcastRx := map[string]string{"kind": "broadcast", "direction": "rx"}
	err = harness.PollFor(20*time.Second, "gossip bytes to count the record's broadcast", func(context.Context) error {
		a1, a2 := scrapeMetrics(t, h1), scrapeMetrics(t, h2)
		tx := metric(a1, "weave_gossip_bytes_total", bcastTx) - metric(before1, "weave_gossip_bytes_total", bcastTx)
		rx := metric(a2, "weave_gossip_bytes_total", bcastRx) - metric(before2, "weave_gossip_bytes_total", bcastRx)
		// A record's delta carries its name and address: tens of bytes.
		if tx < 20 || rx < 20 {
			return fmt.Errorf("broadcast bytes: host1 sent %.0f, host2 received %.0f", tx, rx)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
	after1 := scrapeMetrics(t, h1)
	if d := metric(after1, "weave_dns_upstream_failures_total", nil) - metric(before1, "weave_dns_upstream_failures_total", nil); d < 1 {
		t.Errorf("weave_dns_upstream_failures_total rose by %v, want at least 1 (the refusing server)", d)
	}
	if d := histogramCount(after1, "weave_dns_upstream_latency_seconds") - histogramCount(before1, "weave_dns_upstream_latency_seconds"); d < 1 {
		t.Errorf("weave_dns_upstream_latency_seconds counted %d answers, want at least 1", d)
	}
	if pp := metric(after1, "weave_gossip_bytes_total", map[string]string{"kind": "push_pull"}); pp == 0 {
		t.Error("no push-pull bytes counted, though the join is one")
	}

	left := map[string]string{"reason": "peer_left"}
	was := metric(after1, "weave_connection_terminations_total", left)
	if err := h2.Stop(); err != nil {
		t.Fatal(err)
	}
	err = harness.PollFor(30*time.Second, "host1 to count host2's leaving", func(context.Context) error {
		now := metric(scrapeMetrics(t, h1), "weave_connection_terminations_total", left)
		if now != was+1 {
			return fmt.Errorf("terminations{reason=peer_left} %v, was %v", now, was)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
}
