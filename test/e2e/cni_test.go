package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"

	"weavemesh.dev/weave/test/harness"
)

// cniRuntime drives weave-net through libcni, as a container runtime does,
// from inside one simulated host (the plugin reaches that host's router on
// its loopback).
type cniRuntime struct {
	t     *testing.T
	cfg   *libcni.CNIConfig
	host  *harness.Host
	state string // weave-net's data dir
	cache string // libcni's
}

func newCNIRuntime(t *testing.T, h *harness.Host) *cniRuntime {
	t.Helper()
	bin, err := harness.Build("./cmd/weave-net")
	if err != nil {
		t.Fatal(err)
	}
	r := &cniRuntime{t: t, host: h, state: t.TempDir(), cache: t.TempDir()}
	r.cfg = libcni.NewCNIConfigWithCacheDir([]string{filepath.Dir(bin)}, r.cache, nil)
	return r
}

// list is a network configuration list of version v with weave-net;
// extra are more fields of its configuration ("defaultRoute": true).
func (r *cniRuntime) list(v string, extra ...string) *libcni.NetworkConfigList {
	r.t.Helper()
	more := ""
	for _, e := range extra {
		more += ", " + e
	}
	l, err := libcni.NetworkConfFromBytes([]byte(fmt.Sprintf(
		`{"cniVersion": %q, "name": "wvtest", "plugins": [{"type": "weave-net", "dataDir": %q%s}]}`, v, r.state, more)))
	if err != nil {
		r.t.Fatal(err)
	}
	return l
}

// in runs fn in the host's network namespace.
func (r *cniRuntime) in(fn func() error) error {
	return ns.WithNetNSPath(r.host.Path(), func(ns.NetNS) error { return fn() })
}

func rtConf(c *harness.Container, ifname string) *libcni.RuntimeConf {
	return &libcni.RuntimeConf{ContainerID: "wvtest-" + c.Name, NetNS: c.Path(), IfName: ifname,
		Args: [][2]string{{"IgnoreUnknown", "1"}, {"K8S_POD_NAME", c.Name}}}
}

func (r *cniRuntime) add(ctx context.Context, l *libcni.NetworkConfigList, rt *libcni.RuntimeConf) (*current.Result, error) {
	var res types.Result
	err := r.in(func() error {
		var err error
		res, err = r.cfg.AddNetworkList(ctx, l, rt)
		return err
	})
	if err != nil {
		return nil, err
	}
	return current.NewResultFromResult(res)
}

func cniCode(err error) uint {
	var e *types.Error
	if errors.As(err, &e) {
		return e.Code
	}
	return 0
}

