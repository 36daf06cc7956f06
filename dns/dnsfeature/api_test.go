package dnsfeature

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"weavemesh.dev/weave/api"
	"weavemesh.dev/weave/dns"
)

// noBackend stands in for the router's core routes, which these tests
// do not call.
type noBackend struct{ api.Backend }

// serve runs f's routes and status section on an API server, registered
// the way the router registers them, and returns a client of it.
func serve(t *testing.T, f *Feature) (*api.Client, string) {
	t.Helper()
	s, err := api.NewServer(api.ServerOptions{Addr: "127.0.0.1:0", Backend: noBackend{}})
	if err != nil {
		t.Fatal(err)
	}
	for _, rt := range f.Routes() {
		s.Handle(rt.Pattern, rt.Handler)
	}
	s.Handle("GET /status/"+f.Name(), api.JSON(func(r *http.Request) (any, error) { return f.Status(r.Context()) }))
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Close(ctx)
	})
	return api.NewClient(s.Addr()), s.Addr()
}

// servedFeature is testFeature with the query path a status needs: a
// forwarder with one upstream, a handler and a server without listeners.
func servedFeature(t *testing.T) (*Feature, func(bool)) {
	t.Helper()
	f, ready := testFeature(t)
	var err error
	metrics := new(dns.Metrics)
	if f.fwd, err = dns.NewForwarder(dns.ForwarderOptions{Servers: []netip.AddrPort{netip.MustParseAddrPort("192.0.2.53:53")},
		Metrics: metrics}); err != nil {
		t.Fatal(err)
	}
	if f.h, err = dns.NewHandler(dns.HandlerOptions{Store: f.store, Forwarder: f.fwd, Metrics: metrics}); err != nil {
		t.Fatal(err)
	}
	if f.srv, err = dns.NewServer(f.h, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.srv.Close() })
	return f, ready.Store
}

func getBody(t *testing.T, addr, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func TestRoundTrip(t *testing.T) {
	f, setReady := servedFeature(t)
	c, addr := serve(t, f)
	ctx := context.Background()

	// Empty lists are arrays.
	code, body := getBody(t, addr, "/status/dns")
	for _, want := range []string{`"listen":[]`, `"entries":[]`, `"answers":{}`, `"nameserver":"127.0.0.153"`, `"upstream":["192.0.2.53:53"]`} {
		if code != http.StatusOK || !strings.Contains(body, want) {
			t.Errorf("status %d %s lacks %s", code, body, want)
		}
	}
	got, err := c.DNSAdd(ctx, api.DNSRequest{Name: "web", IPs: []string{"10.32.1.5"}})
	if err != nil || got.Name != "web.weave.local." {
		t.Errorf("add: %+v %v", got, err)
	}
	st, err := c.DNSStatus(ctx)
	if err != nil || st.Domain != "weave.local." || st.TTL != 1 || len(st.Entries) != 1 ||
		st.Entries[0] != (api.DNSEntry{Name: "web.weave.local.", Address: "10.32.1.5", Peer: "00:00:00:00:00:01"}) {
		t.Errorf("status %+v %v", st, err)
	}
	l, err := c.DNSLookup(ctx, "web")
	if err != nil || len(l.IPs) != 1 || l.IPs[0] != "10.32.1.5" {
		t.Errorf("lookup: %+v %v", l, err)
	}
	if _, err := c.DNSRemove(ctx, api.DNSRequest{Name: "web"}); err != nil {
		t.Errorf("remove without IPs: %v", err)
	}
	if _, err := c.DNSLookup(ctx, "web"); !errors.Is(err, api.ErrNotFound) || !strings.Contains(err.Error(), "no DNS entry") {
		t.Errorf("lookup of a removed name: %v", err)
	}
	// The query string arrives whole: "we b&x" is one (invalid) name.
	if _, err := c.DNSLookup(ctx, "we b&x"); !errors.Is(err, api.ErrBadRequest) || !strings.Contains(err.Error(), "we b&x") {
		t.Errorf("lookup of a name with a space: %v", err)
	}

	// Validation happens before the records.
	if _, err := c.DNSAdd(ctx, api.DNSRequest{Name: "web"}); !errors.Is(err, api.ErrBadRequest) || !strings.Contains(err.Error(), "ips:") {
		t.Errorf("add without IPs: %v", err)
	}
	if _, err := c.DNSRemove(ctx, api.DNSRequest{IPs: []string{"10.0.0.1"}}); !errors.Is(err, api.ErrBadRequest) || !strings.Contains(err.Error(), "name:") {
		t.Errorf("remove without a name: %v", err)
	}
	if _, err := c.DNSLookup(ctx, " "); !errors.Is(err, api.ErrBadRequest) {
		t.Errorf("lookup without a name: %v", err)
	}

	// Errors keep their kind.
	setReady(false)
	if _, err := c.DNSAdd(ctx, api.DNSRequest{Name: "web", IPs: []string{"10.32.1.5"}}); !errors.Is(err, api.ErrNotReady) {
		t.Errorf("add while not ready: %v", err)
	}
}

func TestRoutesWhenOff(t *testing.T) {
	f, err := New(Options{Off: true})
	if err != nil {
		t.Fatal(err)
	}
	c, _ := serve(t, f)
	ctx := context.Background()
	if _, err := c.DNSStatus(ctx); !errors.Is(err, api.ErrNotFound) || !strings.Contains(err.Error(), "--no-dns") {
		t.Errorf("status: %v", err)
	}
	if _, err := c.DNSRemove(ctx, api.DNSRequest{Name: "web"}); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("remove: %v", err)
	}
}
