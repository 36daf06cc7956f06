package docker

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

var fuzzMethods = []string{
	"NetworkDriver.CreateNetwork", "NetworkDriver.DeleteNetwork", "NetworkDriver.CreateEndpoint",
	"NetworkDriver.DeleteEndpoint", "NetworkDriver.EndpointOperInfo", "NetworkDriver.Join", "NetworkDriver.Leave",
	"NetworkDriver.DiscoverNew", "NetworkDriver.ProgramExternalConnectivity",
	"IpamDriver.RequestPool", "IpamDriver.ReleasePool", "IpamDriver.RequestAddress", "IpamDriver.ReleaseAddress",
}

// FuzzRequests feeds every method arbitrary bodies: the plugin must answer
// each with a JSON reply of a status the protocol knows, never panic.
func FuzzRequests(f *testing.F) {
	f.Add(uint8(0), []byte(`{"NetworkID":"n","IPv4Data":[{"Pool":"10.32.0.0/12"}]}`))
	f.Add(uint8(2), []byte(`{"NetworkID":"n","EndpointID":"e","Interface":{"Address":"10.32.0.5/12"}}`))
	f.Add(uint8(5), []byte(`{"NetworkID":"n","EndpointID":"0123456789abcdef"}`))
	f.Add(uint8(9), []byte(`{"Pool":"10.32.4.0/24","SubPool":"10.32.4.128/25"}`))
	f.Add(uint8(11), []byte(`{"PoolID":"ab@10.32.0.0/12","Address":"10.32.0.9"}`))
	f.Add(uint8(12), []byte(`{"PoolID":"ab@10.32.0.0/12@10.32.1.0/24","Address":"10.32.1.9/12"}`))
	f.Add(uint8(1), []byte(`{"NetworkID":`))
	f.Fuzz(func(t *testing.T, m uint8, body []byte) {
		p, _ := New(Options{Router: newFake()})
		method := fuzzMethods[int(m)%len(fuzzMethods)]
		req := httptest.NewRequest(http.MethodPost, "/"+method, bytes.NewReader(body))
		w := httptest.NewRecorder()
		p.ServeHTTP(w, req)
		switch w.Code {
		case http.StatusOK, http.StatusBadRequest, http.StatusInternalServerError:
		default:
			t.Fatalf("%s %q: status %d", method, body, w.Code)
		}
		if !strings.HasPrefix(w.Body.String(), "{") {
			t.Fatalf("%s %q: reply %q is not a JSON object", method, body, w.Body.String())
		}
	})
}

// FuzzPoolID: a pool id parses to subnets that print back to it, or is
// refused.
func FuzzPoolID(f *testing.F) {
	f.Add("ab@10.32.0.0/12")
	f.Add("ab@10.32.0.0/12@10.32.1.0/24")
	f.Add("@@")
	f.Fuzz(func(t *testing.T, s string) {
		pl, err := parsePool(s)
		if err != nil {
			return
		}
		if again, err := parsePool(pl.String()); err != nil || again != pl {
			t.Fatalf("%q parsed as %+v, which prints as %q and parses as %+v, %v", s, pl, pl.String(), again, err)
		}
	})
}
