package router

import (
	"errors"
	"testing"

	"weavemesh.dev/weave/gossip"
	"weavemesh.dev/weave/sleeve/wire"
)

func TestParseProtocolRange(t *testing.T) {
	for _, tc := range []struct {
		in     string
		lo, hi uint8
		ok     bool
	}{
		{"", wire.Version, wire.Version, true},
		{"3..4", 3, 4, true},
		{"7..7", 7, 7, true},
		{"0..2", 0, 0, false},
		{"4..3", 0, 0, false},
		{"3", 0, 0, false},
		{"3..256", 0, 0, false},
		{"a..b", 0, 0, false},
	} {
		lo, hi, err := parseProtocolRange(tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("%q: err %v, want ok %v", tc.in, err, tc.ok)
			continue
		}
		if tc.ok && (lo != tc.lo || hi != tc.hi) {
			t.Errorf("%q: %d..%d, want %d..%d", tc.in, lo, hi, tc.lo, tc.hi)
		}
	}
}

func TestRefusalReason(t *testing.T) {
	for _, tc := range []struct {
		name   string
		m      gossip.Member
		refuse bool
	}{
		{"same", gossip.Member{ProtoMin: protoMin, ProtoMax: protoMax}, false},
		{"overlapping above", gossip.Member{ProtoMin: protoMax, ProtoMax: protoMax + 1}, false},
		{"above", gossip.Member{ProtoMin: protoMax + 1, ProtoMax: protoMax + 2}, true},
		{"below", gossip.Member{ProtoMin: 1, ProtoMax: protoMin - 1}, protoMin > 1},
		{"bad metadata", gossip.Member{MetaErr: errors.New("short")}, true},
	} {
		if got := refusalReason(tc.m) != ""; got != tc.refuse {
			t.Errorf("%s: refused %v (%q), want %v", tc.name, got, refusalReason(tc.m), tc.refuse)
		}
	}
}
