package dockerfeature

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os/exec"
	"strings"

	"github.com/vishvananda/netlink"
)

// Names of the veth pairs of Docker endpoints: the prefix and the first 8
// characters of the endpoint id. They differ from weave attach's "vwe" so
// that the endpoint scans of IPAM and the registry never take them for
// weave endpoints.
const (
	dockerHostPrefix = "vwd" // the host end, a bridge port
	dockerPeerPrefix = "vwc" // the end Docker moves into the container
)

// plugRouter is the Feature as docker.Router: veths on the bridge,
// addresses from IP allocation, names from weaveDNS.
type plugRouter Feature

// forwardRule accepts frames bridged between ports of the bridge named
// by its "%s". Docker loads br_netfilter, so bridged frames pass the
// iptables FORWARD chain, and sets that chain's policy to DROP: without
// the rule, no container on the bridge reaches another, here or across
// the mesh.
func forwardRule(bridge string) []string {
	return []string{"FORWARD", "-i", bridge, "-o", bridge, "-j", "ACCEPT"}
}

// allowForwarding is allowBridgeForwarding, replaced in tests.
var allowForwarding = allowBridgeForwarding

// allowBridgeForwarding puts forwardRule first in FORWARD unless it is
// there, and returns what takes it out again (only if it was added here).
// Without iptables there is nothing to do.
func allowBridgeForwarding(log *slog.Logger, bridge string) func() {
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
	rule := forwardRule(bridge)
	if run(append([]string{"-C"}, rule...)...) == nil {
		return func() {}
	}
	if err := run(append([]string{"-I", rule[0], "1"}, rule[1:]...)...); err != nil {
		log.Warn("cannot let frames cross the weave bridge through iptables' FORWARD chain; containers on weavemesh networks may not reach each other", "err", err)
		return func() {}
	}
	return func() {
		if err := run(append([]string{"-D"}, rule...)...); err != nil {
			log.Warn("remove the bridge's FORWARD rule", "err", err)
		}
	}
}

// CreateVeth implements docker.Router.
func (r *plugRouter) CreateVeth(id string) (string, error) {
	if err := r.host.Ready(); err != nil {
		return "", err
	}
	if len(id) < 8 {
		return "", fmt.Errorf("endpoint id %q is too short", id)
	}
	br := r.host.Bridge
	host, peer := dockerHostPrefix+id[:8], dockerPeerPrefix+id[:8]
	if l, err := netlink.LinkByName(host); err == nil {
		if l.Type() != "veth" {
			return "", fmt.Errorf("interface %s exists and is a %s, not the veth of endpoint %s; remove it", host, l.Type(), id)
		}
		// A repeated Join: the pair is there, its other end here or
		// already in the container.
		return peer, br.AddPort(host)
	}
	mtu := br.MTU()
	la := netlink.NewLinkAttrs()
	la.Name, la.MTU = host, mtu
	veth := &netlink.Veth{LinkAttrs: la, PeerName: peer, PeerMTU: uint32(mtu)}
	if err := netlink.LinkAdd(veth); err != nil {
		return "", fmt.Errorf("create veth pair %s/%s: %w", host, peer, err)
	}
	if err := br.AddPort(host); err != nil {
		if derr := netlink.LinkDel(veth); derr != nil {
			err = errors.Join(err, derr)
		}
		return "", err
	}
	r.log.Info("Docker endpoint veth created", "iface", host, "peer_iface", peer, "mtu", mtu)
	return peer, nil
}

// DeleteVeth implements docker.Router.
func (r *plugRouter) DeleteVeth(id string) error {
	if len(id) < 8 {
		return nil
	}
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
func (r *plugRouter) Range() netip.Prefix { return r.ipam.Range() }

// DefaultSubnet implements docker.Router.
func (r *plugRouter) DefaultSubnet() netip.Prefix { return r.ipam.DefaultSubnet() }

// Allocate implements docker.Router.
func (r *plugRouter) Allocate(ctx context.Context, owner string, subnet netip.Prefix) (netip.Prefix, error) {
	if err := r.host.Ready(); err != nil {
		return netip.Prefix{}, err
	}
	return r.ipam.Allocate(ctx, owner, subnet)
}

// Claim implements docker.Router: an address another owner holds is
// refused; one IPAM cannot record (space of another peer, a range not split
// yet) is accepted with a warning, as for weave attach.
func (r *plugRouter) Claim(owner string, addr netip.Addr) error {
	if err := r.host.Ready(); err != nil {
		return err
	}
	warn := r.ipam.Claim(owner, addr)
	if strings.Contains(warn, "already allocated") {
		return errors.New(warn)
	}
	if warn != "" {
		r.log.Warn("address chosen by hand for a Docker container", "address", addr, "note", warn)
	}
	return nil
}

// Release implements docker.Router.
func (r *plugRouter) Release(owner string, addr netip.Addr) { r.ipam.ReleaseAddr(owner, addr) }

// ReleaseAll implements docker.Router.
func (r *plugRouter) ReleaseAll(owner string) {
	if got := r.ipam.Release(owner); len(got) > 0 {
		r.log.Info("released the addresses of a Docker pool", "pool", owner, "addresses", got)
	}
}

// RegisterNames implements docker.Router: the container's name and its
// aliases are all names of the endpoint, at all its addresses.
func (r *plugRouter) RegisterNames(id string, names []string, addrs []netip.Addr) error {
	if r.dns == nil {
		return errors.New("weaveDNS is off on this router (--no-dns)")
	}
	return r.dns.RegisterEndpointNames(id, names, addrs)
}

// UnregisterName implements docker.Router.
func (r *plugRouter) UnregisterName(id string) {
	if r.dns != nil {
		r.dns.UnregisterEndpoint(id)
	}
}

// ServeDNS implements docker.Router.
func (r *plugRouter) ServeDNS(id, netns string) error {
	if r.dns == nil {
		return nil
	}
	return r.dns.ServeNamespace(id, netns)
}

// StopDNS implements docker.Router.
func (r *plugRouter) StopDNS(id string) {
	if r.dns != nil {
		r.dns.StopNamespace(id)
	}
}
