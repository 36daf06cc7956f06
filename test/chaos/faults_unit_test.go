package chaos

import (
	"slices"
	"testing"
)

// CHAOS_FAULTS names kinds by name, in any order, and an unknown name is
// an error that lists the real ones.
func TestSelectFaults(t *testing.T) {
	for _, tc := range []struct {
		list    string
		want    []string
		wantErr bool
	}{
		{"", faultNames(faults), false},
		{"kill", []string{"kill"}, false},
		{"full-disk, partition", []string{"full-disk", "partition"}, false},
		{"kill,nosuch", nil, true},
	} {
		got, err := selectFaults(tc.list)
		if (err != nil) != tc.wantErr {
			t.Errorf("selectFaults(%q): err %v, want error %v", tc.list, err, tc.wantErr)
			continue
		}
		if !tc.wantErr && !slices.Equal(faultNames(got), tc.want) {
			t.Errorf("selectFaults(%q) = %v, want %v", tc.list, faultNames(got), tc.want)
		}
	}
}
