package router

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"weavemesh.dev/weave/api"
	"weavemesh.dev/weave/fastdp"
	"weavemesh.dev/weave/gossip"
	"weavemesh.dev/weave/mesh/macs"
	"weavemesh.dev/weave/peer"
	"weavemesh.dev/weave/sleeve"
)

// kernelDP is the router's side of the kernel datapath: what the kernel
// can do, the VXLAN device when there is one, and (fastdp_pairs.go) the
// datapath chosen for each pair. Without a device (--datapath sleeve, or a
// kernel without VXLAN in auto) it only reports why.
type kernelDP struct {
	mode   string
	caps   fastdp.Capabilities
	dev    *fastdp.Device // nil: every pair on the sleeve
	reason string         // why dev is nil
	log    *slog.Logger

	pairs *pairs // nil without dev (fastdp_pairs.go)
}

// startKernelDP probes the kernel and, unless the mode is sleeve, makes
// (or adopts, after a crash) the VXLAN device on the bridge and isolates
// the sleeve's TAP port, so the bridge never forwards between the tunnel
// and the sleeve (docs/fastdp.md, "Broadcast in mixed meshes"). In mode
// fastdp a device that cannot be made is an error; in auto the router
// carries on with the sleeve alone.
//
// self and poke are for the probes: this router's name, and how to wake
// its loop when a reply changes a pair's datapath.
func startKernelDP(cfg Config, bridge string, self peer.Name, poke func(), log *slog.Logger) (*kernelDP, error) {
	k := &kernelDP{mode: cfg.Datapath, caps: fastdp.Probe(), log: log.With("component", "fastdp")}
	k.log.Info("kernel capabilities", "vxlan", k.caps.VXLAN.String(), "esp", k.caps.ESP.String())
	if cfg.Datapath == DatapathSleeve {
		k.reason = "--datapath sleeve"
		// A device left by an earlier run with fastdp would still
		// catch frames; it goes.
		if gone, err := fastdp.RemoveLeftover(""); err != nil {
			k.log.Warn("cannot remove the VXLAN device of an earlier run", "err", err)
		} else if gone {
			k.log.Info("removed the VXLAN device of an earlier run", "device", fastdp.DefaultName)
		}
		k.unisolateTAP()
		return k, nil
	}
	var err error
	if !k.caps.VXLAN.Available {
		err = fmt.Errorf("the kernel cannot make VXLAN devices: %s", k.caps.VXLAN.Reason)
	} else {
		k.dev, err = fastdp.Ensure(fastdp.Options{
			Bridge: bridge, MeshName: cfg.MeshName, Port: cfg.FastdpPort, MTU: cfg.MTU,
			TxChecksumOff: cfg.FastdpNoTxChecksum, Logger: log,
		})
	}
	if err != nil {
		if cfg.Datapath == DatapathFastdp {
			return nil, fmt.Errorf("--datapath fastdp: %w (use --datapath auto to fall back to the sleeve, or free the port with --fastdp-port)", err)
		}
		k.reason = err.Error()
		k.log.Warn("no kernel datapath; every pair uses the sleeve", "err", err)
		k.unisolateTAP()
		return k, nil
	}
	if err := setPortIsolated(TAPName, true); err != nil {
		k.dev.Remove()
		return nil, err
	}
	// An adopted device (the last run was killed) keeps its entries until
	// the first reconcile: none are wanted until peers are known.
	if ch, err := k.dev.Reconcile(fastdp.Desired{}); err != nil {
		k.log.Warn("cannot clear the forwarding table of an earlier run; retrying with the next change", "err", err)
	} else if !ch.Empty() {
		k.log.Info("cleared the forwarding table of an earlier run", "changes", ch.String())
	}
	if err := k.startPairs(self, poke); err != nil {
		k.dev.Remove()
		return nil, err
	}
	k.log.Info("kernel datapath ready", "device", k.dev.Name(), "port", k.dev.Port(), "vni", k.dev.VNI(),
		"mac", k.dev.MAC().String(), "mtu", k.dev.MTU())
	return k, nil
}