// TestCNI drives weave-net with libcni on two simulated hosts: ADD gives
// each container an address from weave IPAM on the interface the runtime
// names, the containers ping each other by address and by name, CHECK
// passes, GC detaches what is not listed, DEL is idempotent, every
// supported configuration version works, and a router that is down makes
// ADD answer "try again later" and STATUS "not available".
func TestCNI(t *testing.T) {
	cl := startMesh(t, harness.Options{Hosts: 2}, 0).cl
	ctx := ctxFor(t, 3*time.Minute)
	rts := []*cniRuntime{newCNIRuntime(t, cl.Host(1)), newCNIRuntime(t, cl.Host(2))}
	var ctrs []*harness.Container
	var ips []string
	l := rts[0].list("1.1.0")
	for i, r := range rts {
		c, err := r.host.AddContainer(fmt.Sprintf("k%d", i+1))
		if err != nil {
			t.Fatal(err)
		}
		res, err := r.add(ctx, l, rtConf(c, "eth0"))
		if err != nil {
			cl.LogRouters(t)
			t.Fatalf("ADD on %s: %v", r.host.Name, err)
		}
		if len(res.IPs) != 1 || len(res.Interfaces) != 1 || res.Interfaces[0].Name != "eth0" || res.Interfaces[0].Sandbox != c.Path() {
			t.Fatalf("ADD result %+v: want one address on eth0 in %s", res, c.Path())
		}
		if len(res.DNS.Nameservers) != 1 || res.DNS.Nameservers[0] != "127.0.0.153" {
			t.Errorf("ADD result DNS %+v: want weaveDNS inside the namespace", res.DNS)
		}
		out, err := c.Exec(ctx, "ip", "-o", "addr", "show", "dev", "eth0")
		if err != nil || !strings.Contains(out, res.IPs[0].Address.String()) {
			t.Fatalf("eth0 in %s: %q, %v; want %s", c.Name, out, err, res.IPs[0].Address.String())
		}
		ctrs, ips = append(ctrs, c), append(ips, res.IPs[0].Address.IP.String())
	}
	for i, c := range ctrs {
		for _, to := range []string{ips[1-i], ctrs[1-i].Name + ".weave.local"} {
			if err := ping(ctxFor(t, pingTimeout), c, to); err != nil {
				cl.LogRouters(t)
				t.Fatal(err)
			}
		}
	}
	for i, r := range rts {
		if err := r.in(func() error { return r.cfg.CheckNetworkList(ctx, l, rtConf(ctrs[i], "eth0")) }); err != nil {
			t.Errorf("CHECK on %s: %v", r.host.Name, err)
		}
		if err := r.in(func() error { return r.cfg.GetStatusNetworkList(ctx, l) }); err != nil {
			t.Errorf("STATUS on %s: %v", r.host.Name, err)
		}
	}

	// DEL twice on host1.
	for range 2 {
		if err := rts[0].in(func() error { return rts[0].cfg.DelNetworkList(ctx, l, rtConf(ctrs[0], "eth0")) }); err != nil {
			t.Fatalf("DEL: %v", err)
		}
	}
	if eps, err := cl.Host(1).Endpoints(); err != nil || len(eps) != 0 {
		t.Errorf("host1 endpoints after DEL: %v, %v; want none", eps, err)
	}
	// GC on host2 with nothing valid detaches k2. libcni would DEL what
	// its cache holds itself; without the cache only the plugin's GC can.
	if err := os.RemoveAll(rts[1].cache); err != nil {
		t.Fatal(err)
	}
	if err := rts[1].in(func() error { return rts[1].cfg.GCNetworkList(ctx, l, &libcni.GCArgs{}) }); err != nil {
		t.Fatalf("GC: %v", err)
	}
	if eps, err := cl.Host(2).Endpoints(); err != nil || len(eps) != 0 {
		t.Errorf("host2 endpoints after GC: %v, %v; want none", eps, err)
	}

	// The older configuration versions.
	for _, v := range []string{"0.4.0", "1.0.0"} {
		lv := rts[0].list(v)
		rt := rtConf(ctrs[0], "net1")
		res, err := rts[0].add(ctx, lv, rt)
		if err != nil || len(res.IPs) != 1 {
			t.Fatalf("ADD with version %s: %+v, %v", v, res, err)
		}
		if err := rts[0].in(func() error { return rts[0].cfg.CheckNetworkList(ctx, lv, rt) }); err != nil {
			t.Errorf("CHECK with version %s: %v", v, err)
		}
		if err := rts[0].in(func() error { return rts[0].cfg.DelNetworkList(ctx, lv, rt) }); err != nil {
			t.Errorf("DEL with version %s: %v", v, err)
		}
	}

	// defaultRoute: the host gets an address in the subnet and the
	// container routes through it.
	lr := rts[0].list("1.1.0", `"defaultRoute": true`)
	k3, err := cl.Host(1).AddContainer("k3")
	if err != nil {
		t.Fatal(err)
	}
	res, err := rts[0].add(ctx, lr, rtConf(k3, "eth0"))
	if err != nil || len(res.Routes) != 1 || res.IPs[0].Gateway == nil {
		t.Fatalf("ADD with defaultRoute: %+v, %v; want a default route and gateway", res, err)
	}
	gw := res.IPs[0].Gateway.String()
	if out, err := k3.Exec(ctx, "ip", "route", "show", "default"); err != nil || !strings.Contains(out, "via "+gw+" dev eth0") {
		t.Errorf("k3's default route %q, %v; want via %s dev eth0", out, err, gw)
	}
	if _, err := k3.Ping(ctx, gw); err != nil {
		t.Errorf("k3 cannot ping the host's overlay address %s: %v", gw, err)
	}
	if err := rts[0].in(func() error { return rts[0].cfg.DelNetworkList(ctx, lr, rtConf(k3, "eth0")) }); err != nil {
		t.Errorf("DEL: %v", err)
	}

	// With the router down: ADD says try again later (11), STATUS not
	// available (50), DEL still succeeds.
	if err := cl.Host(2).Stop(); err != nil {
		t.Fatal(err)
	}
	_, err = rts[1].add(ctx, l, rtConf(ctrs[1], "eth0"))
	if cniCode(err) != types.ErrTryAgainLater {
		t.Errorf("ADD with the router down: %v; want CNI error %d", err, types.ErrTryAgainLater)
	}
	if err := rts[1].in(func() error { return rts[1].cfg.GetStatusNetworkList(ctx, l) }); cniCode(err) != 50 {
		t.Errorf("STATUS with the router down: %v; want CNI error 50", err)
	}
	if err := rts[1].in(func() error { return rts[1].cfg.DelNetworkList(ctx, l, rtConf(ctrs[1], "eth0")) }); err != nil {
		t.Errorf("DEL with the router down: %v", err)
	}
}
