package docker

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/docker/go-plugins-helpers/network"
)

// The request types of methods whose content the plugin ignores.
type (
	discovery   = network.DiscoveryNotification
	endpointRef = network.ProgramExternalConnectivityRequest
)

// NameOption is the endpoint option (`docker network connect
// --driver-opt`, or a network's `-o`) that names the endpoint in weaveDNS.
const NameOption = "weave.name"

func (p *Plugin) capabilities() network.CapabilitiesResponse {
	return network.CapabilitiesResponse{Scope: network.LocalScope, ConnectivityScope: network.LocalScope}
}

func (p *Plugin) createNetwork(req network.CreateNetworkRequest) (any, error) {
	if req.NetworkID == "" {
		return nil, errors.New("CreateNetwork: NetworkID is empty")
	}
	var pool string
	for _, d := range req.IPv4Data {
		if d != nil && d.Pool != "" {
			pool = d.Pool
			break
		}
	}
	if len(req.IPv6Data) > 0 {
		return nil, errors.New("weavemesh networks carry IPv6 traffic but do not allocate IPv6 addresses; create the network without --ipv6")
	}
	p.log.Info("docker network created", "network", short(req.NetworkID), "pool", pool)
	return struct{}{}, nil
}

func (p *Plugin) deleteNetwork(req network.DeleteNetworkRequest) (any, error) {
	p.mu.Lock()
	var eps []string
	for id, ep := range p.endpoints {
		if ep.network == req.NetworkID {
			eps = append(eps, id)
			delete(p.endpoints, id)
		}
	}
	p.mu.Unlock()
	// Docker deletes the endpoints first; these are only left over from
	// calls that failed half-way.
	for _, id := range eps {
		p.dropEndpoint(id)
	}
	p.log.Info("docker network deleted", "network", short(req.NetworkID))
	return struct{}{}, nil
}

func (p *Plugin) createEndpoint(req network.CreateEndpointRequest) (any, error) {
	if err := checkID(req.EndpointID); err != nil {
		return nil, fmt.Errorf("CreateEndpoint: %w", err)
	}
	ep := &endpoint{network: req.NetworkID}
	if req.Interface != nil {
		ep.address, ep.mac = req.Interface.Address, req.Interface.MacAddress
	}
	if ep.address != "" {
		if _, err := netip.ParsePrefix(ep.address); err != nil {
			return nil, fmt.Errorf("CreateEndpoint: address %q: want IP/PREFIX: %w", ep.address, err)
		}
	}
	if name, ok := req.Options[NameOption].(string); ok {
		ep.name, ep.optName = name, name
	}
	resp := network.CreateEndpointResponse{}
	p.mu.Lock()
	if old, ok := p.endpoints[req.EndpointID]; ok && old.network == req.NetworkID {
		// A repeated call: answer what the first one did.
		ep.mac, ep.ownMAC = old.mac, old.ownMAC
		if ep.optName == "" {
			ep.name, ep.optName = old.name, old.optName
		}
	}
	if ep.mac == "" {
		ep.mac, ep.ownMAC = newMAC(ep.address).String(), true
	}
	if ep.ownMAC {
		// Only an interface field Docker left empty may be set.
		resp.Interface = &network.EndpointInterface{MacAddress: ep.mac}
	}
	p.endpoints[req.EndpointID] = ep
	p.mu.Unlock()
	return resp, nil
}

// newMAC makes a locally administered address: 0a:58 and the IPv4
// address as weave attach does, random without one.
func newMAC(addr string) net.HardwareAddr {
	mac := make(net.HardwareAddr, 6)
	if pfx, err := netip.ParsePrefix(addr); err == nil && pfx.Addr().Is4() {
		a := pfx.Addr().As4()
		mac[0], mac[1] = 0x0a, 0x58
		copy(mac[2:], a[:])
		return mac
	}
	randomMAC(mac)
	return mac
}

func (p *Plugin) deleteEndpoint(req network.DeleteEndpointRequest) (any, error) {
	if err := checkID(req.EndpointID); err != nil {
		return nil, fmt.Errorf("DeleteEndpoint: %w", err)
	}
	p.mu.Lock()
	delete(p.endpoints, req.EndpointID)
	p.mu.Unlock()
	if err := p.dropEndpoint(req.EndpointID); err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

// dropEndpoint removes what the router holds for an endpoint: its veth,
// its name and its DNS listener. Every step is idempotent, so it is safe
// for endpoints that are half gone or unknown (Leave after DeleteEndpoint,
// calls after a router restart).
func (p *Plugin) dropEndpoint(id string) error {
	p.r.UnregisterName(id)
	p.r.StopDNS(id)
	if err := p.r.DeleteVeth(id); err != nil {
		return fmt.Errorf("remove the veth of endpoint %s: %w", short(id), err)
	}
	return nil
}

func (p *Plugin) endpointInfo(req network.InfoRequest) (any, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	v := map[string]string{}
	if ep, ok := p.endpoints[req.EndpointID]; ok {
		v["address"], v["mac"] = ep.address, ep.mac
		if ep.name != "" {
			v["name"] = ep.name
		}
	}
	return network.InfoResponse{Value: v}, nil
}

func (p *Plugin) join(req network.JoinRequest) (any, error) {
	if err := checkID(req.EndpointID); err != nil {
		return nil, fmt.Errorf("Join: %w", err)
	}
	src, err := p.r.CreateVeth(req.EndpointID)
	if err != nil {
		return nil, fmt.Errorf("Join: %w", err)
	}
	p.mu.Lock()
	ep, ok := p.endpoints[req.EndpointID]
	if !ok {
		// Created before a router restart: Docker knows it, we do not.
		ep = &endpoint{network: req.NetworkID}
		p.endpoints[req.EndpointID] = ep
	}
	name, address := ep.name, ep.address
	p.mu.Unlock()
	if name != "" {
		var addrs []netip.Addr
		if pfx, err := netip.ParsePrefix(address); err == nil {
			addrs = append(addrs, pfx.Addr())
		}
		if err := p.r.RegisterNames(req.EndpointID, []string{name}, addrs); err != nil {
			p.log.Warn("cannot register the endpoint's DNS name", "endpoint", short(req.EndpointID), "name", name, "err", err)
		}
	}
	// No gateway: the container keeps its default route through
	// docker_gwbridge (DisableGatewayService false), as with overlay.
	return network.JoinResponse{InterfaceName: network.InterfaceName{SrcName: src, DstPrefix: DstPrefix}}, nil
}

func (p *Plugin) leave(req network.LeaveRequest) (any, error) {
	if err := checkID(req.EndpointID); err != nil {
		return nil, fmt.Errorf("Leave: %w", err)
	}
	if err := p.dropEndpoint(req.EndpointID); err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

// checkID accepts endpoint ids as Docker makes them: hex, of which the
// veth names use the first 8 characters.
func checkID(id string) error {
	if len(id) < 8 || len(id) > 128 {
		return fmt.Errorf("endpoint id %q: want Docker's hexadecimal id", id)
	}
	for _, c := range id {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return fmt.Errorf("endpoint id %q: want Docker's hexadecimal id", id)
		}
	}
	return nil
}

// short is an id cut to what docker ps shows, for logs.
func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