// unisolateTAP undoes the isolation an earlier run with a device set
// (the TAP may outlive the router). Without a VXLAN port nothing depends
// on it, so a kernel without port isolation is no reason to fail.
func (k *kernelDP) unisolateTAP() {
	if err := setPortIsolated(TAPName, false); err != nil {
		k.log.Debug("cannot clear the TAP's bridge port isolation", "err", err)
	}
}

// close removes the device and so every forwarding entry the router made.
func (k *kernelDP) close() {
	if k == nil || k.dev == nil {
		return
	}
	k.pairs.close()
	if err := k.dev.Remove(); err != nil {
		k.log.Warn("cannot remove the VXLAN device", "device", k.dev.Name(), "err", err)
		return
	}
	k.log.Info("removed the VXLAN device", "device", k.dev.Name())
}

// refresh brings the pairs' datapaths up to date (see pairs.refresh); a
// router without the device has nothing to do.
func (k *kernelDP) refresh(alive map[peer.Name]gossip.Member, sl *sleeve.Engine, mt *macs.Table, mtu int) {
	if k == nil || k.pairs == nil {
		return
	}
	k.pairs.refresh(alive, sl, mt, mtu, time.Now())
}

// forgetOnPort deletes what the bridge learned about macs on port ifname.
// When a pair moves to fastdp the bridge would otherwise keep sending the
// peer's MACs to the TAP, where the sleeve no longer carries them, until a
// frame from each arrived through the tunnel.
func forgetOnPort(ifname string, macs []fastdp.MAC) error {
	l, err := netlink.LinkByName(ifname)
	if err != nil {
		return fmt.Errorf("look up %s: %w", ifname, err)
	}
	var errs []error
	for _, m := range macs {
		err := netlink.NeighDel(&netlink.Neigh{
			LinkIndex: l.Attrs().Index, Family: unix.AF_BRIDGE, Flags: netlink.NTF_MASTER, HardwareAddr: m.HardwareAddr(),
		})
		if err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("%s: %w", m, err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("forget learned MACs on %s: %w", ifname, errors.Join(errs...))
	}
	return nil
}

// setPortIsolated sets the bridge port flag that keeps isolated ports from
// exchanging frames.
func setPortIsolated(ifname string, on bool) error {
	l, err := netlink.LinkByName(ifname)
	if err != nil {
		return fmt.Errorf("look up %s to set its bridge port isolation: %w", ifname, err)
	}
	if err := netlink.LinkSetIsolated(l, on); err != nil {
		return fmt.Errorf("set bridge port isolation of %s %s (kernel 4.18 or later needed): %w", ifname, onOff(on), err)
	}
	return nil
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// status is the kernel datapath part of `weave status`.
func (k *kernelDP) status() *api.FastdpStatus {
	if k == nil {
		return nil
	}
	st := &api.FastdpStatus{Mode: k.mode, VXLAN: k.caps.VXLAN.String(), ESP: k.caps.ESP.String(), Reason: k.reason}
	if k.dev == nil {
		return st
	}
	st.Device, st.Port, st.VNI, st.MAC = k.dev.Name(), k.dev.Port(), k.dev.VNI(), k.dev.MAC().String()
	var errs []error
	on, err := k.dev.TxChecksum()
	errs = append(errs, err)
	st.TxChecksum = on
	c, err := k.dev.Counters()
	errs = append(errs, err)
	st.TxPackets, st.RxPackets = c.TxPackets, c.RxPackets
	st.TxBytes, st.RxBytes = c.TxBytes, c.RxBytes
	es, err := k.dev.Entries()
	errs = append(errs, err)
	st.Entries = len(es)
	if err := errors.Join(errs...); err != nil {
		st.Reason = "reading the device: " + err.Error()
	}
	return st
}
