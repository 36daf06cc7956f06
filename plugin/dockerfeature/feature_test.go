package dockerfeature

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"weavemesh.dev/weave/api"
	"weavemesh.dev/weave/feature"
	"weavemesh.dev/weave/plugin/docker"
)

// fakeIPAM is IP allocation as the plugin sees it.
type fakeIPAM struct {
	feature.Base
	mu     sync.Mutex
	allocs map[netip.Addr]string // address -> owner
	next   netip.Addr
}

func newFakeIPAM() *fakeIPAM {
	return &fakeIPAM{allocs: map[netip.Addr]string{}, next: netip.MustParseAddr("10.40.1.1")}
}

func (f *fakeIPAM) Name() string                           { return "ipam" }
func (f *fakeIPAM) Open(feature.Host) error                { return nil }
func (f *fakeIPAM) Status(context.Context) (any, error)    { return nil, nil }
func (f *fakeIPAM) Range() netip.Prefix                    { return netip.MustParsePrefix("10.40.0.0/16") }
func (f *fakeIPAM) DefaultSubnet() netip.Prefix            { return netip.MustParsePrefix("10.40.1.0/24") }
func (f *fakeIPAM) ReleaseAddr(owner string, a netip.Addr) { f.release(owner, a) }

func (f *fakeIPAM) Allocate(ctx context.Context, owner string, subnet netip.Prefix) (netip.Prefix, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	a := f.next
	f.next = a.Next()
	f.allocs[a] = owner
	return netip.PrefixFrom(a, subnet.Bits()), nil
}

func (f *fakeIPAM) Claim(owner string, a netip.Addr) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if o, ok := f.allocs[a]; ok && o != owner {
		return a.String() + " already allocated to " + o
	}
	f.allocs[a] = owner
	return ""
}

func (f *fakeIPAM) release(owner string, a netip.Addr) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.allocs[a] == owner {
		delete(f.allocs, a)
	}
}

func (f *fakeIPAM) Release(owner string) []netip.Addr {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []netip.Addr
	for a, o := range f.allocs {
		if o == owner {
			out = append(out, a)
			delete(f.allocs, a)
		}
	}
	return out
}

func (f *fakeIPAM) Allocations() []api.IPAMAllocation {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []api.IPAMAllocation
	for a, o := range f.allocs {
		out = append(out, api.IPAMAllocation{Address: a.String(), Owner: o})
	}
	return out
}

// forget drops every allocation, as IP allocation's Reconcile does with
// the ones no weave endpoint holds.
func (f *fakeIPAM) forget() {
	f.mu.Lock()
	defer f.mu.Unlock()
	clear(f.allocs)
}

// fakeDNS is weaveDNS as the plugin sees it; it records the names
// registered.
type fakeDNS struct {
	feature.Base
	on    bool
	mu    sync.Mutex
	names map[string]string // endpoint -> "name,alias,... addr,addr,..."
}

func (f *fakeDNS) Name() string                        { return "dns" }
func (f *fakeDNS) Open(feature.Host) error             { return nil }
func (f *fakeDNS) Status(context.Context) (any, error) { return nil, nil }
func (f *fakeDNS) Enabled() bool                       { return f.on }
func (f *fakeDNS) ServeNamespace(string, string) error { return nil }
func (f *fakeDNS) StopNamespace(string)                {}

func (f *fakeDNS) RegisterEndpointNames(id string, names []string, addrs []netip.Addr) error {
	var as []string
	for _, a := range addrs {
		as = append(as, a.String())
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.names == nil {
		f.names = map[string]string{}
	}
	f.names[id] = strings.Join(names, ",") + " " + strings.Join(as, ",")
	return nil
}

func (f *fakeDNS) UnregisterEndpoint(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.names, id)
}

// registered returns what endpoint id is registered as, "" for nothing.
func (f *fakeDNS) registered(id string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.names[id]
}

// fakeBridge is the bridge of feature.Host; the plugin uses only its name
// and MTU here.
type fakeBridge struct{}

func (fakeBridge) Name() string                                     { return "wvdocktest" }
func (fakeBridge) MTU() int                                         { return 1376 }
func (fakeBridge) AddPort(string) error                             { return nil }
func (fakeBridge) Addrs() ([]netip.Prefix, error)                   { return nil, nil }
func (fakeBridge) Expose(netip.Prefix) error                        { return nil }
func (fakeBridge) Hide(netip.Prefix) error                          { return nil }
func (fakeBridge) EndpointAddrs() ([]netip.Addr, error)             { return nil, nil }
func (fakeBridge) RoutesOverlapping(netip.Prefix) ([]string, error) { return nil, nil }

func testHost(t *testing.T, fs ...feature.Feature) feature.Host {
	return feature.Host{
		DataDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler),
		Ready:     func() error { return nil },
		Endpoints: func() []api.Endpoint { return nil },
		Bridge:    fakeBridge{},
		Feature: func(name string) (feature.Feature, bool) {
			for _, f := range fs {
				if f.Name() == name {
					return f, true
				}
			}
			return nil, false
		},
	}
}

// noForwarding keeps the tests away from the host's iptables.
func noForwarding(t *testing.T) {
	old := allowForwarding
	allowForwarding = func(*slog.Logger, string) func() { return func() {} }
	t.Cleanup(func() { allowForwarding = old })
}

