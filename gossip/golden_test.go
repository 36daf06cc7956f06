package gossip

import (
	"path/filepath"
	"reflect"
	"testing"

	"weavemesh.dev/weave/internal/golden"
	"weavemesh.dev/weave/peer"
)

// TestWireGolden pins the framing of every message this package sends
// (deltas, unicasts, push-pull state, node metadata) to fixed bytes in
// testdata/wire.golden; each vector must also decode to what encoded it.
func TestWireGolden(t *testing.T) {
	const from = peer.Name(0x0a0b0c0d0e0f)
	m1 := meta{protoMin: 1, protoMax: 2, dataPort: 6784, nickname: "host-a", version: "1.0.0"}
	m2 := meta{leaving: true, protoMin: 1, protoMax: 1, dataPort: 6784}
	m3 := meta{protoMin: 2, protoMax: 2, dataPort: 6784, nickname: "host-b", version: "1.1.0",
		fastdp: Fastdp{MAC: [6]byte{0x0e, 0x01, 0x02, 0x03, 0x04, 0x05}, Port: 6786, VNI: 5561878}}
	pp := []stateEntry{{channel: []byte("topology"), state: []byte{1, 0}}, {channel: []byte("dns"), state: []byte{}}}
	frameOf := func(b []byte) (any, error) {
		f, err := decodeFrame(b)
		return f, err
	}
	vectors := []struct {
		name   string
		bytes  []byte
		decode func([]byte) (any, error)
		want   any
	}{
		{"delta", appendDelta(nil, "dns", from, 0x0102030405060708, "k1", []byte("payload")), frameOf,
			frame{kind: kindDelta, channel: []byte("dns"), from: from, seq: 0x0102030405060708, key: []byte("k1"), payload: []byte("payload")}},
		{"delta-no-key", appendDelta(nil, "topology", from, 1, "", []byte{0}), frameOf,
			frame{kind: kindDelta, channel: []byte("topology"), from: from, seq: 1, key: []byte{}, payload: []byte{0}}},
		{"unicast", appendUnicast(nil, "ipam", from, []byte("hello")), frameOf,
			frame{kind: kindUnicast, channel: []byte("ipam"), from: from, payload: []byte("hello")}},
		{"push-pull", appendPushPull(nil, pp), func(b []byte) (any, error) { return decodePushPull(b) }, pp},
		{"meta", appendMeta(nil, m1), func(b []byte) (any, error) { return decodeMeta(b) }, m1},
		{"meta-leaving", appendMeta(nil, m2), func(b []byte) (any, error) { return decodeMeta(b) }, m2},
		{"meta-fastdp", appendMeta(nil, m3), func(b []byte) (any, error) { return decodeMeta(b) }, m3},
	}
	var vs []golden.Vector
	for _, v := range vectors {
		vs = append(vs, golden.Vector{Name: v.name, Bytes: v.bytes})
	}
	path := filepath.Join("testdata", "wire.golden")
	golden.Check(t, path, "Gossip framing (docs/protocol.md): deltas, unicasts, push-pull state,\nnode metadata.", vs)
	want := golden.Load(t, path)
	for _, v := range vectors {
		got, err := v.decode(want[v.name])
		if err != nil || !reflect.DeepEqual(got, v.want) {
			t.Errorf("%s: golden bytes decode to %+v, %v; want %+v", v.name, got, err, v.want)
		}
	}
}
