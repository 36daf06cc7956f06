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
