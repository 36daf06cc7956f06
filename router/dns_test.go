package router

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"weavemesh.dev/weave/api"
	"weavemesh.dev/weave/dns"
	"weavemesh.dev/weave/peer"
)

func TestDNSDefaults(t *testing.T) {
	tests := []struct {
		name string
		in   Config
		want Config
		err  string
	}{
		{name: "defaults", in: Config{}, want: Config{DNSDomain: "weave.local.", DNSTTL: time.Second}},
		{name: "off", in: Config{NoDNS: true, DNSDomain: "a..b"}, want: Config{NoDNS: true, DNSDomain: "a..b"}},
		{name: "given", in: Config{DNSDomain: "Example.ORG", DNSTTL: 30 * time.Second, DNSListenAddress: "10.32.0.1",
			DNSUpstream: []string{"192.0.2.1", "[fd00::1]:5353"}},
			want: Config{DNSDomain: "example.org.", DNSTTL: 30 * time.Second, DNSListenAddress: "10.32.0.1:53",
				DNSUpstream: []string{"192.0.2.1:53", "[fd00::1]:5353"}}},
		{name: "bad domain", in: Config{DNSDomain: "a..b"}, err: "--dns-domain"},
		{name: "bad ttl", in: Config{DNSTTL: 1500 * time.Millisecond}, err: "--dns-ttl"},
		{name: "bad listen", in: Config{DNSListenAddress: "localhost"}, err: "--dns-listen-address"},
		{name: "bad upstream", in: Config{DNSUpstream: []string{"dns.example"}}, err: "--dns-upstream"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.in
			err := c.dnsDefaults()
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Errorf("err %v, want one naming %s", err, tt.err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(c, tt.want) {
				t.Errorf("got %+v, %v; want %+v", c, err, tt.want)
			}
		})
	}
}

// testDNSFeature is a dnsFeature over a Store, without gossip or sockets.
func testDNSFeature(t *testing.T) *dnsFeature {
	t.Helper()
	r := &Router{cfg: Config{DNSDomain: dns.DefaultDomain, DNSTTL: time.Second}, log: slog.New(slog.DiscardHandler)}
	r.ready.Store(true)
	st, err := dns.NewStore(dns.StoreOptions{Self: peer.Name(1), Peers: func() []dns.PeerStatus { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	return &dnsFeature{r: r, log: r.log, domain: dns.DefaultDomain, store: st,
		manualPath: filepath.Join(t.TempDir(), dns.ManualFile), written: map[string]string{}}
}

func TestDNSBackend(t *testing.T) {
	f := testDNSFeature(t)
	ctx := context.Background()
	got, err := f.DNSAdd(ctx, api.DNSRequest{Name: "Web", IPs: []string{"10.32.1.5", " fd00::5 "}})
	if err != nil || got.Name != "web.weave.local." || !reflect.DeepEqual(got.IPs, []string{"10.32.1.5", "fd00::5"}) {
		t.Fatalf("add: %+v %v", got, err)
	}
	l, err := f.DNSLookup(ctx, "web")
	if err != nil || !reflect.DeepEqual(l.IPs, []string{"10.32.1.5", "fd00::5"}) {
		t.Errorf("lookup: %+v %v", l, err)
	}
	l, err = f.DNSLookup(ctx, "10.32.1.5")
	if err != nil || !reflect.DeepEqual(l.Names, []string{"web.weave.local."}) {
		t.Errorf("reverse lookup: %+v %v", l, err)
	}
	// Kept across restarts.
	saved, err := dns.LoadManual(f.manualPath)
	if err != nil || len(saved["web.weave.local."]) != 2 {
		t.Errorf("saved: %v %v", saved, err)
	}
	if _, err := f.DNSRemove(ctx, api.DNSRequest{Name: "web", IPs: []string{"fd00::5"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.DNSRemove(ctx, api.DNSRequest{Name: "web", IPs: []string{"fd00::5"}}); err != nil {
		t.Errorf("removing twice: %v", err)
	}
	if l, _ := f.DNSLookup(ctx, "web"); !reflect.DeepEqual(l.IPs, []string{"10.32.1.5"}) {
		t.Errorf("after remove: %+v", l)
	}
	if _, err := f.DNSRemove(ctx, api.DNSRequest{Name: "web"}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.DNSLookup(ctx, "web"); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("lookup after removing all: %v", err)
	}
	if _, err := f.DNSLookup(ctx, "10.9.9.9"); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("reverse lookup of an unknown address: %v", err)
	}
	for _, req := range []api.DNSRequest{
		{Name: "a..b", IPs: []string{"10.0.0.1"}},
		{Name: "web", IPs: []string{"10.0.0.1/24"}},
		{Name: "web", IPs: []string{"fe80::1%eth0"}},
	} {
		if _, err := f.DNSAdd(ctx, req); !errors.Is(err, api.ErrBadRequest) {
			t.Errorf("add %+v: %v, want a bad request", req, err)
		}
	}
	f.r.ready.Store(false)
	if _, err := f.DNSAdd(ctx, api.DNSRequest{Name: "x", IPs: []string{"10.0.0.1"}}); !errors.Is(err, api.ErrNotReady) {
		t.Errorf("add before ready: %v", err)
	}
}

func TestDNSHookRecords(t *testing.T) {
	f := testDNSFeature(t)
	ctx := context.Background()
	if err := f.prepareAttach(ctx, &attachPlan{Name: "bad name"}); !errors.Is(err, api.ErrBadRequest) {
		t.Errorf("bad name: %v", err)
	}
	f.register("ep1", "web", []string{"10.32.1.5/12", "fd00::5/64"})
	f.register("ep2", "db", []string{"10.32.1.6/12"})
	if got := f.store.Lookup("web.weave.local."); !reflect.DeepEqual(got, []netip.Addr{netip.MustParseAddr("10.32.1.5"), netip.MustParseAddr("fd00::5")}) {
		t.Errorf("web: %v", got)
	}
	// reconcile keeps the surviving endpoints' names and drops the rest.
	// (Their namespaces do not exist here: no listener, just a warning.)
	h, err := dns.NewHandler(dns.HandlerOptions{Store: f.store})
	if err != nil {
		t.Fatal(err)
	}
	if f.srv, err = dns.NewServer(h, nil); err != nil {
		t.Fatal(err)
	}
	defer f.srv.Close()
	f.netnsDir, f.etcNetns = t.TempDir(), t.TempDir()
	f.reconcile(ctx, []api.Endpoint{{ID: "ep1", Netns: "/nonexistent/ns", Name: "web", CIDRs: []string{"10.32.1.5/12"}}})
	if got := f.store.OwnEndpoints(); !reflect.DeepEqual(got, []string{"ep1"}) {
		t.Errorf("endpoints %v", got)
	}
	if got := f.store.Lookup("web.weave.local."); !reflect.DeepEqual(got, []netip.Addr{netip.MustParseAddr("10.32.1.5")}) {
		t.Errorf("web after reconcile: %v", got)
	}
	// Attaching again without a name removes the endpoint's names.
	f.register("ep1", "", []string{"10.32.1.5/12"})
	if got := f.store.Lookup("web.weave.local."); len(got) != 0 {
		t.Errorf("web after unnaming: %v", got)
	}
}
