package harness

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// lossTable is the nftables table in the underlay namespace that drops a
// random share of the frames the bridge forwards between hosts.
const lossTable = "wvloss"

// SetLoss makes the underlay lossy: the bridge drops a random percent of the
// frames it forwards between hosts (an nftables "numgen random" rule in the
// bridge's forward hook; this kernel has no netem). percent 0 removes the
// rule. Traffic from and to the underlay namespace itself is untouched.
//
// So that a drop hits one wire packet, as on a real link, and not a 64 KiB
// offload super-frame, the first call also turns segmentation offloads
// (TSO, GSO, UDP GSO) off on every host's underlay veth and GRO off on the bridge
// ports. Those settings live in the cluster's namespaces and go with them.
func (cl *Cluster) SetLoss(percent int) error {
	if percent < 0 || percent > 100 {
		return fmt.Errorf("harness: loss %d%%: must be 0-100", percent)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.wireSizePackets(ctx); err != nil {
		return err
	}
	script := fmt.Sprintf("table bridge %[1]s {}\ndelete table bridge %[1]s\n", lossTable)
	if percent > 0 {
		script += fmt.Sprintf(`table bridge %[1]s {
	chain forward {
		type filter hook forward priority 0; policy accept;
		numgen random mod 100 < %[2]d counter drop
	}
}
`, lossTable, percent)
	}
	if _, err := cl.Underlay.ExecInput(ctx, strings.NewReader(script), "nft", "-f", "-"); err != nil {
		return fmt.Errorf("%s: nft: %w", cl.Underlay.Name, err)
	}
	cl.log.Info("underlay loss set", "percent", percent)
	return nil
}

// LossDrops returns how many frames the loss rule has dropped so far.
func (cl *Cluster) LossDrops(ctx context.Context) (int64, error) {
	out, err := cl.Underlay.Output(ctx, "nft", "list", "table", "bridge", lossTable)
	if err != nil {
		return 0, fmt.Errorf("%s: nft list: %w", cl.Underlay.Name, err)
	}
	var pkts, bytes int64
	for _, line := range strings.Split(out, "\n") {
		if _, err := fmt.Sscanf(strings.TrimSpace(line), "numgen random mod 100 < %d counter packets %d bytes %d drop", new(int), &pkts, &bytes); err == nil {
			return pkts, nil
		}
	}
	return 0, fmt.Errorf("%s: no loss rule counter in %q", cl.Underlay.Name, out)
}

// wireSizePackets turns off the offloads that would let one dropped frame
// stand for many wire packets. Idempotent.
func (cl *Cluster) wireSizePackets(ctx context.Context) error {
	for _, h := range cl.Hosts {
		if _, err := h.Exec(ctx, "ethtool", "-K", "eth0", "tso", "off", "gso", "off", "tx-udp-segmentation", "off"); err != nil {
			return fmt.Errorf("%s: offloads off: %w", h.Name, err)
		}
		if _, err := cl.Underlay.Exec(ctx, "ethtool", "-K", h.Name, "gro", "off"); err != nil {
			return fmt.Errorf("%s: GRO off on bridge port %s: %w", cl.Underlay.Name, h.Name, err)
		}
	}
	return nil
}
