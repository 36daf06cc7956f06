package golden

import (
	"os"
	"path/filepath"
	"testing"
)

func TestLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.golden")
	if err := os.WriteFile(path, []byte("# comment\n\nping 0102ff\nempty \n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got := Load(t, path)
	if len(got) != 2 || string(got["ping"]) != "\x01\x02\xff" || len(got["empty"]) != 0 {
		t.Fatalf("loaded %q", got)
	}
}

func TestWriteThenCheck(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "x.golden")
	vs := []Vector{{"a", []byte{1, 2}}, {"b", nil}}
	write(t, path, "two vectors\nfor a test", vs)
	Check(t, path, "", vs)
	if got := Load(t, path); len(got) != 2 || string(got["a"]) != "\x01\x02" {
		t.Fatalf("round trip %q", got)
	}
}
