package ui

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"weavemesh.dev/weave/api"
	"weavemesh.dev/weave/feature"
)

// fakeRouter is the router's view, with counters a test moves.
type fakeRouter struct {
	mu      sync.Mutex
	now     time.Time
	txBytes uint64
	connErr error
}

func (f *fakeRouter) clock() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fakeRouter) advance(d time.Duration, tx uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = f.now.Add(d)
	f.txBytes += tx
}

func (f *fakeRouter) options() Options {
	return Options{
		Self: "a", Now: f.clock,
		Peers: func(context.Context) ([]api.Peer, error) {
			return []api.Peer{
				{Name: "a", Nickname: "host1", State: "alive", Self: true},
				{Name: "b", Nickname: `<script>alert("b")</script>`, State: "alive"},
			}, nil
		},
		Connections: func(context.Context) ([]api.Connection, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			if f.connErr != nil {
				return nil, f.connErr
			}
			return []api.Connection{{Peer: "b", State: "established", Datapath: "sleeve", TxBytes: f.txBytes}}, nil
		},
		Datapaths: func() []feature.DatapathStats {
			f.mu.Lock()
			defer f.mu.Unlock()
			return []feature.DatapathStats{{Name: "sleeve", TxBytes: f.txBytes}}
		},
	}
}

func serve(t *testing.T, o Options) *httptest.Server {
	t.Helper()
	h, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	h.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

func TestHandlerRoutes(t *testing.T) {
	f := &fakeRouter{now: time.Unix(1000, 0)}
	srv := serve(t, f.options())
	for _, tc := range []struct {
		path, wantType string
		wantStatus     int
		wantBody       string
	}{
		{"/ui", "", http.StatusMovedPermanently, ""},
		{"/ui/", "text/html; charset=utf-8", http.StatusOK, `<svg id="mesh"`},
		{"/ui/mesh.js", "text/javascript; charset=utf-8", http.StatusOK, "fetch(\"mesh.json\""},
		{"/ui/mesh.css", "text/css; charset=utf-8", http.StatusOK, ".edge[data-datapath=\"fastdp\"]"},
		{"/ui/mesh.json", "application/json", http.StatusOK, `"self":"a"`},
		{"/ui/nothing", "", http.StatusNotFound, ""},
	} {
		t.Run(tc.path, func(t *testing.T) {
			resp, body := get(t, srv.URL+tc.path)
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.wantStatus)
			}
			if tc.wantStatus == http.StatusMovedPermanently && resp.Header.Get("Location") != "/ui/" {
				t.Errorf("redirect to %q, want /ui/", resp.Header.Get("Location"))
			}
			if tc.wantType == "" {
				return
			}
			if got := resp.Header.Get("Content-Type"); got != tc.wantType {
				t.Errorf("Content-Type %q, want %q", got, tc.wantType)
			}
			if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "default-src 'none'") {
				t.Errorf("Content-Security-Policy %q", csp)
			}
			if !strings.Contains(body, tc.wantBody) {
				t.Errorf("body lacks %q:\n%.300s", tc.wantBody, body)
			}
		})
	}
	resp, _ := get(t, srv.URL+"/ui/mesh.json")
	if resp.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("mesh.json Cache-Control %q, want no-store", resp.Header.Get("Cache-Control"))
	}
	if resp, err := http.Post(srv.URL+"/ui/mesh.json", "application/json", nil); err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST mesh.json: %v %v, want 405", resp.Status, err)
	}
}

// TestMeshJSONRates: the rates come from the counters' growth over the
// injected clock, on the edge and on the datapath.
func TestMeshJSONRates(t *testing.T) {
	f := &fakeRouter{now: time.Unix(1000, 0), txBytes: 500}
	srv := serve(t, f.options())
	fetch := func() Mesh {
		t.Helper()
		_, body := get(t, srv.URL+"/ui/mesh.json")
		var m Mesh
		if err := json.Unmarshal([]byte(body), &m); err != nil {
			t.Fatalf("mesh.json: %v: %s", err, body)
		}
		return m
	}
	m := fetch()
	if len(m.Edges) != 1 || m.Edges[0].Traffic == nil || m.Edges[0].Traffic.TxBps != nil {
		t.Fatalf("first sample: edges %+v, want one edge with traffic and no rate yet", m.Edges)
	}
	if m.IntervalMillis != 1000 {
		t.Errorf("interval_ms %d, want 1000", m.IntervalMillis)
	}
	f.advance(2*time.Second, 4000)
	m = fetch()
	tr := m.Edges[0].Traffic
	if tr.TxBps == nil || *tr.TxBps != 2000 || tr.RxBps == nil || *tr.RxBps != 0 {
		t.Errorf("edge rates after 4000 bytes in 2s: tx %v rx %v, want 2000 and 0", tr.TxBps, tr.RxBps)
	}
	if d := m.Datapaths[0].Traffic; d.TxBps == nil || *d.TxBps != 2000 || d.TxBytes != 4500 {
		t.Errorf("datapath traffic %+v, want 4500 bytes at 2000/s", d)
	}
}

// TestMeshJSONErrors: a part that cannot be read is named, the rest drawn.
func TestMeshJSONErrors(t *testing.T) {
	f := &fakeRouter{now: time.Unix(1000, 0), connErr: errors.New("the router is starting")}
	srv := serve(t, f.options())
	_, body := get(t, srv.URL+"/ui/mesh.json")
	var m Mesh
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatal(err)
	}
	if len(m.Errors) != 1 || !strings.Contains(m.Errors[0], "connections: the router is starting") {
		t.Errorf("errors %q", m.Errors)
	}
	if len(m.Peers) != 2 || len(m.Edges) != 0 {
		t.Errorf("%d peers, %d edges; want 2 and 0", len(m.Peers), len(m.Edges))
	}
}

// TestPeerStringsStayText: a nickname with markup reaches the page only
// as JSON-escaped data, and the script inserts strings only as text.
func TestPeerStringsStayText(t *testing.T) {
	f := &fakeRouter{now: time.Unix(1000, 0)}
	srv := serve(t, f.options())
	_, body := get(t, srv.URL+"/ui/mesh.json")
	if strings.Contains(body, "<script>") {
		t.Errorf("mesh.json carries raw markup: %s", body)
	}
	if !strings.Contains(body, `\u003cscript\u003e`) {
		t.Errorf("mesh.json lacks the escaped nickname: %s", body)
	}
	js, err := assets.ReadFile("assets/mesh.js")
	if err != nil {
		t.Fatal(err)
	}
	if m := regexp.MustCompile(`innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(|new Function`).Find(js); m != nil {
		t.Errorf("mesh.js uses %s, which would parse peer strings as markup or code", m)
	}
	html, _ := assets.ReadFile("assets/index.html")
	if regexp.MustCompile(`<script>|\son[a-z]+=|https?://`).Match(html) {
		t.Errorf("index.html has inline script, event handlers or links off the router")
	}
}

func TestNewOptions(t *testing.T) {
	for _, tc := range []struct {
		o       Options
		wantErr string
	}{
		{Options{}, "Options.Self"},
		{Options{Self: "a", Interval: -1}, "must not be negative"},
		{Options{Self: "a"}, ""},
	} {
		_, err := New(tc.o)
		if (err == nil) != (tc.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("New(%+v) = %v, want error containing %q", tc.o, err, tc.wantErr)
		}
	}
}
