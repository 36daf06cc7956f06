package dns

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"testing"
)

func TestParseDomain(t *testing.T) {
	tests := []struct {
		in, want, err string
	}{
		{"weave.local", "weave.local.", ""},
		{"Weave.Local.", "weave.local.", ""},
		{" example.org ", "example.org.", ""},
		{"", "", "empty"},
		{".", "", "empty"},
		{"a..b", "", "empty label"},
		{"a_b.local", "a_b.local.", ""},
		{"-a.local", "", "starts or ends with '-'"},
		{"a b.local", "", "has ' '"},
		{strings.Repeat("a", 64) + ".local", "", "longer than 63"},
	}
	for _, tt := range tests {
		got, err := ParseDomain(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseDomain(%q) = %q, %v; want error containing %q", tt.in, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseDomain(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestNormalize(t *testing.T) {
	tests := []struct {
		in, want, err string
	}{
		{"web", "web.weave.local.", ""},
		{"WEB", "web.weave.local.", ""},
		{"web.weave.local", "web.weave.local.", ""},
		{"web.weave.local.", "web.weave.local.", ""},
		{"web.prod", "web.prod.weave.local.", ""},
		{"my_db-1", "my_db-1.weave.local.", ""},
		{"weave.local", "", "the domain itself"},
		{"", "", "empty"},
		{"a..b", "", "empty label"},
		{"a/b", "", "has '/'"},
		{strings.Repeat("a.", 125) + "b", "", "longer than 253"},
	}
	for _, tt := range tests {
		got, err := Normalize(tt.in, DefaultDomain)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("Normalize(%q) = %q, %v; want error containing %q", tt.in, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("Normalize(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
		if !canonical(got) {
			t.Errorf("Normalize(%q) = %q is not canonical", tt.in, got)
		}
	}
}

func TestCanonical(t *testing.T) {
	for _, s := range []string{"a.", "web.weave.local.", "x-1.y_2."} {
		if !canonical(s) {
			t.Errorf("canonical(%q) = false", s)
		}
	}
	for _, s := range []string{"", ".", "a", "A.", "web.weave.local", "a..b.", "a b."} {
		if canonical(s) {
			t.Errorf("canonical(%q) = true", s)
		}
	}
}

func TestInDomain(t *testing.T) {
	tests := []struct {
		n    string
		want bool
	}{
		{"weave.local.", true},
		{"a.weave.local.", true},
		{"a.b.weave.local.", true},
		{"aweave.local.", false},
		{"local.", false},
		{"weave.local.com.", false},
	}
	for _, tt := range tests {
		if got := inDomain(tt.n, "weave.local."); got != tt.want {
			t.Errorf("inDomain(%q) = %v", tt.n, got)
		}
	}
}

func TestReverseAddr(t *testing.T) {
	tests := []struct {
		in   string
		want string // "" for no address
	}{
		{"5.1.32.10.in-addr.arpa.", "10.32.1.5"},
		{"0.0.0.0.in-addr.arpa.", "0.0.0.0"},
		{"255.255.255.255.in-addr.arpa.", "255.255.255.255"},
		{"1.32.10.in-addr.arpa.", ""},
		{"256.1.32.10.in-addr.arpa.", ""},
		{"01.1.32.10.in-addr.arpa.", ""},
		{"a.1.32.10.in-addr.arpa.", ""},
		{"1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.", "fd00::1"},
		{"b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.0.0.0.0.1.2.3.4.ip6.arpa.", "4321:0:1:2:3:4:567:89ab"},
		{"1.0.ip6.arpa.", ""},
		{"g.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.", ""},
		{"web.weave.local.", ""},
	}
	for _, tt := range tests {
		a, ok := reverseAddr(tt.in)
		if tt.want == "" {
			if ok {
				t.Errorf("reverseAddr(%q) = %v; want none", tt.in, a)
			}
			continue
		}
		if !ok || a != netip.MustParseAddr(tt.want) {
			t.Errorf("reverseAddr(%q) = %v, %v; want %s", tt.in, a, ok, tt.want)
		}
	}
}

// reverseAddrReference is the straightforward parser, over strings.Split
// and strconv, that reverseAddr must agree with.
func reverseAddrReference(n string) (netip.Addr, bool) {
	if !strings.HasSuffix(n, reverse4) {
		return netip.Addr{}, false
	}
	parts := strings.Split(strings.TrimSuffix(n, reverse4), ".")
	if len(parts) != 4 {
		return netip.Addr{}, false
	}
	var a [4]byte
	for i, p := range parts {
		v, err := strconv.ParseUint(p, 10, 8)
		if err != nil || (len(p) > 1 && p[0] == '0') {
			return netip.Addr{}, false
		}
		a[3-i] = byte(v)
	}
	return netip.AddrFrom4(a), true
}

func TestReverseAddrMatchesReference(t *testing.T) {
	labels := []string{"", "0", "00", "01", "1", "9", "10", "99", "100", "199", "200", "249", "250", "255", "256", "300", "999", "1000", "+1", "-1", "a", "1a", " 1"}
	for _, x := range labels {
		for _, y := range labels {
			for _, shape := range []string{"%s.%s.1.2", "1.%s.2.%s", "%s.%s.3", "%s.%s.3.4.5", "%s.%s"} {
				n := fmt.Sprintf(shape, x, y) + reverse4
				want, wok := reverseAddrReference(n)
				got, ok := reverseAddr(n)
				gotB, okB := reverseAddr([]byte(n))
				if ok != wok || got != want || okB != wok || gotB != want {
					t.Errorf("reverseAddr(%q) = %v %v (bytes %v %v); want %v %v", n, got, ok, gotB, okB, want, wok)
				}
			}
		}
	}
}

func TestReverseAddrAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	v4 := []byte("5.1.32.10.in-addr.arpa.")
	v6 := []byte("b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.0.0.0.0.1.2.3.4.ip6.arpa.")
	if n := testing.AllocsPerRun(100, func() { reverseAddr(v4); reverseAddr(v6) }); n > 0 {
		t.Errorf("%.1f allocations per parse", n)
	}
}

func TestParent(t *testing.T) {
	var got []string
	for p := parent("a.b.weave.local."); p != ""; p = parent(p) {
		got = append(got, p)
	}
	if strings.Join(got, " ") != "b.weave.local. weave.local. local." {
		t.Errorf("parents: %q", got)
	}
}
