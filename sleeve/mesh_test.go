package sleeve

import (
	"testing"

	"weavemesh.dev/weave/mesh/macs"
	"weavemesh.dev/weave/mesh/routes"
	"weavemesh.dev/weave/peer"
)

// tables is the Mesh the router passes in, over the real tables, for
// tests of the engine.
type tables struct {
	macs   *macs.Table
	routes *routes.Table
}

func (m tables) Learn(a MAC, owner peer.Name, now int64) { m.macs.Learn(macs.Addr(a), owner, now) }
func (m tables) Lookup(a MAC, now int64) (peer.Name, bool) {
	return m.macs.Lookup(macs.Addr(a), now)
}
func (m tables) Routes() Routes { return m.routes.Get() }

// MACFrom and Multicast must agree with mesh/macs, whose table the router
// puts behind Mesh.
func TestMACMatchesMeshMACs(t *testing.T) {
	for _, b := range [][]byte{
		{0, 0, 0, 0, 0, 0}, {0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, {0x02, 0x42, 0xac, 0x11, 0x00, 0x02},
		{0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb}, {0x33, 0x33, 0, 0, 0, 1},
	} {
		got, want := MACFrom(b), macs.AddrFrom(b)
		if uint64(got) != uint64(want) || got.Multicast() != want.Multicast() {
			t.Errorf("%x: MACFrom %x multicast %v; mesh/macs %x multicast %v", b, uint64(got), got.Multicast(), uint64(want), want.Multicast())
		}
	}
}
