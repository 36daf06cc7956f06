package router

import (
	"fmt"

	"weavemesh.dev/weave/fastdp"
)

// Datapath modes (--datapath).
const (
	// DatapathAuto uses the kernel VXLAN device with every peer whose
	// probes pass, the sleeve with the others; a kernel without VXLAN
	// leaves every pair on the sleeve.
	DatapathAuto = "auto"
	// DatapathFastdp is auto, except that the router refuses to start
	// when the VXLAN device cannot be made.
	DatapathFastdp = "fastdp"
	// DatapathSleeve makes no VXLAN device: every pair uses the sleeve.
	DatapathSleeve = "sleeve"
)

// fastdpDefaults validates and fills the kernel datapath's fields.
func (c *Config) fastdpDefaults() error {
	switch c.Datapath {
	case "":
		c.Datapath = DatapathAuto
	case DatapathAuto, DatapathFastdp, DatapathSleeve:
	default:
		return fmt.Errorf("--datapath %q: want auto, fastdp or sleeve", c.Datapath)
	}
	if c.FastdpPort == 0 {
		c.FastdpPort = fastdp.DefaultPort
	}
	if c.FastdpPort < 1 || c.FastdpPort > 65535 {
		return fmt.Errorf("--fastdp-port %d: must be 1-65535", c.FastdpPort)
	}
	if c.FastdpPort == c.Port || c.FastdpPort == c.DataPort {
		return fmt.Errorf("--fastdp-port %d: must differ from --port %d and --data-port %d", c.FastdpPort, c.Port, c.DataPort)
	}
	return nil
}
