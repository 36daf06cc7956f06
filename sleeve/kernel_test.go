package sleeve

import (
	"testing"
	"time"

	"weavemesh.dev/weave/mesh/macs"
	"weavemesh.dev/weave/peer"
)

// With A and B on the kernel datapath, and C on the sleeve with both: a
// broadcast from A reaches C over the sleeve and is not delivered to B's
// TAP (B's kernel had its copy), though B learns A's address; B's unicast
// to that address is not sent by the sleeve at all; C's traffic is as
// before.
func TestKernelPeers(t *testing.T) {
	m := newTestMesh(t, 3, false)
	m.waitFor("links up", m.allUp)
	a, b, c := m.nodes[0], m.nodes[1], m.nodes[2]
	a.e.SetKernelPeers(namesOf(b))
	b.e.SetKernelPeers(namesOf(a))

	a.dev.In <- ethFrame(bcast, mac(1), 0x0806, []byte("who-has from A"))
	expectFrame(t, c.dev, "broadcast on the sleeve", hasPayload([]byte("who-has from A")))
	noFrame(t, b.dev, "broadcast the kernel carried", 200*time.Millisecond, hasPayload([]byte("who-has from A")))
	if owner, ok := b.macs.Lookup(macs.AddrFrom(mac(1)), m.clock.Now().Unix()); !ok || owner != a.name {
		t.Fatalf("B learned mac 1 -> %v %v; want A", owner, ok)
	}

	b.dev.In <- ethFrame(mac(1), mac(2), 0x0800, []byte("unicast B to A"))
	noFrame(t, a.dev, "unicast the kernel carries", 200*time.Millisecond, hasPayload([]byte("unicast B to A")))

	c.dev.In <- ethFrame(bcast, mac(3), 0x0806, []byte("who-has from C"))
	for _, nd := range []*testNode{a, b} {
		expectFrame(t, nd.dev, "broadcast from a sleeve peer", hasPayload([]byte("who-has from C")))
	}
	c.dev.In <- ethFrame(mac(1), mac(3), 0x0800, []byte("unicast C to A"))
	expectFrame(t, a.dev, "unicast on the sleeve", hasPayload([]byte("unicast C to A")))

	// Back on the sleeve: B gets A's broadcasts again.
	a.e.SetKernelPeers(nil)
	b.e.SetKernelPeers(nil)
	a.dev.In <- ethFrame(bcast, mac(1), 0x0806, []byte("again from A"))
	expectFrame(t, b.dev, "broadcast after leaving the kernel datapath", hasPayload([]byte("again from A")))
}

func namesOf(nodes ...*testNode) []peer.Name {
	var out []peer.Name
	for _, nd := range nodes {
		out = append(out, nd.name)
	}
	return out
}
