package metrics

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"weavemesh.dev/weave/api"
	"weavemesh.dev/weave/feature"
	"weavemesh.dev/weave/gossip"
	"weavemesh.dev/weave/peer"
)

// statusFeature is another feature as the collector sees it: a status.
type statusFeature struct {
	feature.Base
	name string
	st   any
}

func (f statusFeature) Name() string                        { return f.name }
func (f statusFeature) Open(feature.Host) error             { return nil }
func (f statusFeature) Status(context.Context) (any, error) { return f.st, nil }

func testHost() feature.Host {
	self := peer.Name(1)
	others := map[string]feature.Feature{
		"ipam": statusFeature{name: "ipam", st: api.IPAMStatus{
			Range: "10.32.0.0/24", Ready: true, PendingClaims: 2, Quarantined: 5,
			Peers: []api.IPAMPeer{
				{Name: self.String(), Self: true, Reachable: true, Addresses: 128},
				{Name: "00:00:00:00:00:02", Reachable: false, Addresses: 64},
				{Name: "00:00:00:00:00:03", Reachable: true, Addresses: 64},
			},
			Allocations: []api.IPAMAllocation{{Address: "10.32.0.1", Owner: "a"}, {Address: "10.32.0.2", Owner: "b"}},
			Counters:    api.IPAMCounters{Reclaims: 1, HandedBack: 3},
		}},
		"dns": statusFeature{name: "dns", st: api.DNSStatus{
			Entries: []api.DNSEntry{{Name: "a.weave.local.", Peer: self.String()}, {Name: "b.weave.local.", Peer: "00:00:00:00:00:02"}},
			Counters: api.DNSCounters{Queries: 10, Forwarded: 2, UpstreamFailures: 1, Answers: map[string]uint64{"NOERROR": 7, "NXDOMAIN": 3},
				UpstreamLatency: api.LatencyHistogram{BoundsSeconds: []float64{0.01, 0.1}, Counts: []uint64{2, 3, 1}, SumSeconds: 0.42}},
		}},
	}
	return feature.Host{
		Self: self, Logger: slog.New(slog.DiscardHandler),
		Members: func() []gossip.Member {
			return []gossip.Member{{Name: self, State: gossip.Alive}, {Name: 2, State: gossip.Dead}, {Name: 3, State: gossip.Alive}}
		},
		Connections: func(context.Context) ([]api.Connection, error) {
			return []api.Connection{
				{Peer: "2", State: "failed", Datapath: "sleeve"},
				{Peer: "3", State: "established", Datapath: "sleeve", Encrypted: true},
				{Peer: "4", State: "established", Datapath: "sleeve", Encrypted: true},
			}, nil
		},
		Datapaths: func() []feature.DatapathStats {
			return []feature.DatapathStats{{Name: "sleeve", TxFrames: 100, RxFrames: 90, TxBytes: 150000, RxBytes: 140000, Relayed: 4,
				Drops: map[string]uint64{"auth": 2, "replay": 1}, Failures: 1}}
		},
		Gossip: func() gossip.Stats {
			return gossip.Stats{BroadcastsSent: 12, UnicastReceived: 3, BroadcastsPending: 1,
				Bytes: gossip.ByteStats{BroadcastSent: 1200, PushPullReceived: 5000}}
		},
		Terminations: func() map[string]uint64 { return map[string]uint64{"peer_left": 2, "heartbeat_timeout": 1} },
		Feature: func(name string) (feature.Feature, bool) {
			f, ok := others[name]
			return f, ok
		},
	}
}

// scrape serves the metrics once and parses them with Prometheus' own
// text parser.
func scrape(t *testing.T, f *Feature) map[string]*dto.MetricFamily {
	t.Helper()
	srv := httptest.NewServer(f.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("parse /metrics: %v\n%s", err, body)
	}
	return fams
}

// value is the metric of fam whose labels include want.
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	t.Helper()
	fam, ok := fams[name]
	if !ok {
		t.Fatalf("no metric %s", name)
	}
next:
	for _, m := range fam.Metric {
		have := map[string]string{}
		for _, l := range m.Label {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if have[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		}
	}
	t.Fatalf("no %s with labels %v", name, want)
	return 0
}

