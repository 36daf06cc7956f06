package dns

import (
	"encoding/binary"
	"path/filepath"
	"reflect"
	"testing"

	"weavemesh.dev/weave/internal/golden"
	"weavemesh.dev/weave/peer"
)

// TestWireGolden pins every message of the "dns" gossip channel, and the
// record hash that digests compare across peers, to fixed bytes in
// testdata/wire.golden; each vector must also decode to what encoded it.
func TestWireGolden(t *testing.T) {
	r1 := rec("web.weave.local.", "10.32.1.5", "0123456789abcdef", 0x1122334455667788, false)
	r2 := rec("db.prod.weave.local.", "fd00::5", "", 43, true)
	ds := []digest{{owner: pA, floor: 1, hash: 0xfeedface}, {owner: pB, floor: 0, hash: 99}}
	ss := []snapshot{{owner: pA, floor: 7, recs: []wireRecord{r1, r2}}, {owner: pB, recs: []wireRecord{}}}
	hash := func(k recKey, e entry) []byte { return binary.BigEndian.AppendUint64(nil, recordHash(k, e)) }

	vectors := []struct {
		name   string
		bytes  []byte
		decode func(b []byte) (any, error)
		want   any
	}{
		{"delta", encodeDelta(pA, r1), func(b []byte) (any, error) {
			o, r, err := decodeDelta(b)
			return []any{o, r}, err
		}, []any{pA, r1}},
		{"delta-deleted-v6", encodeDelta(pB, r2), func(b []byte) (any, error) {
			o, r, err := decodeDelta(b)
			return []any{o, r}, err
		}, []any{pB, r2}},
		{"digests", encodeDigests(pC, ds), func(b []byte) (any, error) {
			s, d, err := decodeDigests(b)
			return []any{s, d}, err
		}, []any{pC, ds}},
		{"pull", encodePull([]peer.Name{pA, pB}), func(b []byte) (any, error) { return decodePull(b) }, []peer.Name{pA, pB}},
		{"snapshots", encodeSnapshots(ss), func(b []byte) (any, error) { return decodeSnapshots(b) }, ss},
		{"record-hash-live", hash(r1.key, entry{version: r1.version}), nil, nil},
		{"record-hash-deleted", hash(r2.key, entry{version: r2.version, deleted: true}), nil, nil},
		{"broadcast-key", []byte(broadcastKey(r1.key)), nil, nil},
	}
	var vs []golden.Vector
	for _, v := range vectors {
		vs = append(vs, golden.Vector{Name: v.name, Bytes: v.bytes})
	}
	path := filepath.Join("testdata", "wire.golden")
	golden.Check(t, path, "Messages of the \"dns\" gossip channel (docs/dns.md), and the record\nhash every peer must compute alike.", vs)
	want := golden.Load(t, path)
	for _, v := range vectors {
		if v.decode == nil {
			continue
		}
		got, err := v.decode(want[v.name])
		if err != nil || !reflect.DeepEqual(got, v.want) {
			t.Errorf("%s: golden bytes decode to %+v, %v; want %+v", v.name, got, err, v.want)
		}
	}
}
