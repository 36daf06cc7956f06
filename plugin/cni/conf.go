package cni

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"

	"weavemesh.dev/weave/api"
)

// DefaultDataDir is where the plugin remembers attachments for GC.
const DefaultDataDir = "/var/lib/cni/weave-net"

// NetConf is a weave-net network configuration.
//
//	{"cniVersion": "1.1.0", "name": "weave", "type": "weave-net",
//	 "api": "127.0.0.1:6784", "subnet": "10.32.4.0/24"}
type NetConf struct {
	types.PluginConf
	// API is the local router's HTTP API; api.DefaultAddr when empty.
	API string `json:"api,omitempty"`
	// Subnet, inside the router's allocation range, is where addresses
	// come from; the router's default subnet when empty. Ignored when
	// ipam names a plugin.
	Subnet string `json:"subnet,omitempty"`
	// DataDir keeps one small file per attachment, for DEL without a
	// namespace and for GC; DefaultDataDir when empty.
	DataDir string `json:"dataDir,omitempty"`
	// DefaultRoute gives the host an address in the subnet (weave expose)
	// and the container a default route through it: what Kubernetes pods
	// need to reach the node, services and the outside. Ignored when ipam
	// names a plugin (its routes are used).
	DefaultRoute bool `json:"defaultRoute,omitempty"`
	// NoDNSName leaves the pod or container name (K8S_POD_NAME) out of
	// weaveDNS.
	NoDNSName bool `json:"noDNSName,omitempty"`
}

// parseConf reads and checks a configuration; withPrev also parses
// prevResult (for CHECK).
func parseConf(data []byte, withPrev bool) (*NetConf, error) {
	c := &NetConf{}
	if err := json.Unmarshal(data, c); err != nil {
		return nil, types.NewError(types.ErrDecodingFailure, "weave-net: cannot read the network configuration", err.Error())
	}
	if c.API == "" {
		c.API = api.DefaultAddr
	}
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir
	}
	if c.Subnet != "" {
		p, err := netip.ParsePrefix(c.Subnet)
		if err != nil || !p.Addr().Is4() {
			return nil, types.NewError(types.ErrInvalidNetworkConfig, fmt.Sprintf("weave-net: subnet %q: want an IPv4 CIDR such as 10.32.4.0/24", c.Subnet), "")
		}
		c.Subnet = p.Masked().String()
	}
	if withPrev && c.RawPrevResult != nil {
		if err := version.ParsePrevResult(&c.PluginConf); err != nil {
			return nil, types.NewError(types.ErrDecodingFailure, "weave-net: cannot read prevResult", err.Error())
		}
	}
	return c, nil
}

// cniArg returns key's value from CNI_ARGS ("K=V;K=V").
func cniArg(args, key string) string {
	for _, kv := range strings.Split(args, ";") {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			return v
		}
	}
	return ""
}
