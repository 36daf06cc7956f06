package fastdp

import (
	"strings"
	"testing"
)

// The VNI is part of the contract between peers: these values must never
// change (they are SHA-256("weave fastdp vni\x00"+name)[:3], checked
// independently).
func TestVNIForIsStable(t *testing.T) {
	for name, want := range map[string]uint32{
		"weave": 5561878,
		"other": 15461791,
	} {
		if got := VNIFor(name); got != want {
			t.Errorf("VNIFor(%q) = %d, want %d", name, got, want)
		}
	}
	if VNIFor("a") == VNIFor("b") {
		t.Error("different meshes share a VNI")
	}
	for _, n := range []string{"", "x", "weave", strings.Repeat("m", 300)} {
		if v := VNIFor(n); v == 0 || v > MaxVNI {
			t.Errorf("VNIFor(%q) = %d, outside 1..%d", n, v, MaxVNI)
		}
	}
}

func TestOptionsValidate(t *testing.T) {
	ok := Options{Bridge: "weave", MeshName: "weave", MTU: 1376}
	for _, tc := range []struct {
		name  string
		edit  func(*Options)
		field string // "" means valid
	}{
		{"defaults", func(*Options) {}, ""},
		{"no bridge", func(o *Options) { o.Bridge = "" }, "Options.Bridge is required"},
		{"bad bridge name", func(o *Options) { o.Bridge = "a/b" }, "Options.Bridge"},
		{"long name", func(o *Options) { o.Name = "a-very-long-interface" }, "Options.Name"},
		{"name is bridge", func(o *Options) { o.Name = "weave" }, "Options.Name and Options.Bridge"},
		{"no mesh name", func(o *Options) { o.MeshName = " " }, "Options.MeshName"},
		{"no MTU", func(o *Options) { o.MTU = 0 }, "Options.MTU is required"},
		{"small MTU", func(o *Options) { o.MTU = 60 }, "Options.MTU 60"},
		{"big MTU", func(o *Options) { o.MTU = 70000 }, "Options.MTU 70000"},
		{"bad port", func(o *Options) { o.Port = 70000 }, "Options.Port"},
		{"negative port", func(o *Options) { o.Port = -1 }, "Options.Port"},
		{"IPv6 local", func(o *Options) { o.Local = ip("fd00::1") }, "Options.Local"},
		{"multicast local", func(o *Options) { o.Local = ip("224.0.0.1") }, "Options.Local"},
		{"mapped local", func(o *Options) { o.Local = ip("::ffff:10.0.0.1") }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := ok
			tc.edit(&o)
			err := o.validate()
			switch {
			case tc.field == "" && err != nil:
				t.Fatalf("validate: %v", err)
			case tc.field == "":
				if o.Name != DefaultName || o.Port != DefaultPort || o.Logger == nil || (o.Local.IsValid() && !o.Local.Is4()) {
					t.Errorf("defaults not applied: %+v", o)
				}
			case err == nil || !strings.Contains(err.Error(), tc.field):
				t.Fatalf("validate = %v, want an error naming %q", err, tc.field)
			}
		})
	}
}

func TestDefaultPortIsClearOfTheOtherPorts(t *testing.T) {
	for _, p := range []int{6783, 6784, 4789} {
		if DefaultPort == p {
			t.Errorf("DefaultPort %d collides with %d", DefaultPort, p)
		}
	}
	if MaxMTUFor(1500) != 1450 {
		t.Errorf("MaxMTUFor(1500) = %d, want 1450", MaxMTUFor(1500))
	}
}
