package fastdp

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"

	"weavemesh.dev/weave/internal/ifname"
)

// Defaults and limits of Options.
const (
	// DefaultName is the VXLAN device's name unless Options.Name says
	// otherwise. It is fixed, not derived from the port, so that a leftover
	// of a router that ran with another port is found (and replaced) too.
	DefaultName = "weave-vxlan"
	// DefaultPort is the UDP port of the VXLAN datapath: clear of gossip
	// (6783/tcp+udp), the sleeve (6784/udp), the HTTP API (127.0.0.1:6784/tcp)
	// and Weave Net's metrics (6781, 6782), and not the IANA VXLAN port 4789,
	// which other overlays on the same host commonly hold.
	DefaultPort = 6786
	// Overhead is what VXLAN over IPv4 adds to every frame the bridge hands
	// the device: outer IPv4 (20) + UDP (8) + VXLAN (8) + the inner
	// Ethernet header (14). A device of MTU m needs an underlay path MTU of
	// at least m+Overhead.
	Overhead = 50
	// MinMTU and MaxMTU bound Options.MTU: the IPv4 minimum and the largest
	// value the kernel accepts on an unbound VXLAN device.
	MinMTU = 68
	MaxMTU = 65535
	// MaxVNI is the largest 24-bit VXLAN network identifier.
	MaxVNI = 1<<24 - 1
)

// ownerAlias marks a device as made by this package. It is written as the
// device's alias (IFLA_IFALIAS, `ip link show` prints it) when the device
// is created, and Ensure and RemoveLeftover touch no device without it.
const ownerAlias = "weave fastdp"

// Options configures Ensure. Fields marked required have no default.
type Options struct {
	// Name of the VXLAN device. Optional: DefaultName.
	Name string
	// Bridge is the name of the bridge the device becomes a port of
	// (the router's "weave" bridge). Required; it must already exist.
	Bridge string
	// MeshName is the mesh's name; the VNI is VNIFor(MeshName), so every
	// peer of one mesh agrees on it without gossip. Required.
	MeshName string
	// Port is the UDP port the device receives on and sends to
	// (--fastdp-port). Optional: DefaultPort. The caller keeps it apart
	// from its own gossip and sleeve ports.
	Port int
	// MTU of the device: the overlay MTU, the same as the bridge's.
	// Required. The underlay path must carry MTU+Overhead bytes.
	MTU int
	// Local is the source address of encapsulated packets. Optional: the
	// zero Addr lets the kernel choose by route for each destination.
	// IPv4 only, like the underlay.
	Local netip.Addr
	// TxChecksumOff turns the device's tx-checksum-ip-generic feature off
	// (ethtool -K DEV tx-checksum-ip-generic off), the workaround for
	// kernels whose VXLAN transmit path leaves checksums of offloaded
	// packets wrong. Optional: false keeps the kernel's default (on).
	TxChecksumOff bool
	// NoPortIsolation leaves the device's bridge port un-isolated.
	// Optional: by default the port is isolated (IFLA_BRPORT_ISOLATED), so
	// that, with the sleeve TAP isolated too, the bridge never forwards a
	// frame between VXLAN and the sleeve; see the package documentation.
	NoPortIsolation bool
	// Logger receives a line when a leftover device is adopted or
	// replaced. Optional: nil discards.
	Logger *slog.Logger
}

func (o *Options) validate() error {
	if o.Name == "" {
		o.Name = DefaultName
	}
	if err := validIfName(o.Name); err != nil {
		return fmt.Errorf("fastdp: Options.Name: %w", err)
	}
	if o.Bridge == "" {
		return errors.New(`fastdp: Options.Bridge is required (the name of the overlay bridge, e.g. "weave")`)
	}
	if err := validIfName(o.Bridge); err != nil {
		return fmt.Errorf("fastdp: Options.Bridge: %w", err)
	}
	if o.Bridge == o.Name {
		return fmt.Errorf("fastdp: Options.Name and Options.Bridge are both %q; the device cannot be its own bridge", o.Name)
	}
	if strings.TrimSpace(o.MeshName) == "" {
		return errors.New("fastdp: Options.MeshName is required (the VNI is derived from it)")
	}
	if o.Port == 0 {
		o.Port = DefaultPort
	}
	if o.Port < 1 || o.Port > 65535 {
		return fmt.Errorf("fastdp: Options.Port %d is outside 1..65535", o.Port)
	}
	if o.MTU == 0 {
		return errors.New("fastdp: Options.MTU is required (the overlay MTU, e.g. 1376)")
	}
	if o.MTU < MinMTU || o.MTU > MaxMTU {
		return fmt.Errorf("fastdp: Options.MTU %d is outside %d..%d", o.MTU, MinMTU, MaxMTU)
	}
	if o.Local.IsValid() {
		a := o.Local
		switch {
		case !a.Unmap().Is4():
			return fmt.Errorf("fastdp: Options.Local %s: the underlay is IPv4; give an IPv4 address or none", a)
		case a.Unmap().IsUnspecified() || a.Unmap().IsMulticast() || a.Unmap().IsLoopback():
			return fmt.Errorf("fastdp: Options.Local %s is not a unicast address of this host", a)
		}
		o.Local = a.Unmap()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	o.Logger = o.Logger.With("component", "fastdp")
	return nil
}

// VNIFor derives the VXLAN network identifier from the mesh name: the first
// 24 bits (big-endian) of SHA-256("weave fastdp vni\x00" + meshName), with 0
// mapped to 1. Every peer computes the same value, and meshes of different
// names that share an underlay and a port keep their frames apart. (That is
// separation, not security: a VNI is 24 bits in clear text.) The derivation
// is part of the wire contract between peers; changing it splits a mesh
// whose peers run different versions.
func VNIFor(meshName string) uint32 {
	sum := sha256.Sum256([]byte("weave fastdp vni\x00" + meshName))
	v := binary.BigEndian.Uint32(sum[:4]) >> 8
	if v == 0 {
		v = 1
	}
	return v
}

// MaxMTUFor returns the largest device MTU an underlay path of pathMTU
// bytes carries without fragmenting the outer packets.
func MaxMTUFor(pathMTU int) int { return pathMTU - Overhead }

// validIfName checks an interface name (internal/ifname).
func validIfName(name string) error { return ifname.Valid(name) }
