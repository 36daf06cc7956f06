package fastdp_test

import (
	"log/slog"
	"net/netip"

	"weavemesh.dev/weave/fastdp"
)

// How a router drives the package: make the device once the bridge
// exists, reconcile the table whenever what it knows changes, remove the
// device on stop.
func Example() {
	caps := fastdp.Probe()
	if !caps.VXLAN.Available {
		slog.Info("fastdp off", "component", "router", "why", caps.VXLAN.String())
		return
	}
	dev, err := fastdp.Ensure(fastdp.Options{
		Bridge:   "weave",
		MeshName: "weave",
		MTU:      1376,
	})
	if err != nil {
		slog.Warn("fastdp off", "component", "router", "err", err)
		return
	}
	defer dev.Remove()

	peer := netip.MustParseAddr("10.0.0.2")          // a fastdp peer's underlay address
	ctr := fastdp.MACFromUint64(0x02_00_0a_0b_0c_0d) // a container behind it
	if _, err := dev.Reconcile(fastdp.Desired{
		Flood:   []netip.Addr{peer},
		Unicast: map[fastdp.MAC]netip.Addr{ctr: peer},
	}); err != nil {
		slog.Warn("fastdp table", "component", "router", "err", err)
	}
}
