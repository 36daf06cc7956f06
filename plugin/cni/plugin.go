package cni

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"

	"weavemesh.dev/weave/api"
)

// Versions are the CNI versions the plugin serves.
var Versions = version.PluginSupports("0.4.0", "1.0.0", "1.1.0")

// Funcs are the plugin's commands, for skel.PluginMainFuncs.
func Funcs() skel.CNIFuncs {
	return skel.CNIFuncs{Add: Add, Del: Del, Check: Check, GC: GC, Status: Status}
}

// timeout bounds one command: the router's allocation waits at most 20 s.
const timeout = 40 * time.Second

// errNotAvailable is the spec's STATUS code 50: the plugin cannot add
// containers now (the types package has no name for it).
const errNotAvailable = 50

// errRouter is the plugin-specific code of a request the router refused
// (address space exhausted, address in use, namespace unusable).
const errRouter = 100

// routerError turns an API error into the CNI error the runtime expects:
// a router that is not up or not ready yet is "try again later".
func routerError(what string, err error) error {
	switch {
	case errors.Is(err, api.ErrNoRouter), errors.Is(err, api.ErrNotReady), errors.Is(err, context.DeadlineExceeded):
		return types.NewError(types.ErrTryAgainLater, "weave-net: the weave router is not up yet; try again later", fmt.Sprintf("%s: %v", what, err))
	case errors.Is(err, api.ErrBadRequest), errors.Is(err, api.ErrConflict):
		return types.NewError(errRouter, fmt.Sprintf("weave-net: %s: %v", what, err), "")
	}
	return types.NewError(types.ErrInternal, fmt.Sprintf("weave-net: %s: %v", what, err), "")
}

func withClient(conf *NetConf, fn func(ctx context.Context, c *api.Client) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c := api.NewClient(conf.API)
	defer c.CloseIdleConnections()
	return fn(ctx, c)
}

// Add implements CNI ADD.
func Add(args *skel.CmdArgs) error {
	conf, err := parseConf(args.StdinData, false)
	if err != nil {
		return err
	}
	if args.Netns == "" {
		return types.NewError(types.ErrInvalidEnvironmentVariables, "weave-net: CNI_NETNS is empty", "")
	}
	var cidrs []string
	var delegated *current.Result
	switch {
	case conf.IPAM.Type != "":
		r, err := invoke.DelegateAdd(context.Background(), conf.IPAM.Type, args.StdinData, nil)
		if err != nil {
			return err
		}
		if delegated, err = current.NewResultFromResult(r); err != nil {
			return types.NewError(types.ErrDecodingFailure, "weave-net: the IPAM plugin's result", err.Error())
		}
		for _, ip := range delegated.IPs {
			cidrs = append(cidrs, ip.Address.String())
		}
		if len(cidrs) == 0 {
			return types.NewError(types.ErrInvalidNetworkConfig, fmt.Sprintf("weave-net: the IPAM plugin %s gave no address", conf.IPAM.Type), "")
		}
	case conf.Subnet != "":
		cidrs = []string{"net:" + conf.Subnet}
	}
	req := api.AttachRequest{Netns: args.Netns, CIDRs: cidrs, Iface: args.IfName}
	if !conf.NoDNSName {
		req.Name = cniArg(args.Args, "K8S_POD_NAME")
	}
	var ep api.Endpoint
	var gw net.IP
	var dnsConf types.DNS
	err = withClient(conf, func(ctx context.Context, c *api.Client) error {
		var err error
		if ep, err = c.Attach(ctx, req); err != nil {
			return err
		}
		// Where the container finds weaveDNS; nothing with --no-dns.
		if st, err := c.DNSStatus(ctx); err == nil {
			dnsConf = types.DNS{Nameservers: []string{st.Nameserver}, Search: []string{strings.TrimSuffix(st.Domain, ".")}}
		}
		if conf.DefaultRoute && delegated == nil {
			gw, err = defaultRoute(ctx, c, conf, args)
		}
		return err
	})
	if err != nil {
		if delegated != nil {
			invoke.DelegateDel(context.Background(), conf.IPAM.Type, args.StdinData, nil)
		}
		return routerError("attach "+args.Netns, err)
	}
	if err := saveAttachment(conf.DataDir, args.ContainerID, args.IfName, args.Netns); err != nil {
		return types.NewError(types.ErrIOFailure, "weave-net: "+err.Error(), "")
	}
	result, err := resultOf(args, ep, dnsConf)
	if err != nil {
		return err
	}
	if gw != nil {
		result.Routes = []*types.Route{{Dst: net.IPNet{IP: net.IPv4zero, Mask: net.CIDRMask(0, 32)}, GW: gw}}
		for _, ip := range result.IPs {
			ip.Gateway = gw
		}
	}
	if delegated != nil {
		result.Routes = delegated.Routes
		for _, ip := range result.IPs {
			for _, d := range delegated.IPs {
				if d.Address.IP.Equal(ip.Address.IP) {
					ip.Gateway = d.Gateway
				}
			}
		}
	}
	return types.PrintResult(result, conf.CNIVersion)
}

