package router

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"weavemesh.dev/weave/api"
	"weavemesh.dev/weave/feature"
	"weavemesh.dev/weave/gossip"
	"weavemesh.dev/weave/peer"
)

// nopState is a gossip.State with nothing in it.
type nopState struct{}

func (nopState) FullState() []byte               { return nil }
func (nopState) MergeFull([]byte) error          { return nil }
func (nopState) MergeDelta([]byte) (bool, error) { return false, nil }

// recFeature records the calls of the router into it and can fail Open.
type recFeature struct {
	feature.Base
	name     string
	log      *callLog
	failOpen bool
	host     feature.Host
}

func (f *recFeature) Name() string { return f.name }

func (f *recFeature) Open(h feature.Host) error {
	f.log.add(f.name + ".open")
	f.host = h
	for _, other := range []string{"a", "c"} {
		if o, ok := h.Feature(other); ok && o.Name() != f.name {
			f.log.add(f.name + ".found-" + other)
		}
	}
	if f.failOpen {
		return errors.New("injected open failure")
	}
	return nil
}

func (f *recFeature) Channels() []feature.Channel {
	f.log.add(f.name + ".channels")
	return []feature.Channel{{Name: f.name, State: nopState{},
		Bind: func(ch *gossip.Channel) { f.log.add(f.name + ".bind " + ch.Name()) }}}
}

func (f *recFeature) Start(context.Context) error {
	f.log.add(f.name + ".start")
	return nil
}

func (f *recFeature) Routes() []api.Route {
	f.log.add(f.name + ".routes")
	return []api.Route{{Pattern: "GET /" + f.name + "/hello", Handler: api.JSON(func(*http.Request) (any, error) {
		return map[string]string{"hello": f.name}, nil
	})}}
}

func (f *recFeature) Status(context.Context) (any, error) {
	return map[string]string{"feature": f.name, "self": f.host.Self.String()}, nil
}

func (f *recFeature) Close(context.Context) { f.log.add(f.name + ".close") }

// featureRouter is a Router with just what startFeatures needs: a gossip
// node that is never started and an API server.
func featureRouter(t *testing.T) *Router {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	g, err := gossip.New(gossip.Config{Name: peer.Name(7), Nickname: "host1", BindAddr: "127.0.0.1", Port: port, DataPort: port + 1,
		ProtoMin: 1, ProtoMax: 1, DataDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Shutdown() })
	eps, err := loadEndpoints(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	r := &Router{name: peer.Name(7), cfg: Config{Nickname: "host1"}, log: slog.New(slog.DiscardHandler), gossip: g, eps: eps}
	if r.api, err = api.NewServer(api.ServerOptions{Addr: "127.0.0.1:0", Backend: r}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		r.api.Close(ctx)
	})
	return r
}

func get(t *testing.T, addr, path string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return strconv.Itoa(resp.StatusCode) + " " + strings.TrimSpace(string(b))
}

// The router drives every feature through the contract in order, one
// feature after the other, serves their routes and status sections, and
// closes them in reverse.
func TestFeaturesStartInOrder(t *testing.T) {
	log := &callLog{}
	r := featureRouter(t)
	a, b := &recFeature{name: "a", log: log}, &recFeature{name: "b", log: log}
	if err := r.startFeatures(context.Background(), []feature.Feature{a, b}); err != nil {
		t.Fatal(err)
	}
	// b finds a, registered before it; nobody finds c, which is not.
	want := "a.open a.channels a.bind a a.start a.routes b.open b.found-a b.channels b.bind b b.start b.routes"
	if got := log.String(); got != want {
		t.Errorf("calls\n%q, want\n%q", got, want)
	}
	if len(r.hooks) != 2 || r.hooks[0] != a || r.hooks[1] != b {
		t.Errorf("hooks %v", r.hooks)
	}
	if err := r.api.Start(); err != nil {
		t.Fatal(err)
	}
	if got := get(t, r.api.Addr(), "/status/b"); got != `200 {"feature":"b","self":"00:00:00:00:00:07"}` {
		t.Errorf("GET /status/b = %s", got)
	}
	if got := get(t, r.api.Addr(), "/a/hello"); got != `200 {"hello":"a"}` {
		t.Errorf("GET /a/hello = %s", got)
	}
	log.reset()
	r.closeFeatures()
	if got := log.String(); got != "b.close a.close" {
		t.Errorf("close calls %q", got)
	}
}

// A feature that fails to open stops the start; it and those before it
// are closed.
func TestFeatureOpenFailureClosesThoseReached(t *testing.T) {
	log := &callLog{}
	r := featureRouter(t)
	fs := []feature.Feature{&recFeature{name: "a", log: log}, &recFeature{name: "b", log: log, failOpen: true},
		&recFeature{name: "c", log: log}}
	if err := r.startFeatures(context.Background(), fs); err == nil || !strings.Contains(err.Error(), "injected") {
		t.Fatalf("startFeatures: %v", err)
	}
	log.reset()
	r.closeFeatures()
	if got := log.String(); got != "b.close a.close" {
		t.Errorf("close calls %q", got)
	}
}

// Feature options are checked before the router touches anything, with
// errors naming the flag.
func TestFeatureOptionsChecked(t *testing.T) {
	for _, tt := range []struct {
		cfg  Config
		flag string
	}{
		{Config{DNSDomain: "a..b"}, "--dns-domain"},
		{Config{IPAllocRange: netip.MustParsePrefix("fd00::/64")}, "--ipalloc-range"},
		{Config{MetricsAddr: "nonsense"}, "--metrics-addr"},
		{Config{NoPlugin: true, PluginSocket: "/run/x.sock"}, "--plugin-socket"},
		{Config{PluginSocket: "x.sock"}, "--plugin-socket"},
	} {
		if _, err := tt.cfg.features(); err == nil || !strings.Contains(err.Error(), tt.flag) {
			t.Errorf("%+v: %v, want an error naming %s", tt.cfg, err, tt.flag)
		}
	}
	fs, err := Config{NoDNS: true}.features()
	if err != nil || len(fs) != 4 || fs[0].Name() != "ipam" || fs[1].Name() != "dns" || fs[2].Name() != "docker" || fs[3].Name() != "metrics" {
		t.Errorf("features %v %v", fs, err)
	}
}