// call posts req to the plugin's socket as dockerd does and decodes the
// answer into resp.
func call(t *testing.T, sock, method string, req, resp any) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		}}}
	defer c.CloseIdleConnections()
	b, _ := json.Marshal(req)
	r, err := c.Post("http://plugin/"+method, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	body, _ := io.ReadAll(r.Body)
	if r.StatusCode != http.StatusOK {
		t.Fatalf("%s: status %d: %s", method, r.StatusCode, body)
	}
	if err := json.Unmarshal(body, resp); err != nil {
		t.Fatalf("%s: %q: %v", method, body, err)
	}
}

func TestOptions(t *testing.T) {
	if _, err := New(Options{Off: true, Socket: "/tmp/x.sock"}); err == nil || !strings.Contains(err.Error(), "--no-plugin") {
		t.Errorf("--no-plugin with --plugin-socket: %v", err)
	}
	if _, err := New(Options{Socket: "x.sock"}); err == nil || !strings.Contains(err.Error(), "--plugin-socket") {
		t.Errorf("relative socket: %v", err)
	}
	f, err := New(Options{Off: true})
	if err != nil {
		t.Fatal(err)
	}
	// Off: Open needs nothing, and nothing is served.
	if err := f.Open(testHost(t)); err != nil {
		t.Fatal(err)
	}
	if err := f.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	f.Reconcile(context.Background(), nil)
	st, _ := f.Status(context.Background())
	if st != (api.DockerPluginStatus{}) {
		t.Errorf("status when off: %+v", st)
	}
	f.Close(context.Background())
	f.Close(context.Background())
}

// The plugin serves on its socket with IP allocation's addresses, keeps
// the pools' addresses through IP allocation's reconcile, and removes the
// socket on Close.
func TestServeAndReconcile(t *testing.T) {
	noForwarding(t)
	sock := filepath.Join(t.TempDir(), "wmtest.sock")
	ip, names := newFakeIPAM(), &fakeDNS{on: true}
	// An address a pool held before the restart.
	held := netip.MustParseAddr("10.40.1.200")
	owner := docker.OwnerPrefix + "abc@10.40.1.0/24"
	ip.Claim(owner, held)
	ip.Claim("weave-endpoint", netip.MustParseAddr("10.40.1.201"))

	f, err := New(Options{Socket: sock, EngineSocket: filepath.Join(t.TempDir(), "no-engine.sock")})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Open(testHost(t, ip, names)); err != nil {
		t.Fatal(err)
	}
	if err := f.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer f.Close(context.Background())
	st, _ := f.Status(context.Background())
	if want := (api.DockerPluginStatus{Socket: sock, Driver: "wmtest", Names: true}); st != want {
		t.Errorf("status %+v, want %+v", st, want)
	}

	var act struct{ Implements []string }
	call(t, sock, "Plugin.Activate", struct{}{}, &act)
	if strings.Join(act.Implements, ",") != "NetworkDriver,IpamDriver" {
		t.Errorf("Activate: %v", act.Implements)
	}
	var pool struct{ PoolID, Pool, Error string }
	call(t, sock, "IpamDriver.RequestPool", map[string]any{"AddressSpace": "weavemesh-local"}, &pool)
	if pool.Pool != "10.40.1.0/24" || pool.Error != "" {
		t.Fatalf("RequestPool: %+v", pool)
	}
	var addr struct{ Address, Error string }
	call(t, sock, "IpamDriver.RequestAddress", map[string]any{"PoolID": pool.PoolID}, &addr)
	if addr.Error != "" || !strings.HasPrefix(addr.Address, "10.40.1.") {
		t.Fatalf("RequestAddress: %+v", addr)
	}

	// IP allocation's Reconcile forgets what no weave endpoint holds;
	// the plugin's claims back what the pools held at Open.
	ip.forget()
	f.Reconcile(context.Background(), nil)
	var got []string
	for _, a := range ip.Allocations() {
		got = append(got, a.Address+"="+a.Owner)
	}
	if len(got) != 1 || got[0] != held.String()+"="+owner {
		t.Errorf("after reconcile: %v, want only %s=%s", got, held, owner)
	}

	f.Close(context.Background())
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("socket left after Close: %v", err)
	}
}

// Without IP allocation the plugin cannot start; with weaveDNS off it
// serves without names.
func TestOpenNeeds(t *testing.T) {
	noForwarding(t)
	f, err := New(Options{Socket: filepath.Join(t.TempDir(), "wm.sock")})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Open(testHost(t)); err == nil {
		t.Error("Open without IP allocation succeeded")
	}
	f.Close(context.Background())

	f, err = New(Options{Socket: filepath.Join(t.TempDir(), "wm.sock")})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Open(testHost(t, newFakeIPAM(), &fakeDNS{on: false})); err != nil {
		t.Fatal(err)
	}
	if err := f.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer f.Close(context.Background())
	if st, _ := f.Status(context.Background()); st.(api.DockerPluginStatus).Names {
		t.Errorf("names with weaveDNS off: %+v", st)
	}
	if err := (*plugRouter)(f).RegisterNames("0123456789ab", []string{"c1"}, nil); err == nil {
		t.Error("RegisterNames with weaveDNS off succeeded")
	}
}
