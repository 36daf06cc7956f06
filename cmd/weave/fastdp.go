package main

import (
	"fmt"
	"io"
	"strconv"

	"github.com/spf13/pflag"

	"weavemesh.dev/weave/api"
	"weavemesh.dev/weave/fastdp"
	"weavemesh.dev/weave/router"
)

// fastdpFlags are the kernel datapath flags of weave router and weave
// launch (docs/fastdp.md).
type fastdpFlags struct {
	datapath     string
	port         int
	noTxChecksum bool
}

func (f *fastdpFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.datapath, "datapath", router.DatapathAuto,
		"datapath between hosts: auto (the kernel's VXLAN with every peer whose probes pass, the sleeve with the others), "+
			"fastdp (as auto, but fail to start without VXLAN) or sleeve (no VXLAN device)")
	fs.IntVar(&f.port, "fastdp-port", fastdp.DefaultPort, "UDP port of the kernel VXLAN datapath; must differ from --port and --data-port")
	fs.BoolVar(&f.noTxChecksum, "fastdp-no-tx-checksum", false,
		"turn tx-checksum-ip-generic off on the VXLAN device: the workaround for kernels that send wrong checksums "+
			"through VXLAN (TCP over the overlay stalls while ping works)")
}

func (f *fastdpFlags) apply(cfg *router.Config) error {
	switch f.datapath {
	case router.DatapathAuto, router.DatapathFastdp, router.DatapathSleeve:
	default:
		return fmt.Errorf("--datapath %q: want auto, fastdp or sleeve", f.datapath)
	}
	if f.port < 1 || f.port > 65535 {
		return fmt.Errorf("--fastdp-port %d: must be 1-65535", f.port)
	}
	dataPort := cfg.DataPort
	if dataPort == 0 {
		dataPort = cfg.Port + 1
	}
	if f.port == cfg.Port || f.port == dataPort {
		return fmt.Errorf("--fastdp-port %d: must differ from --port %d and --data-port %d", f.port, cfg.Port, dataPort)
	}
	// Defaults stay zero in the configuration; the router fills them in.
	if f.datapath != router.DatapathAuto {
		cfg.Datapath = f.datapath
	}
	if f.port != fastdp.DefaultPort {
		cfg.FastdpPort = f.port
	}
	cfg.FastdpNoTxChecksum = f.noTxChecksum
	return nil
}

// fastdpArgs are the kernel datapath flags of the background router.
func fastdpArgs(cfg router.Config) []string {
	var out []string
	if cfg.Datapath != "" {
		out = append(out, "--datapath="+cfg.Datapath)
	}
	if cfg.FastdpPort != 0 {
		out = append(out, "--fastdp-port="+strconv.Itoa(cfg.FastdpPort))
	}
	if cfg.FastdpNoTxChecksum {
		out = append(out, "--fastdp-no-tx-checksum")
	}
	return out
}

// removeFastdpLeftover deletes the VXLAN device a router that is no longer
// running left behind (it was killed), for weave stop.
func removeFastdpLeftover(w io.Writer) {
	gone, err := fastdp.RemoveLeftover("")
	switch {
	case err != nil:
		fmt.Fprintf(w, "weave: cannot remove the VXLAN device left by an earlier router: %v\n", err)
	case gone:
		fmt.Fprintf(w, "weave: removed the VXLAN device %s left by an earlier router\n", fastdp.DefaultName)
	}
}

// formatFastdp prints the kernel datapath lines of weave status; nothing
// for a router that does not report them.
func formatFastdp(w io.Writer, st *api.FastdpStatus) {
	if st == nil {
		return
	}
	if st.Device != "" {
		cs := "on"
		if !st.TxChecksum {
			cs = "off"
		}
		fmt.Fprintf(w, "Fastdp: %s (udp %d, VNI %d, tx-checksum %s), --datapath %s, %d entries, %d sent, %d received\n",
			st.Device, st.Port, st.VNI, cs, st.Mode, st.Entries, st.TxPackets, st.RxPackets)
		if st.Reason != "" {
			fmt.Fprintf(w, "Fastdp problem: %s\n", st.Reason)
		}
	} else {
		fmt.Fprintf(w, "Fastdp: off (%s), --datapath %s\n", dash(st.Reason), st.Mode)
	}
	fmt.Fprintf(w, "VXLAN: %s\n", dash(st.VXLAN))
	fmt.Fprintf(w, "ESP: %s\n", dash(st.ESP))
}
