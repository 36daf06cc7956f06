package mix

import "testing"

// The first outputs of splitmix64 seeded with 0 and 1 (state advanced by
// the golden gamma, then finalised), as the reference implementation
// gives them.
func TestMix64(t *testing.T) {
	for _, tc := range []struct {
		in, want uint64
	}{
		{0, 0xe220a8397b1dcdaf},
		{1, 0x910a2dec89025cc1},
	} {
		if got := Mix64(tc.in); got != tc.want {
			t.Errorf("Mix64(%d) = %#x, want %#x", tc.in, got, tc.want)
		}
	}
}
