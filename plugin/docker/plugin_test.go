package docker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeRouter records what the plugin asks of the router.
type fakeRouter struct {
	mu      sync.Mutex
	veths   map[string]bool
	allocs  map[netip.Addr]string
	names   map[string]string
	aliases map[string][]string     // endpoint -> names after the first
	addrs   map[string][]netip.Addr // endpoint -> addresses of its names
	dns     map[string]string       // endpoint -> namespace served
	next    map[netip.Prefix]netip.Addr
	fail    error // returned by Allocate when set
}

func newFake() *fakeRouter {
	return &fakeRouter{veths: map[string]bool{}, allocs: map[netip.Addr]string{}, names: map[string]string{},
		aliases: map[string][]string{}, addrs: map[string][]netip.Addr{}, dns: map[string]string{}, next: map[netip.Prefix]netip.Addr{}}
}

func (f *fakeRouter) CreateVeth(id string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.veths[id] = true
	return "vwc" + id[:8], nil
}

func (f *fakeRouter) DeleteVeth(id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.veths, id)
	return nil
}

func (f *fakeRouter) Range() netip.Prefix         { return netip.MustParsePrefix("10.32.0.0/12") }
func (f *fakeRouter) DefaultSubnet() netip.Prefix { return netip.MustParsePrefix("10.32.0.0/12") }

func (f *fakeRouter) Allocate(ctx context.Context, owner string, subnet netip.Prefix) (netip.Prefix, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return netip.Prefix{}, f.fail
	}
	a, ok := f.next[subnet]
	if !ok {
		a = subnet.Addr().Next()
	}
	for f.allocs[a] != "" {
		a = a.Next()
	}
	f.allocs[a] = owner
	f.next[subnet] = a.Next()
	return netip.PrefixFrom(a, subnet.Bits()), nil
}

func (f *fakeRouter) Claim(owner string, a netip.Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if o := f.allocs[a]; o != "" && o != owner {
		return fmt.Errorf("%s is already allocated to %s", a, o)
	}
	f.allocs[a] = owner
	return nil
}

func (f *fakeRouter) Release(owner string, a netip.Addr) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.allocs[a] == owner {
		delete(f.allocs, a)
	}
}

func (f *fakeRouter) ReleaseAll(owner string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for a, o := range f.allocs {
		if o == owner {
			delete(f.allocs, a)
		}
	}
}

func (f *fakeRouter) RegisterNames(id string, names []string, addrs []netip.Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.names[id] = names[0]
	f.aliases[id] = names[1:]
	f.addrs[id] = addrs
	return nil
}

func (f *fakeRouter) UnregisterName(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.names, id)
	delete(f.aliases, id)
	delete(f.addrs, id)
}

func (f *fakeRouter) ServeDNS(id, netns string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dns[id] = netns
	return nil
}

func (f *fakeRouter) StopDNS(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.dns, id)
}

func (f *fakeRouter) counts() (veths, allocs, names int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.veths), len(f.allocs), len(f.names) + len(f.dns)
}

// client talks to a plugin over its unix socket, as dockerd does.
type client struct {
	t *testing.T
	c *http.Client
}

func serveFake(t *testing.T) (*fakeRouter, *client) {
	t.Helper()
	f := newFake()
	p, err := New(Options{Router: f})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), Name+".sock")
	s, err := Serve(path, p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return f, NewTestClient(t, path)
}

// NewTestClient returns a client of the plugin socket at path.
func NewTestClient(t *testing.T, path string) *client {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}}
	t.Cleanup(tr.CloseIdleConnections)
	return &client{t: t, c: &http.Client{Transport: tr, Timeout: 10 * time.Second}}
}

