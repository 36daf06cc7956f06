package main

import (
	"context"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"weavemesh.dev/weave/api"
	"weavemesh.dev/weave/router"
)

type fakeDNS struct {
	mu      sync.Mutex // guards the fields
	status  api.DNSStatus
	added   []api.DNSRequest
	removed []api.DNSRequest
	err     error
}

func (f *fakeDNS) DNSStatus(context.Context) (api.DNSStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.status, f.err
}

func (f *fakeDNS) DNSAdd(_ context.Context, r api.DNSRequest) (api.DNSRequest, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.added = append(f.added, r)
	return r, f.err
}

func (f *fakeDNS) DNSRemove(_ context.Context, r api.DNSRequest) (api.DNSRequest, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.removed = append(f.removed, r)
	return r, f.err
}

func (f *fakeDNS) DNSLookup(_ context.Context, name string) (api.DNSLookup, error) {
	switch name {
	case "web":
		return api.DNSLookup{Name: "web.weave.local.", IPs: []string{"10.32.1.5", "10.32.1.6"}}, nil
	case "10.32.1.5":
		return api.DNSLookup{Name: name, Names: []string{"web.weave.local."}}, nil
	}
	return api.DNSLookup{}, api.NotFound("no DNS entry for %s.weave.local.", name)
}

// startDNSAPI serves a fake router with weaveDNS routes.
func startDNSAPI(t *testing.T, f *fakeDNS) string {
	t.Helper()
	s, err := api.NewServer(api.ServerOptions{Addr: "127.0.0.1:0", Backend: &fakeBackend{}})
	if err != nil {
		t.Fatal(err)
	}
	// The weaveDNS routes as the router serves them, over the fake.
	for _, rt := range []api.Route{
		{Pattern: "GET /status/dns", Handler: api.JSON(func(r *http.Request) (any, error) { return f.DNSStatus(r.Context()) })},
		{Pattern: "POST /dns/add", Handler: api.Body(func(r *http.Request, req api.DNSRequest) (any, error) { return f.DNSAdd(r.Context(), req) })},
		{Pattern: "POST /dns/remove", Handler: api.Body(func(r *http.Request, req api.DNSRequest) (any, error) { return f.DNSRemove(r.Context(), req) })},
		{Pattern: "GET /dns/lookup", Handler: api.JSON(func(r *http.Request) (any, error) {
			return f.DNSLookup(r.Context(), r.URL.Query().Get("name"))
		})},
	} {
		s.Handle(rt.Pattern, rt.Handler)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Close(ctx)
	})
	return s.Addr()
}

var goldenDNS = api.DNSStatus{
	Domain: "weave.local.", TTL: 1, Nameserver: "127.0.0.153",
	Listen: []string{"127.0.0.1:53"}, Upstream: []string{"192.0.2.53:53"},
	Entries: []api.DNSEntry{
		{Name: "web.weave.local.", Address: "10.32.1.6", Peer: "aa:bb:cc:dd:ee:02", Nickname: "host2", Hidden: true},
		{Name: "web.weave.local.", Address: "10.32.1.5", Peer: "aa:bb:cc:dd:ee:01", Nickname: "host1", Endpoint: "0123456789abcdef"},
	},
	Counters: api.DNSCounters{Queries: 10, Local: 7, Forwarded: 3, UpstreamFailures: 1,
		Answers: map[string]uint64{"NOERROR": 9, "NXDOMAIN": 1}},
}

