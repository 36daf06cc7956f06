package api

import (
	"context"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
)

type fakeDNS struct {
	mu      sync.Mutex // guards the fields
	status  DNSStatus
	added   []DNSRequest
	removed []DNSRequest
	looked  []string
	err     error
}

func (f *fakeDNS) DNSStatus(context.Context) (DNSStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.status, f.err
}

func (f *fakeDNS) DNSAdd(_ context.Context, req DNSRequest) (DNSRequest, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.added = append(f.added, req)
	req.Name += ".weave.local."
	return req, f.err
}

func (f *fakeDNS) DNSRemove(_ context.Context, req DNSRequest) (DNSRequest, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.removed = append(f.removed, req)
	return req, f.err
}

func (f *fakeDNS) DNSLookup(_ context.Context, name string) (DNSLookup, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.looked = append(f.looked, name)
	if f.err != nil {
		return DNSLookup{}, f.err
	}
	if name == "nosuch" {
		return DNSLookup{}, NotFound("no DNS entry for nosuch.weave.local.")
	}
	return DNSLookup{Name: name + ".weave.local.", IPs: []string{"10.32.1.5"}}, nil
}

func TestDNSRoundTrip(t *testing.T) {
	s, c := startServer(t, &fakeBackend{})
	f := &fakeDNS{status: DNSStatus{Domain: "weave.local.", TTL: 1, Nameserver: "127.0.0.153",
		Entries:  []DNSEntry{{Name: "web.weave.local.", Address: "10.32.1.5", Peer: "aa:bb:cc:dd:ee:ff"}},
		Counters: DNSCounters{Queries: 3, Answers: map[string]uint64{"NOERROR": 3}}}}
	s.HandleDNS(f)
	ctx := context.Background()

	st, err := c.DNSStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := f.status
	want.Listen, want.Upstream = []string{}, []string{}
	if !reflect.DeepEqual(st, want) {
		t.Errorf("status\n got %+v\nwant %+v", st, want)
	}
	got, err := c.DNSAdd(ctx, DNSRequest{Name: "web", IPs: []string{"10.32.1.5"}})
	if err != nil || got.Name != "web.weave.local." {
		t.Errorf("add: %+v %v", got, err)
	}
	if _, err := c.DNSRemove(ctx, DNSRequest{Name: "web"}); err != nil {
		t.Errorf("remove without IPs: %v", err)
	}
	l, err := c.DNSLookup(ctx, "we b&x")
	if err != nil || l.IPs[0] != "10.32.1.5" {
		t.Errorf("lookup: %+v %v", l, err)
	}
	if _, err := c.DNSLookup(ctx, "nosuch"); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "no DNS entry") {
		t.Errorf("lookup of an unknown name: %v", err)
	}
	f.mu.Lock()
	if len(f.added) != 1 || len(f.removed) != 1 || f.looked[0] != "we b&x" {
		t.Errorf("backend saw added %v removed %v looked %v", f.added, f.removed, f.looked)
	}
	f.mu.Unlock()

	// Validation happens before the backend.
	if _, err := c.DNSAdd(ctx, DNSRequest{Name: "web"}); !errors.Is(err, ErrBadRequest) {
		t.Errorf("add without IPs: %v", err)
	}
	if _, err := c.DNSRemove(ctx, DNSRequest{IPs: []string{"10.0.0.1"}}); !errors.Is(err, ErrBadRequest) {
		t.Errorf("remove without a name: %v", err)
	}
	if _, err := c.DNSLookup(ctx, " "); !errors.Is(err, ErrBadRequest) {
		t.Errorf("lookup without a name: %v", err)
	}
	code, _, body := rawRequest(t, s.Addr(), http.MethodGet, "/status/dns", "", "")
	if code != http.StatusOK || !strings.Contains(body, `"nameserver":"127.0.0.153"`) {
		t.Errorf("raw status: %d %s", code, body)
	}

	// Backend errors keep their kind.
	f.mu.Lock()
	f.err = NotReady("starting")
	f.mu.Unlock()
	if _, err := c.DNSStatus(ctx); !errors.Is(err, ErrNotReady) {
		t.Errorf("status error: %v", err)
	}
}

func TestDNSEmptyListsAreArrays(t *testing.T) {
	s, _ := startServer(t, &fakeBackend{})
	s.HandleDNS(&fakeDNS{})
	_, _, body := rawRequest(t, s.Addr(), http.MethodGet, "/status/dns", "", "")
	for _, want := range []string{`"listen":[]`, `"upstream":[]`, `"entries":[]`, `"answers":{}`} {
		if !strings.Contains(body, want) {
			t.Errorf("body %s lacks %s", body, want)
		}
	}
}
