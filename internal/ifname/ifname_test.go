package ifname

import "testing"

func TestValid(t *testing.T) {
	for name, ok := range map[string]bool{
		"weave": true, "vwe01234567": true, "weave-vxlan": true, "a23456789012345": true,
		"": false, "a234567890123456": false, ".": false, "..": false, "a/b": false, "a:b": false, "a b": false,
	} {
		if err := Valid(name); (err == nil) != ok {
			t.Errorf("Valid(%q) = %v", name, err)
		}
	}
}
