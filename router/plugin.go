package router

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"

	"weavemesh.dev/weave/api"
	"weavemesh.dev/weave/dns"
	"weavemesh.dev/weave/plugin/docker"
)

// Names of the veth pairs of Docker endpoints: the prefix and the first 8
// characters of the endpoint id. They differ from weave attach's "vwe" so
// that the endpoint scans of IPAM and the registry never take them for
// weave endpoints.
const (
	dockerHostPrefix = "vwd" // the host end, a bridge port
	dockerPeerPrefix = "vwc" // the end Docker moves into the container
)

// dockerPlugin is the router's side of the Docker plugin: it implements
// docker.Router over the bridge, IPAM and weaveDNS, serves the socket, and
// takes part in endpoint reconciliation so that the addresses of Docker's
// pools survive a router restart.
type dockerPlugin struct {
	r      *Router
	p      *docker.Plugin
	srv    *docker.Server
	driver string      // the plugin's name: its socket's, less .sock
	dns    *dnsFeature // nil with --no-dns
	// cancel stops the name watcher, which wg counts.
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// held are the pools' allocations found at start, before the IPAM
	// hook's reconcile releases what no weave endpoint holds; reconcile
	// claims them back.
	held []heldAddr
}

// heldAddr is an address IPAM held for a Docker pool at start.
type heldAddr struct {
	owner string
	addr  netip.Addr
}

// pluginSocket says where to serve the plugin, and whether failing to is
// an error (the user asked for it) or only worth a warning (the default).
func (c Config) pluginSocket() (path string, required bool) {
	switch {
	case c.NoPlugin:
		return "", false
	case c.PluginSocket != "":
		return c.PluginSocket, true
	}
	if st, err := os.Stat(filepath.Dir(docker.DefaultSocket)); err == nil && st.IsDir() {
		return docker.DefaultSocket, false
	}
	return "", false
}

// startPlugin serves the Docker plugin: after the IPAM hook and DNS are
// set up (its hook must come after theirs), before the endpoints are
// adopted. The returned function stops it and removes the socket.
func (r *Router) startPlugin() (func(), error) {
	path, required := r.cfg.pluginSocket()
	if path == "" {
		return func() {}, nil
	}
	log := r.log.With("component", "docker-plugin")
	dp := &dockerPlugin{r: r, driver: strings.TrimSuffix(filepath.Base(path), ".sock")}
	for _, h := range r.hooks {
		if f, ok := h.(*dnsFeature); ok {
			dp.dns = f
		}
	}
	for _, a := range r.ipam.a.Status().Allocations {
		if strings.HasPrefix(a.Owner, docker.OwnerPrefix) {
			dp.held = append(dp.held, heldAddr{owner: a.Owner, addr: a.Addr})
		}
	}
	var err error
	if dp.p, err = docker.New(docker.Options{Router: dp, Logger: log}); err != nil {
		return nil, err
	}
	if dp.srv, err = docker.Serve(path, dp.p); err != nil {
		if required {
			return nil, fmt.Errorf("--plugin-socket: %w", err)
		}
		log.Warn("not serving the Docker plugin; containers on weavemesh networks need it (start one router per host, or turn it off with --no-plugin)", "err", err)
		return func() {}, nil
	}
	r.hooks = append(r.hooks, dp)
	unforward := allowBridgeForwarding(log)
	log.Info("Docker plugin ready", "socket", path, "driver", dp.driver)
	return func() {
		if dp.cancel != nil {
			dp.cancel()
		}
		dp.wg.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := dp.srv.Close(ctx); err != nil {
			log.Warn("stop the Docker plugin", "err", err)
		}
		unforward()
	}, nil
}

// forwardRule accepts frames bridged between ports of the weave bridge.
// Docker loads br_netfilter, so bridged frames pass the iptables FORWARD
// chain, and sets that chain's policy to DROP: without the rule, no
// container on the bridge reaches another, here or across the mesh.
var forwardRule = []string{"FORWARD", "-i", BridgeName, "-o", BridgeName, "-j", "ACCEPT"}

