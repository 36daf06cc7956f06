package harness

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// cutTable is the nftables table in host a that drops traffic from host b.
// One table per peer, so Heal removes exactly one cut.
func cutTable(b *Host) string { return "wvcut_" + b.Name }

// Cut makes the underlay path between hosts a and b fail in both directions:
// each host drops, at input, every IPv4 packet from the other's underlay
// address (gossip and data-plane UDP and TCP, and ping). Drops are silent,
// like a broken path: senders see no error. Paths to other hosts are
// untouched. Cutting twice is harmless.
func (cl *Cluster) Cut(a, b *Host) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cutOne(ctx, a, b); err != nil {
		return err
	}
	if err := cutOne(ctx, b, a); err != nil {
		return err
	}
	cl.log.Info("underlay cut", "a", a.Name, "b", b.Name)
	return nil
}

// Heal removes the drop rules Cut installed between a and b.
func (cl *Cluster) Heal(a, b *Host) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := healOne(ctx, a, b); err != nil {
		return err
	}
	if err := healOne(ctx, b, a); err != nil {
		return err
	}
	cl.log.Info("underlay healed", "a", a.Name, "b", b.Name)
	return nil
}

func nft(ctx context.Context, h *Host, script string) error {
	if _, err := h.ExecInput(ctx, strings.NewReader(script), "nft", "-f", "-"); err != nil {
		return fmt.Errorf("%s: nft: %w", h.Name, err)
	}
	return nil
}

func cutOne(ctx context.Context, a, b *Host) error {
	t := cutTable(b)
	// Creating then deleting first makes the script idempotent (nft 1.0.6
	// has no "destroy").
	return nft(ctx, a, fmt.Sprintf(`table inet %[1]s {}
delete table inet %[1]s
table inet %[1]s {
	chain input {
		type filter hook input priority -10; policy accept;
		ip saddr %[2]s counter drop
	}
}
`, t, b.IP))
}

func healOne(ctx context.Context, a, b *Host) error {
	return nft(ctx, a, fmt.Sprintf("table inet %[1]s {}\ndelete table inet %[1]s\n", cutTable(b)))
}

// blockTable is the nftables table in a host that drops what comes from
// one address, for BlockFrom.
func blockTable(from netip.Addr) string {
	return "wvblock_" + strings.NewReplacer(".", "_", ":", "_").Replace(from.String())
}

// BlockFrom makes h drop, at input, every packet from the address: one
// direction of a cut. A capture on h's eth0 still sees the packets (packet
// sockets see frames before the firewall), so a test can record what the
// router never received.
func (h *Host) BlockFrom(ctx context.Context, from netip.Addr) error {
	return nft(ctx, h, fmt.Sprintf(`table inet %[1]s {}
delete table inet %[1]s
table inet %[1]s {
	chain input {
		type filter hook input priority -10; policy accept;
		ip saddr %[2]s counter drop
	}
}
`, blockTable(from), from))
}

// UnblockFrom removes what BlockFrom installed.
func (h *Host) UnblockFrom(ctx context.Context, from netip.Addr) error {
	return nft(ctx, h, fmt.Sprintf("table inet %[1]s {}\ndelete table inet %[1]s\n", blockTable(from)))
}
