package dnsfeature

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"weavemesh.dev/weave/api"
	"weavemesh.dev/weave/dns"
	"weavemesh.dev/weave/feature"
	"weavemesh.dev/weave/gossip"
	"weavemesh.dev/weave/peer"
)

func TestOptionsDefaults(t *testing.T) {
	tests := []struct {
		name string
		in   Options
		want Options
		err  string
	}{
		{name: "defaults", in: Options{}, want: Options{Domain: "weave.local.", TTL: time.Second}},
		{name: "off", in: Options{Off: true, Domain: "a..b"}, want: Options{Off: true, Domain: "a..b"}},
		{name: "given", in: Options{Domain: "Example.ORG", TTL: 30 * time.Second, ListenAddress: "10.32.0.1",
			Upstream: []string{"192.0.2.1", "[fd00::1]:5353"}},
			want: Options{Domain: "example.org.", TTL: 30 * time.Second, ListenAddress: "10.32.0.1:53",
				Upstream: []string{"192.0.2.1:53", "[fd00::1]:5353"}}},
		{name: "bad domain", in: Options{Domain: "a..b"}, err: "--dns-domain"},
		{name: "bad ttl", in: Options{TTL: 1500 * time.Millisecond}, err: "--dns-ttl"},
		{name: "bad listen", in: Options{ListenAddress: "localhost"}, err: "--dns-listen-address"},
		{name: "bad upstream", in: Options{Upstream: []string{"dns.example"}}, err: "--dns-upstream"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.in.withDefaults()
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Errorf("err %v, want one naming %s", err, tt.err)
				}
				if _, err := New(tt.in); err == nil {
					t.Error("New accepted the options")
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

// testHost is a feature.Host with no mesh, no bridge and an empty
// registry; ready says what Ready answers.
func testHost(t *testing.T, ready *atomic.Bool) feature.Host {
	return feature.Host{
		Self: peer.Name(1), Nickname: "host1", DataDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler),
		Members: func() []gossip.Member { return nil },
		Ready: func() error {
			if !ready.Load() {
				return api.NotReady("the router is starting or stopping; try again in a moment")
			}
			return nil
		},
		Endpoints: func() []api.Endpoint { return nil },
	}
}

// testFeature is a Feature over a Store, without gossip or sockets.
func testFeature(t *testing.T) (*Feature, *atomic.Bool) {
	t.Helper()
	ready := new(atomic.Bool)
	ready.Store(true)
	f, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	f.host = testHost(t, ready)
	f.log = f.host.Logger
	if f.store, err = dns.NewStore(dns.StoreOptions{Self: peer.Name(1), Peers: func() []dns.PeerStatus { return nil }}); err != nil {
		t.Fatal(err)
	}
	f.manualPath = filepath.Join(f.host.DataDir, dns.ManualFile)
	return f, ready
}

func TestRequests(t *testing.T) {
	f, ready := testFeature(t)
	ctx := context.Background()
	got, err := f.add(ctx, api.DNSRequest{Name: "Web", IPs: []string{"10.32.1.5", " fd00::5 "}})
	if err != nil || got.Name != "web.weave.local." || !reflect.DeepEqual(got.IPs, []string{"10.32.1.5", "fd00::5"}) {
		t.Fatalf("add: %+v %v", got, err)
	}
	l, err := f.lookup(ctx, "web")
	if err != nil || !reflect.DeepEqual(l.IPs, []string{"10.32.1.5", "fd00::5"}) {
		t.Errorf("lookup: %+v %v", l, err)
	}
	l, err = f.lookup(ctx, "10.32.1.5")
	if err != nil || !reflect.DeepEqual(l.Names, []string{"web.weave.local."}) {
		t.Errorf("reverse lookup: %+v %v", l, err)
	}
	// Kept across restarts.
	saved, err := dns.LoadManual(f.manualPath)
	if err != nil || len(saved["web.weave.local."]) != 2 {
		t.Errorf("saved: %v %v", saved, err)
	}
	if _, err := f.remove(ctx, api.DNSRequest{Name: "web", IPs: []string{"fd00::5"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.remove(ctx, api.DNSRequest{Name: "web", IPs: []string{"fd00::5"}}); err != nil {
		t.Errorf("removing twice: %v", err)
	}
	if l, _ := f.lookup(ctx, "web"); !reflect.DeepEqual(l.IPs, []string{"10.32.1.5"}) {
		t.Errorf("after remove: %+v", l)
	}
	if _, err := f.remove(ctx, api.DNSRequest{Name: "web"}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.lookup(ctx, "web"); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("lookup after removing all: %v", err)
	}
	if _, err := f.lookup(ctx, "10.9.9.9"); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("reverse lookup of an unknown address: %v", err)
	}
	for _, req := range []api.DNSRequest{
		{Name: "a..b", IPs: []string{"10.0.0.1"}},
		{Name: "web", IPs: []string{"10.0.0.1/24"}},
		{Name: "web", IPs: []string{"fe80::1%eth0"}},
	} {
		if _, err := f.add(ctx, req); !errors.Is(err, api.ErrBadRequest) {
			t.Errorf("add %+v: %v, want a bad request", req, err)
		}
	}
	ready.Store(false)
	if _, err := f.add(ctx, api.DNSRequest{Name: "x", IPs: []string{"10.0.0.1"}}); !errors.Is(err, api.ErrNotReady) {
		t.Errorf("add before ready: %v", err)
	}
}

func TestHookRecords(t *testing.T) {
	f, _ := testFeature(t)
	ctx := context.Background()
	if err := f.PrepareAttach(ctx, &feature.AttachPlan{Name: "bad name"}); !errors.Is(err, api.ErrBadRequest) {
		t.Errorf("bad name: %v", err)
	}
	f.register("ep1", "web", []string{"10.32.1.5/12", "fd00::5/64"})
	f.register("ep2", "db", []string{"10.32.1.6/12"})
	if got := f.store.Lookup("web.weave.local."); !reflect.DeepEqual(got, []netip.Addr{netip.MustParseAddr("10.32.1.5"), netip.MustParseAddr("fd00::5")}) {
		t.Errorf("web: %v", got)
	}
	// Reconcile keeps the surviving endpoints' names and drops the rest.
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
	f.Reconcile(ctx, []api.Endpoint{{ID: "ep1", Netns: "/nonexistent/ns", Name: "web", CIDRs: []string{"10.32.1.5/12"}}})
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

// With weaveDNS off the feature declares no channel, its hooks do
// nothing, and its routes and status say it is off.
func TestOff(t *testing.T) {
	f, err := New(Options{Off: true})
	if err != nil {
		t.Fatal(err)
	}
	ready := new(atomic.Bool)
	ready.Store(true)
	if err := f.Open(testHost(t, ready)); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if len(f.Channels()) != 0 {
		t.Errorf("channels %v", f.Channels())
	}
	if err := f.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer f.Close(ctx)
	p := &feature.AttachPlan{Name: "bad name"}
	if err := f.PrepareAttach(ctx, p); err != nil {
		t.Errorf("prepare: %v", err)
	}
	if err := f.Attached(ctx, p, api.Endpoint{ID: "ep1"}); err != nil {
		t.Errorf("attached: %v", err)
	}
	f.Detached(ctx, api.Endpoint{ID: "ep1"})
	f.Reconcile(ctx, nil)
	if _, err := f.Status(ctx); !errors.Is(err, api.ErrNotFound) || !strings.Contains(err.Error(), "--no-dns") {
		t.Errorf("status: %v", err)
	}
	if _, err := f.add(ctx, api.DNSRequest{Name: "web", IPs: []string{"10.0.0.1"}}); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("add: %v", err)
	}
	if _, err := f.lookup(ctx, "web"); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("lookup: %v", err)
	}
}

// Another feature names endpoints of its own.
func TestServices(t *testing.T) {
	f, _ := testFeature(t)
	a := netip.MustParseAddr("10.32.1.9")
	if err := f.RegisterEndpoint("docker:ep1", "db", []netip.Addr{a}); err != nil {
		t.Fatal(err)
	}
	if got := f.store.Lookup("db.weave.local."); !reflect.DeepEqual(got, []netip.Addr{a}) {
		t.Errorf("db: %v", got)
	}
	f.UnregisterEndpoint("docker:ep1")
	if got := f.store.Lookup("db.weave.local."); len(got) != 0 {
		t.Errorf("db after unregister: %v", got)
	}
	off, err := New(Options{Off: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := off.RegisterEndpoint("docker:ep1", "db", []netip.Addr{a}); !errors.Is(err, ErrOff) {
		t.Errorf("register with DNS off: %v", err)
	}
	off.UnregisterEndpoint("docker:ep1")
}