// defaultRoute exposes the host in the container's subnet and routes the
// container's default traffic to that address; it returns the address.
func defaultRoute(ctx context.Context, c *api.Client, conf *NetConf, args *skel.CmdArgs) (net.IP, error) {
	item := "net:default"
	if conf.Subnet != "" {
		item = "net:" + conf.Subnet
	}
	exp, err := c.Expose(ctx, []string{item})
	if err != nil {
		return nil, err
	}
	if len(exp.CIDRs) == 0 {
		return nil, errors.New("the router exposed no address")
	}
	p, err := netip.ParsePrefix(exp.CIDRs[0])
	if err != nil {
		return nil, fmt.Errorf("the router exposed %q: %w", exp.CIDRs[0], err)
	}
	gw := net.IP(p.Addr().AsSlice())
	err = ns.WithNetNSPath(args.Netns, func(ns.NetNS) error {
		l, err := netlink.LinkByName(args.IfName)
		if err != nil {
			return fmt.Errorf("find %s: %w", args.IfName, err)
		}
		if err := netlink.RouteReplace(&netlink.Route{LinkIndex: l.Attrs().Index, Gw: gw}); err != nil {
			return fmt.Errorf("default route via %s: %w", gw, err)
		}
		return nil
	})
	return gw, err
}

// resultOf is the CNI result for an endpoint; dns says where the
// container resolves names (weaveDNS answers inside its namespace).
func resultOf(args *skel.CmdArgs, ep api.Endpoint, dns types.DNS) (*current.Result, error) {
	r := &current.Result{
		CNIVersion: current.ImplementedSpecVersion,
		Interfaces: []*current.Interface{{Name: ep.Iface, Mac: ep.MAC, Mtu: ep.MTU, Sandbox: args.Netns}},
		DNS:        dns,
	}
	for _, c := range ep.CIDRs {
		_, n, err := net.ParseCIDR(c)
		p, perr := netip.ParsePrefix(c)
		if err != nil || perr != nil {
			return nil, types.NewError(types.ErrInternal, fmt.Sprintf("weave-net: the router gave the address %q", c), "")
		}
		n.IP = p.Addr().AsSlice()
		r.IPs = append(r.IPs, &current.IPConfig{Interface: current.Int(0), Address: *n})
	}
	return r, nil
}

// Del implements CNI DEL. It succeeds when there is nothing to remove, and
// when the router is down: a router that starts releases the endpoints
// whose namespace is gone.
func Del(args *skel.CmdArgs) error {
	conf, err := parseConf(args.StdinData, false)
	if err != nil {
		return err
	}
	netns := args.Netns
	if netns == "" {
		if netns, err = loadAttachment(conf.DataDir, args.ContainerID, args.IfName); err != nil {
			return types.NewError(types.ErrIOFailure, "weave-net: "+err.Error(), "")
		}
	}
	if netns != "" {
		err := withClient(conf, func(ctx context.Context, c *api.Client) error {
			_, err := c.Detach(ctx, api.DetachRequest{Netns: netns})
			return err
		})
		switch {
		case err == nil, errors.Is(err, api.ErrNotFound), errors.Is(err, api.ErrNoRouter):
		default:
			return routerError("detach "+netns, err)
		}
	}
	if conf.IPAM.Type != "" {
		if err := invoke.DelegateDel(context.Background(), conf.IPAM.Type, args.StdinData, nil); err != nil {
			return err
		}
	}
	if err := removeAttachment(conf.DataDir, args.ContainerID, args.IfName); err != nil {
		return types.NewError(types.ErrIOFailure, "weave-net: "+err.Error(), "")
	}
	return nil
}

