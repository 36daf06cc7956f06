package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"weavemesh.dev/weave/test/harness"
)

// Scenario is one row of the table: a way of connecting a client namespace
// on host1 to a server namespace on host2. Each runs on a fresh two-host
// cluster.
type Scenario struct {
	Key   string // for --only
	Title string
	Setup func(ctx context.Context, cl *harness.Cluster) (*Endpoints, error)
}

// Endpoints is what a scenario's setup hands to the measurements.
type Endpoints struct {
	Client, Server *harness.NS
	ServerIP       string
	Routers        []int           // pids whose CPU time and peak RSS count as "router"
	Hosts          []*harness.Host // hosts whose routers' sleeve counters are read
	RecvHost       *harness.NS     // where UDP receive errors are read (the server's host)
}

// ContainerMTU is the overlay MTU weave gives containers; the hand-made
// VXLAN row uses it too so the two compare like for like.
const ContainerMTU = 1376

// scenarios is the table, in order. The "vxlan" row is the reference the
// ratios are taken against.
var scenarios = []Scenario{
	{Key: underlayKey, Title: "bare underlay", Setup: setupUnderlay},
	{Key: "vxlan", Title: "kernel VXLAN", Setup: setupVXLAN},
	// weave with its default flags uses the kernel's VXLAN between two
	// hosts that reach each other (fastdp); the target is 0.95x the
	// hand-made VXLAN row.
	{Key: "fastdp", Title: "weave fastdp", Setup: weaveSetup("fastdp")},
	{Key: "sleeve", Title: "weave sleeve", Setup: weaveSetup("sleeve")},
	// One pipeline each way, as before the TAP had queues: what the
	// pipelines per CPU gain.
	{Key: "sleeve-1p", Title: "weave sleeve, 1 pipeline", Setup: weaveSetup("sleeve", "--sleeve-pipelines=1")},
	// The password is a benchmark fixture, not a secret.
	{Key: "sleeve-enc", Title: "weave sleeve, encrypted", Setup: weaveSetup("sleeve", "--password=bench-mesh-password")},
	// The other cipher, forced: --sleeve-cipher auto picks AES-256-GCM on
	// CPUs with AES instructions.
	{Key: "sleeve-chacha", Title: "weave sleeve, encrypted, ChaCha20-Poly1305", Setup: weaveSetup("sleeve",
		"--password=bench-mesh-password", "--sleeve-cipher=chacha20-poly1305")},
}

// referenceKey names the scenario the throughput ratios are relative to;
// underlayKey the one RTTs are compared with.
const (
	referenceKey = "vxlan"
	underlayKey  = "underlay"
)

// setupUnderlay measures the host namespaces themselves over the underlay.
func setupUnderlay(_ context.Context, cl *harness.Cluster) (*Endpoints, error) {
	h1, h2 := cl.Host(1), cl.Host(2)
	return &Endpoints{Client: h1.NS, Server: h2.NS, ServerIP: h2.IP.String(), RecvHost: h2.NS}, nil
}

// setupVXLAN builds by hand what an overlay does in the kernel: in each host
// a vxlan device (VNI 42, port 4789, unicast to the other host) on a bridge,
// and a container namespace on the bridge through a veth.
func setupVXLAN(ctx context.Context, cl *harness.Cluster) (*Endpoints, error) {
	var ctrs []*harness.Container
	for i, h := range cl.Hosts[:2] {
		other := cl.Hosts[1-i]
		c, err := h.AddContainer(fmt.Sprintf("vx%d", i+1))
		if err != nil {
			return nil, err
		}
		mtu := fmt.Sprint(ContainerMTU)
		for _, argv := range [][]string{
			{"ip", "link", "add", "vxlan0", "type", "vxlan", "id", "42", "dstport", "4789",
				"local", h.IP.String(), "remote", other.IP.String(), "dev", "eth0"},
			{"ip", "link", "add", "br0", "type", "bridge"},
			{"ip", "link", "set", "vxlan0", "master", "br0", "up"},
			{"ip", "link", "add", "vc0", "mtu", mtu, "type", "veth", "peer", "name", "ethwe", "mtu", mtu, "netns", c.NS.Name},
			{"ip", "link", "set", "vc0", "master", "br0", "up"},
			{"ip", "link", "set", "br0", "up"},
		} {
			if _, err := h.Exec(ctx, argv...); err != nil {
				return nil, err
			}
		}
		addr := netip.AddrFrom4([4]byte{10, 40, 0, byte(i + 1)})
		for _, argv := range [][]string{
			{"ip", "addr", "add", addr.String() + "/24", "dev", "ethwe"},
			{"ip", "link", "set", "ethwe", "up"},
		} {
			if _, err := c.Exec(ctx, argv...); err != nil {
				return nil, err
			}
		}
		ctrs = append(ctrs, c)
	}
	return &Endpoints{Client: ctrs[0].NS, Server: ctrs[1].NS, ServerIP: "10.40.0.2", RecvHost: cl.Host(2).NS}, nil
}

// weaveSetup returns a setup that starts a weave router on each host (host2
// joins host1) with --datapath datapath and routerArgs, attaches one
// container per host with `weave attach`, and waits until host1's
// connection to host2 is established on that datapath.
func weaveSetup(datapath string, routerArgs ...string) func(context.Context, *harness.Cluster) (*Endpoints, error) {
	routerArgs = append([]string{"--datapath=" + datapath}, routerArgs...)
	return func(ctx context.Context, cl *harness.Cluster) (*Endpoints, error) {
		h1, h2 := cl.Host(1), cl.Host(2)
		if err := h1.StartRouterCtx(ctx, routerArgs...); err != nil {
			return nil, err
		}
		if err := h2.StartRouterCtx(ctx, append(append([]string(nil), routerArgs...), h1.IP.String())...); err != nil {
			return nil, err
		}
		c1, err := h1.AddContainer("c1")
		if err != nil {
			return nil, err
		}
		c2, err := h2.AddContainer("c2")
		if err != nil {
			return nil, err
		}
		if err := c1.Attach("10.32.1.1/12"); err != nil {
			return nil, err
		}
		if err := c2.Attach("10.32.2.1/12"); err != nil {
			return nil, err
		}
		err = harness.Poll(ctx, "host1 -> host2 connection established", func(context.Context) error {
			c, err := h1.ConnectionTo(h2)
			if err != nil {
				return err
			}
			if c.State != "established" || c.Datapath != datapath {
				return fmt.Errorf("state %q on %s (%s)", c.State, c.Datapath, c.DatapathReason)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		pids := []int{h1.RouterPID(), h2.RouterPID()}
		if pids[0] == 0 || pids[1] == 0 {
			return nil, errors.New("router pid unknown")
		}
		return &Endpoints{Client: c1.NS, Server: c2.NS, ServerIP: c2.IP(), Routers: pids, Hosts: []*harness.Host{h1, h2}, RecvHost: h2.NS}, nil
	}
}