func TestDNSCommands(t *testing.T) {
	f := &fakeDNS{status: goldenDNS}
	addr := startDNSAPI(t, f)
	var jsonStatus strings.Builder
	if err := writeJSON(&jsonStatus, goldenDNS); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		args   []string
		code   int
		stdout string // exact when code is 0
		stderr string // substring
	}{
		{name: "status dns", args: []string{"status", "dns"}, stdout: `Domain: weave.local. (TTL 1s)
Nameserver for containers: 127.0.0.153
Listening on: 127.0.0.1:53
Upstream: 192.0.2.53:53
Queries: 10 (7 local, 3 forwarded, 1 upstream failures, 0 truncated, 0 malformed)
Answers: 9 NOERROR, 1 NXDOMAIN

NAME              ADDRESS    PEER               NICKNAME  ENDPOINT          STATE
web.weave.local.  10.32.1.5  aa:bb:cc:dd:ee:01  host1     0123456789abcdef  ok
web.weave.local.  10.32.1.6  aa:bb:cc:dd:ee:02  host2     (dns-add)         hidden (peer gone)
`},
		{name: "status dns json", args: []string{"status", "dns", "--json"}, stdout: jsonStatus.String()},
		{name: "status json dns", args: []string{"status", "--json", "dns"}, stdout: jsonStatus.String()},
		{name: "dns-args", args: []string{"dns-args"}, stdout: "--dns=127.0.0.153 --dns-search=weave.local\n"},
		{name: "dns-add", args: []string{"dns-add", "10.32.1.5", "FD00::1", "web"}, stdout: ""},
		{name: "dns-remove", args: []string{"dns-remove", "10.32.1.5", "web"}, stdout: ""},
		{name: "dns-remove all", args: []string{"dns-remove", "web"}, stdout: ""},
		{name: "dns-lookup", args: []string{"dns-lookup", "web"}, stdout: "10.32.1.5\n10.32.1.6\n"},
		{name: "dns-lookup reverse", args: []string{"dns-lookup", "10.32.1.5"}, stdout: "web.weave.local.\n"},
		{name: "dns-lookup unknown", args: []string{"dns-lookup", "nosuch"}, code: 1, stderr: "no DNS entry for nosuch.weave.local."},
		{name: "dns-add no ip", args: []string{"dns-add", "web"}, code: 2, stderr: "give one or more IP addresses and then NAME"},
		{name: "dns-add prefix", args: []string{"dns-add", "10.32.1.5/12", "web"}, code: 2, stderr: "without prefix length"},
		{name: "dns-add not ip", args: []string{"dns-add", "web", "db"}, code: 2, stderr: `"web" is not an IP address`},
		{name: "dns-add name last", args: []string{"dns-add", "web", "10.32.1.5"}, code: 2, stderr: "the last argument is the name"},
		{name: "dns-lookup two", args: []string{"dns-lookup", "a", "b"}, code: 2, stderr: "give exactly one NAME or IP"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, stdout, stderr := testApp(t)
			code := a.run(context.Background(), append([]string{"--http-addr", addr}, tc.args...))
			if code != tc.code {
				t.Fatalf("exit code %d, want %d; stderr:\n%s", code, tc.code, stderr)
			}
			if tc.code == 0 && stdout.String() != tc.stdout {
				t.Errorf("stdout\n%s\nwant\n%s", stdout, tc.stdout)
			}
			if !strings.Contains(stderr.String(), tc.stderr) {
				t.Errorf("stderr %q does not contain %q", stderr, tc.stderr)
			}
		})
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if want := []api.DNSRequest{{Name: "web", IPs: []string{"10.32.1.5", "fd00::1"}}}; !reflect.DeepEqual(f.added, want) {
		t.Errorf("added %+v, want %+v", f.added, want)
	}
	if want := []api.DNSRequest{{Name: "web", IPs: []string{"10.32.1.5"}}, {Name: "web"}}; !reflect.DeepEqual(f.removed, want) {
		t.Errorf("removed %+v, want %+v", f.removed, want)
	}
}

func TestDNSOffMessage(t *testing.T) {
	f := &fakeDNS{err: api.NotFound("weaveDNS is off on this router (it was started with --no-dns)")}
	addr := startDNSAPI(t, f)
	a, _, stderr := testApp(t)
	if code := a.run(context.Background(), []string{"--http-addr", addr, "dns-args"}); code != 1 ||
		!strings.Contains(stderr.String(), "--no-dns") {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
}

func TestDNSRouterFlags(t *testing.T) {
	testRouterFlags(t, dnsArgs, []routerFlagCase{
		{name: "defaults", args: nil, check: func(c router.Config) bool {
			return c.DNSDomain == "" && c.DNSListenAddress == "" && c.DNSTTL == 0 && c.DNSUpstream == nil && !c.NoDNS
		}},
		{name: "all", args: []string{"--dns-domain", "Example.ORG", "--dns-listen-address", "10.32.0.1",
			"--dns-ttl", "30", "--dns-upstream", "192.0.2.1,[fd00::1]:5353", "--no-dns"},
			check: func(c router.Config) bool {
				return c.DNSDomain == "example.org" && c.DNSListenAddress == "10.32.0.1:53" && c.DNSTTL == 30*time.Second &&
					reflect.DeepEqual(c.DNSUpstream, []string{"192.0.2.1:53", "[fd00::1]:5353"}) && c.NoDNS
			}},
		{name: "default domain spelled out", args: []string{"--dns-domain", "weave.local."},
			check: func(c router.Config) bool { return c.DNSDomain == "" }},
		{name: "bad domain", args: []string{"--dns-domain", "a..b"}, errText: "--dns-domain"},
		{name: "bad ttl", args: []string{"--dns-ttl", "0"}, errText: "--dns-ttl 0: must be 1-86400 seconds"},
		{name: "bad upstream", args: []string{"--dns-upstream", "dns.example"}, errText: "--dns-upstream"},
		{name: "bad listen", args: []string{"--dns-listen-address", "localhost:53"}, errText: "--dns-listen-address"},
	})
}
