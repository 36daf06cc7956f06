package inproc

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"slices"

	"weavemesh.dev/weave/api"
	"weavemesh.dev/weave/gossip"
	"weavemesh.dev/weave/peer"
	"weavemesh.dev/weave/router"
)

// What a test or benchmark asks of a router: through its HTTP API, served
// in this process, as the weave CLI would ask it, and through its gossip
// and topology state.

// Call sends one request to r's HTTP API in this process and decodes the
// JSON answer into out (unless nil). An error status is an error.
func Call(r *router.Router, method, path string, body, out any) error {
	var rd *bytes.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("inproc: encode %s %s: %w", method, path, err)
		}
		rd = bytes.NewReader(b)
	} else {
		rd = bytes.NewReader(nil)
	}
	req := httptest.NewRequest(method, "http://"+router.DefaultHTTPAddr+path, rd)
	req.Host = router.DefaultHTTPAddr
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	w := httptest.NewRecorder()
	r.ServeHTTP(w, req)
	if w.Code/100 != 2 {
		return fmt.Errorf("inproc: %s %s: %w", method, path,
			&api.StatusError{Code: w.Code, Err: errors.New(string(bytes.TrimSpace(w.Body.Bytes())))})
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(w.Body.Bytes(), out); err != nil {
		return fmt.Errorf("inproc: decode %s %s: %w", method, path, err)
	}
	return nil
}

// AddDNS adds the record name -> ip on r, as weave dns-add does.
func AddDNS(r *router.Router, name string, ip netip.Addr) error {
	return Call(r, http.MethodPost, "/dns/add", api.DNSRequest{Name: name, IPs: []string{ip.String()}}, nil)
}

// RemoveDNS removes every address of name that r added.
func RemoveDNS(r *router.Router, name string) error {
	return Call(r, http.MethodPost, "/dns/remove", api.DNSRequest{Name: name}, nil)
}

// LookupDNS returns the addresses r knows for name (none: nil, no error).
func LookupDNS(r *router.Router, name string) ([]string, error) {
	var l api.DNSLookup
	err := Call(r, http.MethodGet, "/dns/lookup?name="+url.QueryEscape(name), nil, &l)
	if err != nil {
		var se *api.StatusError
		if errors.As(err, &se) && se.Code == http.StatusNotFound {
			return nil, nil
		}
		return nil, err
	}
	return l.IPs, nil
}

// allocator is what IP allocation offers other features.
type allocator interface {
	Allocate(ctx context.Context, owner string, subnet netip.Prefix) (netip.Prefix, error)
	Release(owner string) []netip.Addr
	Status(ctx context.Context) (any, error)
}

func ipamOf(r *router.Router) (allocator, error) {
	f, ok := r.Feature("ipam")
	if !ok {
		return nil, fmt.Errorf("inproc: router %s has no IP allocation", r.Name())
	}
	a, ok := f.(allocator)
	if !ok {
		return nil, fmt.Errorf("inproc: IP allocation of %s offers no Allocate", r.Name())
	}
	return a, nil
}

// Allocate allocates one address for owner on r, from the default
// subnet, as weave attach does.
func Allocate(ctx context.Context, r *router.Router, owner string) (netip.Prefix, error) {
	a, err := ipamOf(r)
	if err != nil {
		return netip.Prefix{}, err
	}
	return a.Allocate(ctx, owner, netip.Prefix{})
}

// Release frees the addresses of owner on r.
func Release(r *router.Router, owner string) ([]netip.Addr, error) {
	a, err := ipamOf(r)
	if err != nil {
		return nil, err
	}
	return a.Release(owner), nil
}

// IPAMStatus is r's IP allocation status (GET /status/ipam).
func IPAMStatus(ctx context.Context, r *router.Router) (api.IPAMStatus, error) {
	a, err := ipamOf(r)
	if err != nil {
		return api.IPAMStatus{}, err
	}
	st, err := a.Status(ctx)
	if err != nil {
		return api.IPAMStatus{}, err
	}
	s, ok := st.(api.IPAMStatus)
	if !ok {
		return api.IPAMStatus{}, fmt.Errorf("inproc: IP allocation status is a %T", st)
	}
	return s, nil
}

// Allocated is how many addresses r believes p has allocated, as p last
// gossiped it.
func Allocated(ctx context.Context, r *router.Router, p peer.Name) (uint32, error) {
	st, err := IPAMStatus(ctx, r)
	if err != nil {
		return 0, err
	}
	want := p.String()
	for _, s := range st.Peers {
		if s.Name == want {
			return s.Allocated, nil
		}
	}
	return 0, nil
}

// Sees reports whether r lists every peer of names as alive and holds its
// topology entry. It allocates nothing, so polling hundreds of routers
// stays cheap.
func Sees(r *router.Router, names []peer.Name) bool {
	ms := r.Gossip().Members()
	topo := r.Topology()
	for _, n := range names {
		if !listsAlive(ms, n) {
			return false
		}
		if _, ok := topo.Entry(n); !ok {
			return false
		}
	}
	return true
}

// SeesAlive reports whether r lists every peer of names as alive.
func SeesAlive(r *router.Router, names []peer.Name) bool {
	ms := r.Gossip().Members()
	for _, n := range names {
		if !listsAlive(ms, n) {
			return false
		}
	}
	return true
}

// listsAlive looks n up in ms, sorted by name as Members returns it.
func listsAlive(ms []gossip.Member, n peer.Name) bool {
	i, ok := slices.BinarySearchFunc(ms, n, func(m gossip.Member, n peer.Name) int { return cmp.Compare(m.Name, n) })
	return ok && (ms[i].State == gossip.Alive || ms[i].State == gossip.Suspect)
}

// AliveSet is the set of members r lists as alive, itself included.
func AliveSet(r *router.Router) map[peer.Name]bool {
	ms := r.Gossip().Members()
	out := make(map[peer.Name]bool, len(ms))
	for _, m := range ms {
		if m.State == gossip.Alive || m.State == gossip.Suspect {
			out[m.Name] = true
		}
	}
	return out
}