// allowBridgeForwarding puts forwardRule first in FORWARD unless it is
// there, and returns what takes it out again (only if it was added here).
// Without iptables there is nothing to do.
func allowBridgeForwarding(log *slog.Logger) func() {
	ipt, err := exec.LookPath("iptables")
	if err != nil {
		log.Debug("no iptables; not adding a FORWARD rule for the bridge", "err", err)
		return func() {}
	}
	// -w: wait for the xtables lock rather than fail while Docker holds it.
	run := func(args ...string) error {
		args = append([]string{"-w", "5"}, args...)
		if out, err := exec.Command(ipt, args...).CombinedOutput(); err != nil {
			return fmt.Errorf("iptables %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
		return nil
	}
	if run(append([]string{"-C"}, forwardRule...)...) == nil {
		return func() {}
	}
	if err := run(append([]string{"-I", forwardRule[0], "1"}, forwardRule[1:]...)...); err != nil {
		log.Warn("cannot let frames cross the weave bridge through iptables' FORWARD chain; containers on weavemesh networks may not reach each other", "err", err)
		return func() {}
	}
	return func() {
		if err := run(append([]string{"-D"}, forwardRule...)...); err != nil {
			log.Warn("remove the bridge's FORWARD rule", "err", err)
		}
	}
}

// ---- endpointHook: only reconcile matters, Docker endpoints never pass
// through Router.Attach ----

func (dp *dockerPlugin) prepareAttach(ctx context.Context, p *attachPlan) error { return nil }
func (dp *dockerPlugin) abortAttach(p *attachPlan)                              {}
func (dp *dockerPlugin) attached(ctx context.Context, p *attachPlan, ep api.Endpoint) error {
	return nil
}
func (dp *dockerPlugin) detached(ctx context.Context, ep api.Endpoint) {}

// reconcile claims back the pools' addresses the IPAM hook's reconcile
// released: Docker still holds them (it releases them itself, with
// ReleaseAddress and ReleasePool). Then, DNS being reconciled too, it
// starts following the Docker engine for the containers' names.
func (dp *dockerPlugin) reconcile(ctx context.Context, eps []api.Endpoint) {
	for _, h := range dp.held {
		if warn := dp.r.ipam.a.Claim(h.owner, h.addr); warn != "" {
			dp.r.log.Warn("cannot keep the address of a Docker pool", "component", "docker-plugin", "address", h.addr, "pool", h.owner, "note", warn)
		}
	}
	dp.held = nil
	if dp.dns != nil && dp.cancel == nil {
		wctx, cancel := context.WithCancel(context.Background())
		dp.cancel = cancel
		dp.wg.Add(1)
		go func() {
			defer dp.wg.Done()
			dp.p.WatchNames(wctx, docker.DefaultEngineSocket, dp.driver)
		}()
	}
}

// ---- docker.Router ----

// CreateVeth implements docker.Router.
func (dp *dockerPlugin) CreateVeth(id string) (string, error) {
	if err := dp.r.checkReady(); err != nil {
		return "", err
	}
	host, peer := dockerHostPrefix+id[:8], dockerPeerPrefix+id[:8]
	if l, err := netlink.LinkByName(host); err == nil {
		if l.Type() != "veth" {
			return "", fmt.Errorf("interface %s exists and is a %s, not the veth of endpoint %s; remove it", host, l.Type(), id)
		}
		// A repeated Join: the pair is there, its other end here or
		// already in the container.
		return peer, dp.r.bridge.AddPort(host)
	}
	la := netlink.NewLinkAttrs()
	la.Name, la.MTU = host, dp.r.cfg.MTU
	veth := &netlink.Veth{LinkAttrs: la, PeerName: peer, PeerMTU: uint32(dp.r.cfg.MTU)}
	if err := netlink.LinkAdd(veth); err != nil {
		return "", fmt.Errorf("create veth pair %s/%s: %w", host, peer, err)
	}
	if err := dp.r.bridge.AddPort(host); err != nil {
		if derr := netlink.LinkDel(veth); derr != nil {
			err = errors.Join(err, derr)
		}
		return "", err
	}
	dp.r.log.Info("Docker endpoint veth created", "component", "docker-plugin", "iface", host, "peer_iface", peer, "mtu", dp.r.cfg.MTU)
	return peer, nil
}

// DeleteVeth implements docker.Router.
func (dp *dockerPlugin) DeleteVeth(id string) error {
	host := dockerHostPrefix + id[:8]
	l, err := netlink.LinkByName(host)
	var nf netlink.LinkNotFoundError
	if errors.As(err, &nf) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("look up %s: %w", host, err)
	}
	if l.Type() != "veth" {
		return nil
	}
	if err := netlink.LinkDel(l); err != nil && !errors.As(err, &nf) {
		return fmt.Errorf("delete veth %s: %w", host, err)
	}
	return nil
}

// Range implements docker.Router.
func (dp *dockerPlugin) Range() netip.Prefix { return dp.r.cfg.IPAllocRange }

// DefaultSubnet implements docker.Router.
func (dp *dockerPlugin) DefaultSubnet() netip.Prefix { return dp.r.cfg.IPAllocDefaultSubnet }

// Allocate implements docker.Router.
func (dp *dockerPlugin) Allocate(ctx context.Context, owner string, subnet netip.Prefix) (netip.Prefix, error) {
	if err := dp.r.checkReady(); err != nil {
		return netip.Prefix{}, err
	}
	return dp.r.ipam.allocate(ctx, owner, subnet)
}

// Claim implements docker.Router: an address another owner holds is
// refused; one IPAM cannot record (space of another peer, a range not split
// yet) is accepted with a warning, as for weave attach.
func (dp *dockerPlugin) Claim(owner string, addr netip.Addr) error {
	if err := dp.r.checkReady(); err != nil {
		return err
	}
	warn := dp.r.ipam.a.Claim(owner, addr)
	if strings.Contains(warn, "already allocated") {
		return errors.New(warn)
	}
	if warn != "" {
		dp.r.log.Warn("address chosen by hand for a Docker container", "component", "docker-plugin", "address", addr, "note", warn)
	}
	return nil
}

// Release implements docker.Router.
func (dp *dockerPlugin) Release(owner string, addr netip.Addr) { dp.r.ipam.a.ReleaseAddr(owner, addr) }

// ReleaseAll implements docker.Router.
func (dp *dockerPlugin) ReleaseAll(owner string) {
	if got := dp.r.ipam.a.Release(owner); len(got) > 0 {
		dp.r.log.Info("released the addresses of a Docker pool", "component", "docker-plugin", "pool", owner, "addresses", got)
	}
}

// RegisterName implements docker.Router.
func (dp *dockerPlugin) RegisterName(id, name string, addrs []netip.Addr) error {
	if dp.dns == nil {
		return errors.New("weaveDNS is off on this router (--no-dns)")
	}
	cidrs := make([]string, len(addrs))
	for i, a := range addrs {
		cidrs[i] = netip.PrefixFrom(a, a.BitLen()).String()
	}
	dp.dns.register(id, name, cidrs)
	return nil
}

// UnregisterName implements docker.Router.
func (dp *dockerPlugin) UnregisterName(id string) {
	if dp.dns != nil {
		dp.dns.store.RemoveEndpoint(id)
	}
}

// ServeDNS implements docker.Router.
func (dp *dockerPlugin) ServeDNS(id, netns string) error {
	if dp.dns == nil {
		return nil
	}
	return dp.dns.srv.Listen(dnsKeyEndpoint+id, dns.ContainerNameserver, netns)
}

// StopDNS implements docker.Router.
func (dp *dockerPlugin) StopDNS(id string) {
	if dp.dns != nil {
		dp.dns.srv.Stop(dnsKeyEndpoint + id)
	}
}