// Check implements CNI CHECK: the router must hold an endpoint in the
// namespace, with the interface and every address of the previous result.
func Check(args *skel.CmdArgs) error {
	conf, err := parseConf(args.StdinData, true)
	if err != nil {
		return err
	}
	if conf.PrevResult == nil {
		return types.NewError(types.ErrInvalidNetworkConfig, "weave-net: CHECK needs prevResult", "")
	}
	prev, err := current.NewResultFromResult(conf.PrevResult)
	if err != nil {
		return types.NewError(types.ErrDecodingFailure, "weave-net: cannot read prevResult", err.Error())
	}
	var eps []api.Endpoint
	if err := withClient(conf, func(ctx context.Context, c *api.Client) error {
		var err error
		eps, err = c.Endpoints(ctx)
		return err
	}); err != nil {
		return routerError("list endpoints", err)
	}
	i := slices.IndexFunc(eps, func(ep api.Endpoint) bool { return ep.Netns == args.Netns })
	if i < 0 {
		return types.NewError(types.ErrUnknownContainer, fmt.Sprintf("weave-net: no weave endpoint in %s", args.Netns), "")
	}
	ep := eps[i]
	if ep.Iface != args.IfName {
		return types.NewError(errRouter, fmt.Sprintf("weave-net: the endpoint in %s is %q, not %q", args.Netns, ep.Iface, args.IfName), "")
	}
	for _, ip := range prev.IPs {
		if !slices.Contains(ep.CIDRs, ip.Address.String()) {
			return types.NewError(errRouter, fmt.Sprintf("weave-net: the endpoint in %s has %v, not %s", args.Netns, ep.CIDRs, ip.Address.String()), "")
		}
	}
	return nil
}

// GC implements CNI GC: attachments the runtime does not list as valid
// are detached.
func GC(args *skel.CmdArgs) error {
	conf, err := parseConf(args.StdinData, false)
	if err != nil {
		return err
	}
	valid := map[types.GCAttachment]bool{}
	for _, a := range conf.ValidAttachments {
		valid[a] = true
	}
	all, err := listAttachments(conf.DataDir)
	if err != nil {
		return types.NewError(types.ErrIOFailure, "weave-net: "+err.Error(), "")
	}
	return withClient(conf, func(ctx context.Context, c *api.Client) error {
		for _, a := range all {
			if valid[types.GCAttachment{ContainerID: a.containerID, IfName: a.ifname}] {
				continue
			}
			if _, err := c.Detach(ctx, api.DetachRequest{Netns: a.netns}); err != nil && !errors.Is(err, api.ErrNotFound) {
				return routerError("detach "+a.netns, err)
			}
			if err := removeAttachment(conf.DataDir, a.containerID, a.ifname); err != nil {
				return types.NewError(types.ErrIOFailure, "weave-net: "+err.Error(), "")
			}
		}
		return nil
	})
}

// Status implements CNI STATUS: the plugin can add containers while the
// router runs and is ready.
func Status(args *skel.CmdArgs) error {
	conf, err := parseConf(args.StdinData, false)
	if err != nil {
		return err
	}
	return withClient(conf, func(ctx context.Context, c *api.Client) error {
		st, err := c.Status(ctx)
		if err != nil {
			return types.NewError(errNotAvailable, "weave-net: the weave router is not running", err.Error())
		}
		if !st.Ready {
			return types.NewError(errNotAvailable, "weave-net: the weave router is starting", "")
		}
		return nil
	})
}