func TestMetrics(t *testing.T) {
	f, err := New(Options{Addr: "off"})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Open(testHost()); err != nil {
		t.Fatal(err)
	}
	defer f.Close(context.Background())
	fams := scrape(t, f)
	for _, tc := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"weave_peers", nil, 2},
		{"weave_connections", map[string]string{"state": "established", "type": "sleeve", "encryption": "yes"}, 2},
		{"weave_connections", map[string]string{"state": "failed", "type": "sleeve", "encryption": "no"}, 1},
		{"weave_datapath_frames_total", map[string]string{"datapath": "sleeve", "direction": "tx"}, 100},
		{"weave_datapath_bytes_total", map[string]string{"datapath": "sleeve", "direction": "rx"}, 140000},
		{"weave_datapath_drops_total", map[string]string{"datapath": "sleeve", "reason": "auth"}, 2},
		{"weave_datapath_relayed_frames_total", map[string]string{"datapath": "sleeve"}, 4},
		{"weave_datapath_failures_total", map[string]string{"datapath": "sleeve"}, 1},
		{"weave_ips", map[string]string{"state": "local-used"}, 2},
		{"weave_ips", map[string]string{"state": "local-owned"}, 128},
		{"weave_max_ips", nil, 256},
		{"weave_ipam_unreachable_count", nil, 1},
		{"weave_ipam_unreachable_percentage", nil, 25},
		{"weave_ipam_pending_claims", nil, 2},
		{"weave_ipam_quarantined", nil, 5},
		{"weave_ipam_ready", nil, 1},
		{"weave_ipam_events_total", map[string]string{"kind": "handed_back"}, 3},
		{"weave_dns_entries", map[string]string{"origin": "local"}, 1},
		{"weave_dns_entries", map[string]string{"origin": "remote"}, 1},
		{"weave_dns_queries_total", nil, 10},
		{"weave_dns_answers_total", map[string]string{"rcode": "NXDOMAIN"}, 3},
		{"weave_dns_upstream_failures_total", nil, 1},
		{"weave_gossip_messages_total", map[string]string{"kind": "broadcast", "direction": "tx"}, 12},
		{"weave_gossip_broadcasts_pending", nil, 1},
		{"weave_gossip_bytes_total", map[string]string{"kind": "broadcast", "direction": "tx"}, 1200},
		{"weave_gossip_bytes_total", map[string]string{"kind": "push_pull", "direction": "rx"}, 5000},
		{"weave_connection_terminations_total", map[string]string{"reason": "peer_left"}, 2},
		{"weave_connection_terminations_total", map[string]string{"reason": "heartbeat_timeout"}, 1},
	} {
		if got := value(t, fams, tc.name, tc.labels); got != tc.want {
			t.Errorf("%s%v = %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}
	h := fams["weave_dns_upstream_latency_seconds"].GetMetric()
	if len(h) != 1 || h[0].Histogram == nil {
		t.Fatalf("weave_dns_upstream_latency_seconds: %v", h)
	}
	hist := h[0].Histogram
	if hist.GetSampleCount() != 6 || hist.GetSampleSum() != 0.42 || len(hist.Bucket) != 3 ||
		hist.Bucket[0].GetCumulativeCount() != 2 || hist.Bucket[1].GetCumulativeCount() != 5 || hist.Bucket[1].GetUpperBound() != 0.1 {
		t.Errorf("upstream latency histogram %v", hist)
	}
	for name, fam := range fams {
		if fam.GetHelp() == "" {
			t.Errorf("%s has no help", name)
		}
	}
}

// TestServe: the listener serves /metrics and goes away on Close; a port
// in use is refused with advice.
func TestServe(t *testing.T) {
	f, _ := New(Options{Addr: "127.0.0.1:0"})
	if err := f.Open(testHost()); err != nil {
		t.Fatal(err)
	}
	if err := f.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	addr := f.Addr()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "weave_peers 2") {
		t.Errorf("/metrics lacks weave_peers:\n%.400s", body)
	}
	// The same listener draws the mesh.
	resp, err = http.Get("http://" + addr + "/ui/mesh.json")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"to":"3"`) {
		t.Errorf("/ui/mesh.json: %s, want the connection to peer 3:\n%.400s", resp.Status, body)
	}
	g, _ := New(Options{Addr: addr})
	if err := g.Open(testHost()); err == nil || !strings.Contains(err.Error(), "--metrics-addr") {
		t.Errorf("second listener on %s: %v", addr, err)
	}
	f.Close(context.Background())
	if _, err := http.Get("http://" + addr + "/metrics"); err == nil {
		t.Error("still serving after Close")
	}
	if _, err := New(Options{Addr: "nonsense"}); err == nil {
		t.Error("accepted --metrics-addr nonsense")
	}
}

// TestDashboardNamesExist: every weave_ metric the Grafana dashboard and
// docs/metrics.md name is one the router serves.
func TestDashboardNamesExist(t *testing.T) {
	f, _ := New(Options{Addr: "off"})
	if err := f.Open(testHost()); err != nil {
		t.Fatal(err)
	}
	fams := scrape(t, f)
	re := regexp.MustCompile(`\bweave_[a-z_]+[a-z]\b`)
	for _, path := range []string{"../packaging/grafana/weave.json", "../docs/metrics.md"} {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range re.FindAllString(string(b), -1) {
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				if base, ok := strings.CutSuffix(name, suffix); ok && fams[base].GetType() == dto.MetricType_HISTOGRAM {
					name = base
				}
			}
			if _, ok := fams[name]; !ok && !strings.HasPrefix(name, "weave_process") {
				t.Errorf("%s names %s, which is not served", path, name)
			}
		}
	}
}
