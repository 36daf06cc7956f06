package dns

import (
	"bytes"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"weavemesh.dev/weave/peer"
)

var (
	pA = peer.Name(0x0a0000000001)
	pB = peer.Name(0x0a0000000002)
	pC = peer.Name(0x0a0000000003)
)

func rec(name, addr, ep string, version uint64, deleted bool) wireRecord {
	return wireRecord{key: recKey{name: name, addr: netip.MustParseAddr(addr), endpoint: ep}, version: version, deleted: deleted}
}

func TestWireRoundTrip(t *testing.T) {
	r1 := rec("web.weave.local.", "10.32.1.5", "0123456789abcdef", 42, false)
	r2 := rec("db.weave.local.", "fd00::5", "", 43, true)

	owner, got, err := decodeDelta(encodeDelta(pA, r1))
	if err != nil || owner != pA || got != r1 {
		t.Errorf("delta: %v %+v %v", owner, got, err)
	}

	ds := []digest{{owner: pA, floor: 1, hash: 2}, {owner: pB, floor: 0, hash: 99}}
	sender, gotDs, err := decodeDigests(encodeDigests(pC, ds))
	if err != nil || sender != pC || !reflect.DeepEqual(gotDs, ds) {
		t.Errorf("digests: %v %+v %v", sender, gotDs, err)
	}
	if _, gotDs, err := decodeDigests(encodeDigests(pC, nil)); err != nil || len(gotDs) != 0 {
		t.Errorf("empty digests: %+v %v", gotDs, err)
	}

	owners, err := decodePull(encodePull([]peer.Name{pA, pB}))
	if err != nil || !reflect.DeepEqual(owners, []peer.Name{pA, pB}) {
		t.Errorf("pull: %v %v", owners, err)
	}

	ss := []snapshot{{owner: pA, floor: 7, recs: []wireRecord{r1, r2}}, {owner: pB, recs: []wireRecord{}}}
	gotSs, err := decodeSnapshots(encodeSnapshots(ss))
	if err != nil || !reflect.DeepEqual(gotSs, ss) {
		t.Errorf("snapshots: %+v %v", gotSs, err)
	}
}

func TestWireErrors(t *testing.T) {
	good := encodeDelta(pA, rec("web.weave.local.", "10.32.1.5", "ep", 1, false))
	mutate := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	tests := []struct {
		name string
		b    []byte
		err  string
	}{
		{"empty", nil, "truncated"},
		{"format", mutate(func(b []byte) []byte { b[0] = 9; return b }), "format 9"},
		{"kind", mutate(func(b []byte) []byte { b[1] = kindPull; return b }), "kind 3"},
		{"none peer", mutate(func(b []byte) []byte { copy(b[2:8], make([]byte, 6)); return b }), "not a peer name"},
		{"truncated", good[:len(good)-1], "truncated"},
		{"trailing", append(bytes.Clone(good), 0), "after the message"},
		{"flags", mutate(func(b []byte) []byte { b[16] = 0x80; return b }), "flags"},
		{"upper case name", bytes.Replace(good, []byte("web"), []byte("WEB"), 1), "not a canonical"},
		{"version 0", mutate(func(b []byte) []byte { copy(b[8:16], make([]byte, 8)); return b }), "version 0"},
	}
	for _, tt := range tests {
		_, _, err := decodeDelta(tt.b)
		if err == nil || !strings.Contains(err.Error(), tt.err) {
			t.Errorf("%s: err %v, want %q", tt.name, err, tt.err)
		}
	}
	// A count larger than the bytes that follow cannot hold is refused
	// before anything is allocated.
	b := appendHeader(nil, kindPull)
	b = append(b, 0xff, 0xff, 0xff, 0xff, 0x0f)
	if _, err := decodePull(b); err == nil || !strings.Contains(err.Error(), "does not fit") {
		t.Errorf("huge count: %v", err)
	}
	if _, err := decodeSnapshots(append(appendHeader(nil, kindSnapshot), 0xff, 0x01)); err == nil {
		t.Error("snapshot with huge count decoded")
	}
	// An endpoint id with a control character.
	bad := encodeDelta(pA, rec("web.weave.local.", "10.32.1.5", "e\x01", 1, false))
	if _, _, err := decodeDelta(bad); err == nil || !strings.Contains(err.Error(), "printable") {
		t.Errorf("control character in endpoint: %v", err)
	}
	// An address of 5 bytes.
	odd := encodeDelta(pA, rec("web.weave.local.", "10.32.1.5", "", 1, false))
	odd = append(odd[:len(odd)-6], 5, 1, 2, 3, 4, 5, 0)
	if _, _, err := decodeDelta(odd); err == nil || !strings.Contains(err.Error(), "address of 5 bytes") {
		t.Errorf("5-byte address: %v", err)
	}
}

// FuzzDecode feeds arbitrary bytes to every decoder of gossiped DNS
// records: none may panic, and whatever decodes must encode back to bytes
// that decode to the same value.
func FuzzDecode(f *testing.F) {
	r1 := rec("web.weave.local.", "10.32.1.5", "0123456789abcdef", 42, false)
	r2 := rec("db.weave.local.", "fd00::5", "", 43, true)
	f.Add(encodeDelta(pA, r1))
	f.Add(encodeDigests(pC, []digest{{owner: pA, floor: 1, hash: 2}}))
	f.Add(encodePull([]peer.Name{pA, pB}))
	f.Add(encodeSnapshots([]snapshot{{owner: pA, floor: 7, recs: []wireRecord{r1, r2}}}))
	f.Add([]byte{1})
	f.Add([]byte{1, 4, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		if owner, r, err := decodeDelta(b); err == nil {
			o2, r2, err := decodeDelta(encodeDelta(owner, r))
			if err != nil || o2 != owner || r2 != r {
				t.Fatalf("delta does not round-trip: %v", err)
			}
		}
		if sender, ds, err := decodeDigests(b); err == nil {
			s2, ds2, err := decodeDigests(encodeDigests(sender, ds))
			if err != nil || s2 != sender || !reflect.DeepEqual(ds, ds2) {
				t.Fatalf("digests do not round-trip: %v", err)
			}
		}
		if owners, err := decodePull(b); err == nil {
			o2, err := decodePull(encodePull(owners))
			if err != nil || !reflect.DeepEqual(owners, o2) {
				t.Fatalf("pull does not round-trip: %v", err)
			}
		}
		if ss, err := decodeSnapshots(b); err == nil {
			ss2, err := decodeSnapshots(encodeSnapshots(ss))
			if err != nil || !reflect.DeepEqual(ss, ss2) {
				t.Fatalf("snapshots do not round-trip: %v", err)
			}
		}
		// The Store takes the same bytes from peers without panicking.
		s, err := NewStore(StoreOptions{Self: pA, Peers: func() []PeerStatus { return nil }})
		if err != nil {
			t.Fatal(err)
		}
		_, _ = s.MergeDelta(b)
		_ = s.MergeFull(b)
		s.HandleMessage(pB, b)
	})
}
