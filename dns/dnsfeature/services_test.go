package dnsfeature

import (
	"errors"
	"net/netip"
	"reflect"
	"testing"
)

// A Docker container's name and aliases each answer with every address;
// invalid and repeated names are left out; no names removes them all.
func TestRegisterEndpointNames(t *testing.T) {
	f, _ := testFeature(t)
	a5, a6 := netip.MustParseAddr("10.32.1.5"), netip.MustParseAddr("fd00::5")
	for _, tc := range []struct {
		name  string
		names []string
		want  map[string][]netip.Addr
	}{
		{"name and aliases", []string{"web", "www", "Web", "api.prod"}, map[string][]netip.Addr{
			"web.weave.local.": {a5, a6}, "www.weave.local.": {a5, a6}, "api.prod.weave.local.": {a5, a6}}},
		{"an invalid alias is skipped", []string{"web", "bad name"}, map[string][]netip.Addr{
			"web.weave.local.": {a5, a6}, "www.weave.local.": nil, "api.prod.weave.local.": nil}},
		{"only invalid names", []string{"bad name"}, map[string][]netip.Addr{"web.weave.local.": nil}},
		{"none", nil, map[string][]netip.Addr{"web.weave.local.": nil}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := f.RegisterEndpointNames("ep1", tc.names, []netip.Addr{a5, a6}); err != nil {
				t.Fatal(err)
			}
			for name, want := range tc.want {
				if got := f.store.Lookup(name); !reflect.DeepEqual(got, want) {
					t.Errorf("%s: %v, want %v", name, got, want)
				}
			}
		})
	}
	off, err := New(Options{Off: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := off.RegisterEndpointNames("ep1", []string{"web"}, []netip.Addr{a5}); !errors.Is(err, ErrOff) {
		t.Errorf("with weaveDNS off: %v", err)
	}
}