// raw posts body to method and returns the status and decoded reply.
func (c *client) raw(method string, body []byte) (int, map[string]any) {
	c.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://plugin/"+method, bytes.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	resp, err := c.c.Do(req)
	if err != nil {
		c.t.Fatalf("%s: %v", method, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		c.t.Fatalf("%s: reply %q is not a JSON object: %v", method, b, err)
	}
	return resp.StatusCode, out
}

// call posts req to method and wants success; it returns the reply.
func (c *client) call(method string, req any) map[string]any {
	c.t.Helper()
	var body []byte
	if req != nil {
		body, _ = json.Marshal(req)
	}
	code, out := c.raw(method, body)
	if code != http.StatusOK || out["Err"] != nil && out["Err"] != "" || out["Error"] != nil && out["Error"] != "" {
		c.t.Fatalf("%s %s: status %d, reply %v", method, body, code, out)
	}
	return out
}

func TestActivateListsBothDrivers(t *testing.T) {
	_, c := serveFake(t)
	out := c.call("Plugin.Activate", nil)
	got := fmt.Sprint(out["Implements"])
	if got != "[NetworkDriver IpamDriver]" {
		t.Fatalf("Implements = %s", got)
	}
	caps := c.call("NetworkDriver.GetCapabilities", nil)
	if caps["Scope"] != "local" || caps["ConnectivityScope"] != "local" {
		t.Fatalf("capabilities = %v", caps)
	}
	if sp := c.call("IpamDriver.GetDefaultAddressSpaces", nil); sp["LocalDefaultAddressSpace"] != "weavemesh-local" {
		t.Fatalf("address spaces = %v", sp)
	}
	if caps := c.call("IpamDriver.GetCapabilities", nil); caps["RequiresMACAddress"] != false {
		t.Fatalf("IPAM capabilities = %v", caps)
	}
}

// dockerSequence makes the calls dockerd makes for `docker network create
// -d weavemesh --ipam-driver weavemesh --subnet SUBNET`, then `docker run`,
// and returns the pool id, the network id, the endpoint id and the
// container's address.
func dockerSequence(c *client, subnet, netID, epID string) (poolID, addr string) {
	c.call("Plugin.Activate", nil)
	c.call("IpamDriver.GetDefaultAddressSpaces", nil)
	pool := c.call("IpamDriver.RequestPool", map[string]any{"AddressSpace": "weavemesh-local", "Pool": subnet, "Options": map[string]string{}})
	poolID = pool["PoolID"].(string)
	gw := c.call("IpamDriver.RequestAddress", map[string]any{"PoolID": poolID, "Options": map[string]string{requestAddressType: gatewayAddressType}})
	c.call("NetworkDriver.CreateNetwork", map[string]any{"NetworkID": netID, "Options": map[string]any{},
		"IPv4Data": []map[string]any{{"AddressSpace": "weavemesh-local", "Pool": pool["Pool"], "Gateway": gw["Address"]}}})
	ip := c.call("IpamDriver.RequestAddress", map[string]any{"PoolID": poolID, "Options": map[string]string{}})
	addr = ip["Address"].(string)
	c.call("NetworkDriver.CreateEndpoint", map[string]any{"NetworkID": netID, "EndpointID": epID,
		"Interface": map[string]any{"Address": addr}, "Options": map[string]any{NameOption: "web"}})
	return poolID, addr
}

func TestDockerSequence(t *testing.T) {
	f, c := serveFake(t)
	netID, epID := strings.Repeat("a1", 32), strings.Repeat("e1", 32)
	poolID, addr := dockerSequence(c, "10.32.4.0/24", netID, epID)
	if !strings.HasPrefix(addr, "10.32.4.") || !strings.HasSuffix(addr, "/24") {
		t.Fatalf("address %s: want one in 10.32.4.0/24 with its prefix length", addr)
	}
	info := c.call("NetworkDriver.EndpointOperInfo", map[string]any{"NetworkID": netID, "EndpointID": epID})
	if v := info["Value"].(map[string]any); v["address"] != addr || v["mac"] == "" {
		t.Fatalf("EndpointOperInfo = %v", info)
	}
	j := c.call("NetworkDriver.Join", map[string]any{"NetworkID": netID, "EndpointID": epID, "SandboxKey": "/var/run/docker/netns/x"})
	in := j["InterfaceName"].(map[string]any)
	if in["SrcName"] != "vwc"+epID[:8] || in["DstPrefix"] != DstPrefix || j["DisableGatewayService"] != false || j["Gateway"] != "" {
		t.Fatalf("Join = %v", j)
	}
	if v, a, n := f.counts(); v != 1 || a != 2 || n != 1 {
		t.Fatalf("after join: %d veths, %d addresses, %d names; want 1, 2 (gateway and container), 1", v, a, n)
	}
	c.call("NetworkDriver.ProgramExternalConnectivity", map[string]any{"NetworkID": netID, "EndpointID": epID})
	c.call("NetworkDriver.RevokeExternalConnectivity", map[string]any{"NetworkID": netID, "EndpointID": epID})
	c.call("NetworkDriver.Leave", map[string]any{"NetworkID": netID, "EndpointID": epID})
	c.call("NetworkDriver.DeleteEndpoint", map[string]any{"NetworkID": netID, "EndpointID": epID})
	c.call("IpamDriver.ReleaseAddress", map[string]any{"PoolID": poolID, "Address": addr})
	// Out of order and repeated, as after a daemon or router restart.
	c.call("NetworkDriver.Leave", map[string]any{"NetworkID": netID, "EndpointID": epID})
	c.call("NetworkDriver.DeleteEndpoint", map[string]any{"NetworkID": netID, "EndpointID": epID})
	c.call("IpamDriver.ReleaseAddress", map[string]any{"PoolID": poolID, "Address": addr})
	c.call("NetworkDriver.DeleteNetwork", map[string]any{"NetworkID": netID})
	c.call("NetworkDriver.DeleteNetwork", map[string]any{"NetworkID": netID})
	c.call("IpamDriver.ReleasePool", map[string]any{"PoolID": poolID})
	c.call("IpamDriver.ReleasePool", map[string]any{"PoolID": poolID})
	if v, a, n := f.counts(); v != 0 || a != 0 || n != 0 {
		t.Fatalf("after removal: %d veths, %d addresses, %d names left", v, a, n)
	}
}

func TestRepeatedRequestPoolGetsPoolsOfTheirOwn(t *testing.T) {
	f, c := serveFake(t)
	req := map[string]any{"AddressSpace": "weavemesh-local", "Pool": "10.32.8.0/24"}
	a := c.call("IpamDriver.RequestPool", req)["PoolID"].(string)
	b := c.call("IpamDriver.RequestPool", req)["PoolID"].(string)
	if a == b {
		t.Fatalf("two RequestPool calls got one pool id %s", a)
	}
	c.call("IpamDriver.RequestAddress", map[string]any{"PoolID": a})
	c.call("IpamDriver.RequestAddress", map[string]any{"PoolID": b})
	c.call("IpamDriver.ReleasePool", map[string]any{"PoolID": a})
	if _, n, _ := f.counts(); n != 1 {
		t.Fatalf("releasing one pool left %d addresses; want the other pool's 1", n)
	}
	// The default subnet when none is given, and a subpool.
	d := c.call("IpamDriver.RequestPool", map[string]any{})
	if d["Pool"] != "10.32.0.0/12" {
		t.Fatalf("default pool = %v", d)
	}
	s := c.call("IpamDriver.RequestPool", map[string]any{"Pool": "10.33.0.0/16", "SubPool": "10.33.7.0/24"})
	addr := c.call("IpamDriver.RequestAddress", map[string]any{"PoolID": s["PoolID"]})["Address"].(string)
	if !strings.HasPrefix(addr, "10.33.7.") || !strings.HasSuffix(addr, "/16") {
		t.Fatalf("subpool address %s: want one in 10.33.7.0/24 with the subnet's /16", addr)
	}
}

func TestStaticAddress(t *testing.T) {
	_, c := serveFake(t)
	pool := c.call("IpamDriver.RequestPool", map[string]any{"Pool": "10.32.9.0/24"})["PoolID"]
	other := c.call("IpamDriver.RequestPool", map[string]any{"Pool": "10.32.9.0/24"})["PoolID"]
	got := c.call("IpamDriver.RequestAddress", map[string]any{"PoolID": pool, "Address": "10.32.9.77"})
	if got["Address"] != "10.32.9.77/24" {
		t.Fatalf("static address = %v", got)
	}
	_, out := c.raw("IpamDriver.RequestAddress", mustJSON(map[string]any{"PoolID": other, "Address": "10.32.9.77"}))
	if e, _ := out["Error"].(string); !strings.Contains(e, "already allocated") {
		t.Fatalf("claiming a held address: reply %v; want an Error saying it is held", out)
	}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func TestErrors(t *testing.T) {
	f, c := serveFake(t)
	cases := []struct {
		method, body string
		code         int
		field, want  string
	}{
		{"NetworkDriver.CreateNetwork", `{"NetworkID":`, 400, "Err", "not the JSON object"},
		{"NetworkDriver.CreateNetwork", `{"NetworkID": 5}`, 400, "Err", "not the JSON object"},
		{"NetworkDriver.CreateNetwork", `{} {}`, 400, "Err", "data after"},
		{"IpamDriver.RequestPool", `[1]`, 400, "Err", "not the JSON object"},
		{"NetworkDriver.CreateNetwork", `{"NetworkID":"` + strings.Repeat("a", maxRequestBytes) + `"}`, 400, "Err", "at most"},
		{"NetworkDriver.Frobnicate", `{}`, 404, "Err", "no method"},
		{"VolumeDriver.Create", `{}`, 404, "Err", "no method"},
		{"NetworkDriver.CreateNetwork", `{}`, 500, "Err", "NetworkID is empty"},
		{"NetworkDriver.CreateNetwork", `{"NetworkID":"n","IPv6Data":[{"Pool":"fd00::/64"}]}`, 500, "Err", "IPv6"},
		{"NetworkDriver.Join", `{"NetworkID":"n","EndpointID":"../x"}`, 500, "Err", "hexadecimal"},
		{"NetworkDriver.AllocateNetwork", `{}`, 500, "Err", "local-scope"},
		{"IpamDriver.RequestPool", `{"V6":true}`, 200, "Error", "IPv4 addresses only"},
		{"IpamDriver.RequestPool", `{"Pool":"192.168.7.0/24"}`, 200, "Error", "not inside weave's allocation range"},
		{"IpamDriver.RequestPool", `{"Pool":"10.32.0.0/24","SubPool":"10.40.0.0/24"}`, 200, "Error", "not inside the subnet"},
		{"IpamDriver.RequestAddress", `{"PoolID":"nonsense"}`, 200, "Error", "not one weavemesh handed out"},
		{"IpamDriver.ReleaseAddress", `{"PoolID":"x@10.32.0.0/12","Address":"fd00::1"}`, 200, "Error", "IPv4"},
	}
	for _, tc := range cases {
		code, out := c.raw(tc.method, []byte(tc.body))
		msg, _ := out[tc.field].(string)
		if code != tc.code || !strings.Contains(msg, tc.want) {
			t.Errorf("%s %s: status %d, reply %v; want %d with %s containing %q", tc.method, tc.body, code, out, tc.code, tc.field, tc.want)
		}
	}
	f.mu.Lock()
	f.fail = errors.New("no space here")
	f.mu.Unlock()
	pool := c.call("IpamDriver.RequestPool", map[string]any{})["PoolID"]
	if _, out := c.raw("IpamDriver.RequestAddress", mustJSON(map[string]any{"PoolID": pool})); out["Error"] != "no space here" {
		t.Errorf("allocation failure: reply %v", out)
	}
	req, _ := http.NewRequest(http.MethodGet, "http://plugin/Plugin.Activate", nil)
	resp, err := c.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /Plugin.Activate: status %d; want 404", resp.StatusCode)
	}
}

func TestCreateEndpointKeepsDockersMAC(t *testing.T) {
	_, c := serveFake(t)
	out := c.call("NetworkDriver.CreateEndpoint", map[string]any{"NetworkID": "n", "EndpointID": "e0e0e0e0e0e0",
		"Interface": map[string]any{"Address": "10.32.0.9/12", "MacAddress": "02:42:0a:20:00:09"}})
	if out["Interface"] != nil {
		t.Fatalf("the plugin set interface fields Docker had set: %v", out)
	}
	out = c.call("NetworkDriver.CreateEndpoint", map[string]any{"NetworkID": "n", "EndpointID": "f0f0f0f0f0f0",
		"Interface": map[string]any{"Address": "10.32.0.9/12"}})
	if m := out["Interface"].(map[string]any); m["MacAddress"] != "0a:58:0a:20:00:09" || m["Address"] != "" {
		t.Fatalf("CreateEndpoint without MAC = %v; want only MacAddress 0a:58:0a:20:00:09", out)
	}
	again := c.call("NetworkDriver.CreateEndpoint", map[string]any{"NetworkID": "n", "EndpointID": "f0f0f0f0f0f0",
		"Interface": map[string]any{"Address": "10.32.0.9/12"}})
	if fmt.Sprint(again) != fmt.Sprint(out) {
		t.Fatalf("a repeated CreateEndpoint answered %v, then %v", out, again)
	}
}

func TestSocketInUseAndRemovedOnClose(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.sock")
	p, _ := New(Options{Router: newFake()})
	s, err := Serve(path, p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Serve(path, p); !errors.Is(err, ErrInUse) {
		t.Fatalf("second Serve on a live socket: %v; want ErrInUse", err)
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := net.Dial("unix", path); err == nil {
		t.Fatal("socket still answers after Close")
	}
	if m, _ := filepath.Glob(path); len(m) != 0 {
		t.Fatal("socket file left after Close")
	}
	// A stale file from a dead process is replaced.
	ln, _ := net.Listen("unix", path)
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	s, err = Serve(path, p)
	if err != nil {
		t.Fatalf("Serve over a stale socket file: %v", err)
	}
	s.Close(context.Background())
}
