package router

import (
	"fmt"
	"net/netip"

	"weavemesh.dev/weave/netdev"
	"weavemesh.dev/weave/sleeve"
	"weavemesh.dev/weave/sleeve/conn"
	"weavemesh.dev/weave/sleeve/secure"
	"weavemesh.dev/weave/sleeve/tap"
)

// startDataPlane opens the bridge, the TAP device, the kernel datapath
// and the sleeve, appending what undoes each to cleanup.
func (r *Router) startDataPlane(sec *secure.Manager, cleanup *[]func()) error {
	cfg := r.cfg
	var err error
	if r.bridge, err = netdev.EnsureBridge(netdev.BridgeOptions{Name: BridgeName, MTU: cfg.MTU}); err != nil {
		return fmt.Errorf("set up bridge %s: %w", BridgeName, err)
	}
	*cleanup = append(*cleanup, func() { r.bridge.Close() })
	dev, err := tap.Open(tap.Options{Name: TAPName, MTU: cfg.MTU, Offload: true, Queues: cfg.SleevePipelines, Logger: r.log})
	if err != nil {
		return fmt.Errorf("open TAP %s: %w", TAPName, err)
	}
	if err := r.bridge.AddPort(TAPName); err != nil {
		dev.Close()
		return fmt.Errorf("attach %s to bridge: %w", TAPName, err)
	}
	if r.kdp, err = startKernelDP(cfg, BridgeName, r.name, r.poke, r.log); err != nil {
		dev.Close()
		return err
	}
	*cleanup = append(*cleanup, r.kdp.close)
	// One socket per TAP queue (fewer when the TAP has no offloads).
	taps := dev.Queues()
	udps, err := conn.ListenGroup(conn.Options{Addr: netip.AddrPortFrom(netip.IPv4Unspecified(), uint16(cfg.DataPort)), Logger: r.log}, len(taps))
	if err != nil {
		dev.Close()
		return fmt.Errorf("listen for sleeve traffic on udp port %d (is another router running? change it with --data-port): %w", cfg.DataPort, err)
	}
	taps = pairQueues(taps, len(udps))
	r.sleeve, err = sleeve.New(sleeve.Options{
		Self: r.name, Device: dev, Conn: udps[0], Queues: sleeveQueues(taps, udps), Mesh: meshView{r.macs, r.routes},
		OverlayMTU: cfg.MTU, OnLinkChange: r.poke, Secure: sec, Logger: r.log,
	})
	if err != nil {
		dev.Close()
		closeConns(udps)
		return err
	}
	r.sleeve.Start()
	*cleanup = append(*cleanup, func() { r.sleeve.Close() })
	r.dp = newSupervisor(datapathSleeve, r.sleeve, r.log)
	r.dp.start()
	*cleanup = append(*cleanup, r.dp.close)
	return nil
}

// runCleanup undoes, in reverse, what start-up did.
func runCleanup(cleanup []func()) {
	for i := len(cleanup) - 1; i >= 0; i-- {
		cleanup[i]()
	}
}
