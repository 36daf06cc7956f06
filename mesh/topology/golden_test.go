package topology

import (
	"path/filepath"
	"reflect"
	"testing"

	"weavemesh.dev/weave/internal/golden"
	"weavemesh.dev/weave/peer"
)

// TestWireGolden pins the messages of the "topology" gossip channel to
// fixed bytes in testdata/wire.golden; each vector must also merge into a
// fresh replica as the entry that encoded it.
func TestWireGolden(t *testing.T) {
	const a, b, c, d = peer.Name(0x0a0000000001), peer.Name(0x0a0000000002), peer.Name(0x0a0000000003), peer.Name(0x0a0000000004)
	withEntry := func(e Entry) *Topology {
		top := New(e.Peer, nil)
		top.entries[e.Peer] = &e
		return top
	}
	down := Entry{Peer: a, Version: 0x1122334455667788, Down: []peer.Name{b, c}}
	healthy := Entry{Peer: b, Version: 7}
	vectors := []struct {
		name  string
		bytes []byte
		full  bool // a full state rather than a delta
		want  Entry
	}{
		{"delta", withEntry(down).LocalDelta(), false, down},
		{"delta-healthy", withEntry(healthy).LocalDelta(), false, healthy},
		{"full-state", withEntry(down).FullState(), true, down},
	}
	var vs []golden.Vector
	for _, v := range vectors {
		vs = append(vs, golden.Vector{Name: v.name, Bytes: v.bytes})
	}
	path := filepath.Join("testdata", "wire.golden")
	golden.Check(t, path, "Messages of the \"topology\" gossip channel (docs/protocol.md).", vs)
	want := golden.Load(t, path)
	for _, v := range vectors {
		top := New(d, nil)
		var err error
		if v.full {
			err = top.MergeFull(want[v.name])
		} else {
			_, err = top.MergeDelta(want[v.name])
		}
		if got := top.entries[v.want.Peer]; err != nil || got == nil || !reflect.DeepEqual(*got, v.want) {
			t.Errorf("%s: golden bytes merge as %+v, %v; want %+v", v.name, got, err, v.want)
		}
	}
}
