package ipamfeature

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestOptionsDefaults(t *testing.T) {
	got, err := Options{}.withDefaults()
	if err != nil || got.Range != DefaultRange || got.DefaultSubnet != DefaultRange || got.ReclaimAfter != DefaultReclaimAfter {
		t.Errorf("defaults: %+v %v", got, err)
	}
	got, err = Options{Range: netip.MustParsePrefix("10.40.1.2/16"), DefaultSubnet: netip.MustParsePrefix("10.40.1.9/24"),
		ReclaimAfter: -1}.withDefaults()
	if err != nil || got.Range.String() != "10.40.0.0/16" || got.DefaultSubnet.String() != "10.40.1.0/24" || got.ReclaimAfter != -1 {
		t.Errorf("given: %+v %v", got, err)
	}
	for _, tt := range []struct {
		in   Options
		flag string
	}{
		{Options{Range: netip.MustParsePrefix("fd00::/64")}, "--ipalloc-range"},
		{Options{Range: netip.MustParsePrefix("10.0.0.0/31")}, "--ipalloc-range"},
		{Options{DefaultSubnet: netip.MustParsePrefix("192.168.0.0/24")}, "--ipalloc-default-subnet"},
		{Options{Init: "consensus=x"}, "consensus"},
	} {
		if _, err := New(tt.in); err == nil || !strings.Contains(err.Error(), tt.flag) {
			t.Errorf("%+v: %v, want an error naming %s", tt.in, err, tt.flag)
		}
	}
}

func TestSubnetOf(t *testing.T) {
	f, err := New(Options{Range: netip.MustParsePrefix("10.32.0.0/12"), DefaultSubnet: netip.MustParsePrefix("10.32.1.0/24"),
		ReclaimAfter: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		item  string
		want  string
		isNet bool
		bad   bool
	}{
		{item: "net:default", want: "10.32.1.0/24", isNet: true},
		{item: "net:10.33.4.7/24", want: "10.33.4.0/24", isNet: true},
		{item: "net:10.64.0.0/24", isNet: true, bad: true},
		{item: "net:10.0.0.0/8", isNet: true, bad: true},
		{item: "net:x", isNet: true, bad: true},
		{item: "10.32.0.5/12", want: "invalid Prefix"},
	} {
		p, isNet, err := f.subnetOf(tt.item)
		if isNet != tt.isNet || (err != nil) != tt.bad || (!tt.bad && p.String() != tt.want) {
			t.Errorf("%s: %v %v %v", tt.item, p, isNet, err)
		}
	}
}
