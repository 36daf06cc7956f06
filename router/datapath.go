package router

import (
	"weavemesh.dev/weave/mesh/macs"
	"weavemesh.dev/weave/mesh/routes"
	"weavemesh.dev/weave/peer"
	"weavemesh.dev/weave/sleeve"
)

// meshView is the mesh as the sleeve engine sees it (sleeve.Mesh): the
// router's MAC table and routes. Conversions between sleeve.MAC and
// macs.Addr are free: both pack the address into the low 48 bits.
type meshView struct {
	macs   *macs.Table
	routes *routes.Table
}

func (m meshView) Learn(a sleeve.MAC, owner peer.Name, now int64) {
	m.macs.Learn(macs.Addr(a), owner, now)
}

func (m meshView) Lookup(a sleeve.MAC, now int64) (peer.Name, bool) {
	return m.macs.Lookup(macs.Addr(a), now)
}

func (m meshView) Routes() sleeve.Routes { return m.routes.Get() }
