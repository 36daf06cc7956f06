package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/go-plugins-helpers/ipam"
	"github.com/docker/go-plugins-helpers/network"

	"weavemesh.dev/weave/api"
	"weavemesh.dev/weave/plugin/docker"
	"weavemesh.dev/weave/test/harness"
)

// dockerEndpoint is one container as dockerd would make it on a weavemesh
// network, with the plugin doing the driver's part and the test
// libnetwork's.
type dockerEndpoint struct {
	ctr             *harness.Container
	netID, epID     string
	poolID, addr    string
	srcName, mac    string
	gateway, subnet string
}

// pluginSocket is host h's plugin socket in the cluster's directory.
func pluginSocket(cl *harness.Cluster, h *harness.Host) string {
	return filepath.Join(cl.Dir, h.Name+"-plugin.sock")
}

// dockerCreate replays `docker network create -d weavemesh --ipam-driver
// weavemesh` and `docker run --network` on host h: the calls dockerd makes,
// in its order, then what libnetwork does with the answers (moves the
// veth into the container, renames it, sets its MAC and address, brings it
// up).
func dockerCreate(ctx context.Context, t *testing.T, pc *harness.PluginClient, h *harness.Host, ctr *harness.Container, netID, epID string) *dockerEndpoint {
	t.Helper()
	call := func(method string, req, resp any) {
		t.Helper()
		if err := pc.Call(ctx, method, req, resp); err != nil {
			t.Fatal(err)
		}
	}
	d := &dockerEndpoint{ctr: ctr, netID: netID, epID: epID}
	var act struct{ Implements []string }
	call("Plugin.Activate", nil, &act)
	if strings.Join(act.Implements, ",") != "NetworkDriver,IpamDriver" {
		t.Fatalf("Activate = %v", act)
	}
	var caps network.CapabilitiesResponse
	call("NetworkDriver.GetCapabilities", nil, &caps)
	var spaces ipam.AddressSpacesResponse
	call("IpamDriver.GetDefaultAddressSpaces", nil, &spaces)
	var pool ipam.RequestPoolResponse
	call("IpamDriver.RequestPool", ipam.RequestPoolRequest{AddressSpace: spaces.LocalDefaultAddressSpace}, &pool)
	d.poolID, d.subnet = pool.PoolID, pool.Pool
	var gw ipam.RequestAddressResponse
	call("IpamDriver.RequestAddress", ipam.RequestAddressRequest{PoolID: pool.PoolID,
		Options: map[string]string{"RequestAddressType": "com.docker.network.gateway"}}, &gw)
	d.gateway = gw.Address
	call("NetworkDriver.CreateNetwork", network.CreateNetworkRequest{NetworkID: netID, Options: map[string]any{},
		IPv4Data: []*network.IPAMData{{AddressSpace: spaces.LocalDefaultAddressSpace, Pool: pool.Pool, Gateway: gw.Address}}}, nil)
	var addr ipam.RequestAddressResponse
	call("IpamDriver.RequestAddress", ipam.RequestAddressRequest{PoolID: pool.PoolID}, &addr)
	d.addr = addr.Address
	var ep network.CreateEndpointResponse
	call("NetworkDriver.CreateEndpoint", network.CreateEndpointRequest{NetworkID: netID, EndpointID: epID,
		Interface: &network.EndpointInterface{Address: addr.Address}}, &ep)
	if ep.Interface == nil || ep.Interface.MacAddress == "" {
		t.Fatalf("CreateEndpoint gave no MAC address: %+v", ep)
	}
	d.mac = ep.Interface.MacAddress
	var join network.JoinResponse
	call("NetworkDriver.Join", network.JoinRequest{NetworkID: netID, EndpointID: epID, SandboxKey: ctr.Path()}, &join)
	if join.Gateway != "" || join.DisableGatewayService || join.InterfaceName.DstPrefix != docker.DstPrefix {
		t.Fatalf("Join = %+v: want no gateway, the gateway service kept, DstPrefix %s", join, docker.DstPrefix)
	}
	d.srcName = join.InterfaceName.SrcName
	call("NetworkDriver.ProgramExternalConnectivity", network.ProgramExternalConnectivityRequest{NetworkID: netID, EndpointID: epID}, nil)

	// libnetwork's part.
	dst := docker.DstPrefix + "0"
	if _, err := h.Exec(ctx, "ip", "link", "set", d.srcName, "netns", ctr.NS.Name); err != nil {
		t.Fatal(err)
	}
	for _, argv := range [][]string{
		{"ip", "link", "set", d.srcName, "name", dst},
		{"ip", "link", "set", dst, "address", d.mac},
		{"ip", "addr", "add", d.addr, "dev", dst},
		{"ip", "link", "set", dst, "up"},
		{"ip", "link", "set", "lo", "up"},
	} {
		if _, err := ctr.Exec(ctx, argv...); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

// dockerRemove replays `docker rm -f` and `docker network rm`.
func dockerRemove(ctx context.Context, t *testing.T, pc *harness.PluginClient, d *dockerEndpoint) {
	t.Helper()
	ref := map[string]string{"NetworkID": d.netID, "EndpointID": d.epID}
	for _, c := range []struct {
		method string
		req    any
	}{
		{"NetworkDriver.RevokeExternalConnectivity", ref},
		{"NetworkDriver.Leave", ref},
		{"NetworkDriver.DeleteEndpoint", ref},
		{"IpamDriver.ReleaseAddress", ipam.ReleaseAddressRequest{PoolID: d.poolID, Address: d.addr}},
		// Repeated and out of order: Leave after DeleteEndpoint.
		{"NetworkDriver.Leave", ref},
		{"NetworkDriver.DeleteEndpoint", ref},
		{"NetworkDriver.DeleteNetwork", map[string]string{"NetworkID": d.netID}},
		{"IpamDriver.ReleaseAddress", ipam.ReleaseAddressRequest{PoolID: d.poolID, Address: d.gateway}},
		{"IpamDriver.ReleasePool", ipam.ReleasePoolRequest{PoolID: d.poolID}},
		{"IpamDriver.ReleasePool", ipam.ReleasePoolRequest{PoolID: d.poolID}},
	} {
		if err := pc.Call(ctx, c.method, c.req, nil); err != nil {
			t.Fatal(err)
		}
	}
}

// dockerOwned lists the addresses IPAM holds for Docker pools.
func dockerOwned(st api.IPAMStatus) []string {
	var out []string
	for _, a := range st.Allocations {
		if strings.HasPrefix(a.Owner, docker.OwnerPrefix) {
			out = append(out, a.Address)
		}
	}
	return out
}

// dockerAllocations lists the addresses IPAM holds for Docker pools on h.
func dockerAllocations(ctx context.Context, t *testing.T, h *harness.Host) []string {
	t.Helper()
	var st api.IPAMStatus
	if err := h.WeaveJSON(ctx, &st, "status", "ipam", "--json"); err != nil {
		t.Fatal(err)
	}
	return dockerOwned(st)
}

// TestDockerPluginReplay drives the plugin of two routers with dockerd's
// request sequence over their unix sockets, does libnetwork's part by
// hand, and has the two "containers" ping each other across the mesh; the
// address survives a router restart, and removal leaves no veth and no
// allocation behind.
func TestDockerPluginReplay(t *testing.T) {
	cl := newCluster(t, harness.Options{Hosts: 2})
	ctx := ctxFor(t, 3*time.Minute)
	for _, h := range cl.Hosts {
		if err := h.StartRouter(append([]string{"--plugin-socket", pluginSocket(cl, h)}, routerArgs(cl, h)...)...); err != nil {
			cl.LogRouters(t)
			t.Fatal(err)
		}
	}
	var eps []*dockerEndpoint
	var clients []*harness.PluginClient
	for i, h := range cl.Hosts {
		ctr, err := h.AddContainer(fmt.Sprintf("d%d", i+1))
		if err != nil {
			t.Fatal(err)
		}
		pc := harness.NewPluginClient(pluginSocket(cl, h))
		t.Cleanup(pc.Close)
		clients = append(clients, pc)
		netID := strings.Repeat(fmt.Sprintf("%x", 0xa0+i), 32)
		epID := strings.Repeat(fmt.Sprintf("%x", 0xe0+i), 32)
		eps = append(eps, dockerCreate(ctx, t, pc, h, ctr, netID, epID))
	}
	a, b := eps[0], eps[1]
	if a.addr == b.addr || a.subnet != b.subnet {
		t.Fatalf("addresses %s and %s, subnets %s and %s: want two addresses of one subnet", a.addr, b.addr, a.subnet, b.subnet)
	}
	mtu, err := a.ctr.LinkMTU(ctx, docker.DstPrefix+"0")
	if err != nil || mtu != 1376 {
		t.Fatalf("container interface MTU %d, %v; want the overlay MTU 1376", mtu, err)
	}
	pingEP := func(from, to *dockerEndpoint) {
		t.Helper()
		if err := ping(ctxFor(t, pingTimeout), from.ctr, strings.Split(to.addr, "/")[0]); err != nil {
			cl.LogRouters(t)
			t.Fatal(err)
		}
	}
	pingEP(a, b)
	pingEP(b, a)

	// Repeated calls: a second Join of a joined endpoint names the same
	// interface and leaves the container connected; an address IPAM holds
	// is refused to another pool, in the IPAM driver's Error field.
	var join network.JoinResponse
	if err := clients[0].Call(ctx, "NetworkDriver.Join", network.JoinRequest{NetworkID: a.netID, EndpointID: a.epID, SandboxKey: a.ctr.Path()}, &join); err != nil || join.InterfaceName.SrcName != a.srcName {
		t.Fatalf("second Join: %+v, %v; want SrcName %s again", join, err, a.srcName)
	}
	pingEP(a, b)
	var other ipam.RequestPoolResponse
	if err := clients[0].Call(ctx, "IpamDriver.RequestPool", ipam.RequestPoolRequest{}, &other); err != nil {
		t.Fatal(err)
	}
	err = clients[0].Call(ctx, "IpamDriver.RequestAddress", ipam.RequestAddressRequest{PoolID: other.PoolID, Address: strings.Split(a.addr, "/")[0]}, nil)
	if err == nil || !strings.Contains(err.Error(), "already allocated") || !strings.Contains(err.Error(), `"Error"`) {
		t.Fatalf("RequestAddress of %s, held by another pool: %v; want an Error saying it is allocated", a.addr, err)
	}
	if err := clients[0].Call(ctx, "IpamDriver.ReleasePool", ipam.ReleasePoolRequest{PoolID: other.PoolID}, nil); err != nil {
		t.Fatal(err)
	}

	// A router restart with the container running keeps its address and
	// its veth.
	held := dockerAllocations(ctx, t, cl.Host(1))
	if len(held) != 2 {
		t.Fatalf("IPAM holds %v for the Docker pool on host1; want the gateway's and the container's", held)
	}
	if err := cl.Host(1).Restart(); err != nil {
		cl.LogRouters(t)
		t.Fatal(err)
	}
	if got := dockerAllocations(ctx, t, cl.Host(1)); strings.Join(got, ",") != strings.Join(held, ",") {
		t.Fatalf("Docker allocations before the restart %v, after %v", held, got)
	}
	pingEP(b, a)

	for i, d := range eps {
		dockerRemove(ctx, t, clients[i], d)
		h := cl.Hosts[i]
		if out, _ := h.Exec(ctx, "ip", "-o", "link", "show"); strings.Contains(out, "vwd"+d.epID[:8]) {
			t.Errorf("%s: the endpoint's veth is left: %s", h.Name, out)
		}
		if got := dockerAllocations(ctx, t, h); len(got) != 0 {
			t.Errorf("%s: Docker allocations left after the network is removed: %v", h.Name, got)
		}
	}
	// Stopping the router removes its socket.
	if err := cl.Host(2).Stop(); err != nil {
		t.Fatal(err)
	}
	if m, _ := filepath.Glob(pluginSocket(cl, cl.Host(2))); len(m) != 0 {
		t.Errorf("the plugin socket is left after the router stopped: %v", m)
	}
}
