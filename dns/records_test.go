package dns

import (
	"reflect"
	"testing"
)

// An endpoint known by several names answers each at every address, and
// setting its names again replaces exactly what changed.
func TestStoreEndpointNames(t *testing.T) {
	const alias = "www.weave.local."
	// One store through the cases: each starts from the last.
	s, err := NewStore(StoreOptions{Self: pA, Peers: func() []PeerStatus { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		names   []string
		addrs   []string
		wantErr bool
		want    map[string][]string // lookups after the call
	}{
		{"name and alias", []string{web, alias}, []string{"10.32.1.5", "fd00::5"}, false,
			map[string][]string{web: {"10.32.1.5", "fd00::5"}, alias: {"10.32.1.5", "fd00::5"}}},
		{"alias dropped", []string{web}, []string{"10.32.1.5"}, false,
			map[string][]string{web: {"10.32.1.5"}, alias: nil}},
		{"name replaced by an alias", []string{alias}, []string{"10.32.1.6"}, false,
			map[string][]string{web: nil, alias: {"10.32.1.6"}}},
		{"no names removes them", nil, []string{"10.32.1.6"}, false,
			map[string][]string{web: nil, alias: nil}},
		{"empty name refused", []string{web, ""}, []string{"10.32.1.5"}, true,
			map[string][]string{web: nil}},
		{"name not canonical refused", []string{web, "WWW.weave.local."}, []string{"10.32.1.5"}, true,
			map[string][]string{web: nil}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := s.SetEndpointNames("ep1", tc.names, addrs(tc.addrs...))
			if (err != nil) != tc.wantErr {
				t.Fatalf("SetEndpointNames: %v, want error %v", err, tc.wantErr)
			}
			for name, want := range tc.want {
				if got := lookup(s, name); !reflect.DeepEqual(got, want) {
					t.Errorf("lookup %s = %v, want %v", name, got, want)
				}
			}
		})
	}
}
