// Command weave-net is weave's CNI plugin: runtimes (Kubernetes, Podman,
// containerd) exec it with a network configuration of "type": "weave-net"
// to attach containers to the local weave router. See docs/kubernetes.md.
package main

import (
	"github.com/containernetworking/cni/pkg/skel"

	"weavemesh.dev/weave/plugin/cni"
)

func main() {
	skel.PluginMainFuncs(cni.Funcs(), cni.Versions, "weave-net: attaches containers to the weave overlay through the local router")
}
