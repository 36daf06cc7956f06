package peer

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseName(t *testing.T) {
	tests := []struct {
		in      string
		want    Name
		wantErr string
	}{
		{"aa:bb:cc:dd:ee:ff", 0xaabbccddeeff, ""},
		{"AA:0b:cc:dd:ee:01", 0xaa0bccddee01, ""},
		{"00:00:00:00:00:01", 1, ""},
		{"00:00:00:00:00:00", None, "reserved"},
		{"ff:ff:ff:ff:ff:ff", None, "reserved"},
		{"aa:bb:cc:dd:ee", None, "six hex bytes"},
		{"aa:bb:cc:dd:ee:f", None, "two hex digits"},
		{"aa:bb:cc:dd:ee:gg", None, "not a hex digit"},
		{"", None, "six hex bytes"},
	}
	for _, tt := range tests {
		got, err := ParseName(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseName(%q) err = %v, want %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseName(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
		if tt.want.String() != strings.ToLower(tt.in) {
			t.Errorf("String() = %q, want %q", tt.want.String(), strings.ToLower(tt.in))
		}
	}
}

func TestBytesRoundTrip(t *testing.T) {
	for i := 0; i < 100; i++ {
		n, err := Random()
		if err != nil {
			t.Fatal(err)
		}
		var b [6]byte
		n.PutBytes(b[:])
		if got := FromBytes(b[:]); got != n {
			t.Fatalf("round trip %v -> %v", n, got)
		}
		if b[0]&1 != 0 || b[0]&2 == 0 {
			t.Fatalf("random name %v: want unicast, locally administered", n)
		}
	}
}

func TestLoadOrCreate(t *testing.T) {
	dir := t.TempDir()
	a, err := LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := LoadOrCreate(dir)
	if err != nil || a != b {
		t.Fatalf("second load = %v, %v; want %v", b, err, a)
	}
	if err := os.WriteFile(filepath.Join(dir, NameFile), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreate(dir); err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Fatalf("corrupt file: err = %v", err)
	}
}

func FuzzParseName(f *testing.F) {
	f.Add("aa:bb:cc:dd:ee:ff")
	f.Add("::::::")
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseName(s)
		if err != nil {
			return
		}
		if m, err := ParseName(n.String()); err != nil || m != n {
			t.Fatalf("reparse %q -> %v, %v", n.String(), m, err)
		}
	})
}
