package meshkey

import (
	"os"
	"path/filepath"
	"testing"
)

func TestDerive(t *testing.T) {
	a, err := Derive([]byte("correct horse battery staple"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Derive([]byte("correct horse battery staple"))
	c, _ := Derive([]byte("correct horse battery stapl3"))
	if a != b {
		t.Fatal("not deterministic")
	}
	if a == c || a.Gossip == c.Gossip {
		t.Fatal("different passwords, same keys")
	}
	if a.Gossip == a.PSK {
		t.Fatal("gossip key equals psk")
	}
	if _, err := Derive(nil); err == nil {
		t.Fatal("empty password accepted")
	}
}

func TestWeak(t *testing.T) {
	for _, tt := range []struct {
		pw   string
		weak bool
	}{{"short", true}, {"elevenchars", true}, {"twelve chars", false}, {"ünïcödé-pässwörd", false}} {
		if got := Weak([]byte(tt.pw)) != ""; got != tt.weak {
			t.Errorf("Weak(%q) = %v", tt.pw, got)
		}
	}
}

func TestReadFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "pw")
	os.WriteFile(p, []byte("s3cret with spaces\n"), 0o600)
	if b, err := ReadFile(p); err != nil || string(b) != "s3cret with spaces" {
		t.Fatalf("%q %v", b, err)
	}
	os.WriteFile(p, []byte("\n"), 0o600)
	if _, err := ReadFile(p); err == nil {
		t.Fatal("empty file accepted")
	}
	if _, err := ReadFile(filepath.Join(dir, "none")); err == nil {
		t.Fatal("missing file accepted")
	}
}
