package dns

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestNetnsName(t *testing.T) {
	tests := []struct {
		path, want string
	}{
		{"/var/run/netns/ns1", "ns1"},
		{"/run/netns/ns1", "ns1"},
		{"/var/run/netns/../netns/ns1", "ns1"},
		{"/proc/42/ns/net", ""},
		{"/var/run/netns", ""},
		{"/var/run/netns/a/b", ""},
	}
	for _, tt := range tests {
		got, ok := NetnsName(tt.path, DefaultNetnsDir)
		if got != tt.want || ok != (tt.want != "") {
			t.Errorf("NetnsName(%q) = %q, %v; want %q", tt.path, got, ok, tt.want)
		}
	}
}

func TestNetnsResolvConf(t *testing.T) {
	dir := t.TempDir()
	etc := filepath.Join(dir, "etc-netns")
	netnsDir := filepath.Join(dir, "netns")
	if err := os.MkdirAll(netnsDir, 0o755); err != nil {
		t.Fatal(err)
	}
	content := ContainerResolvConf("ns1", netip.MustParseAddr("127.0.0.153"), "weave.local.")
	if !strings.Contains(string(content), "nameserver 127.0.0.153\nsearch weave.local\n") {
		t.Errorf("content:\n%s", content)
	}
	if err := WriteNetnsResolvConf(etc, "ns1", content); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(etc, "ns1", "resolv.conf"))
	if err != nil || string(got) != string(content) {
		t.Fatalf("written: %q %v", got, err)
	}
	// Writing again is fine; a file written by someone else is left alone.
	if err := WriteNetnsResolvConf(etc, "ns1", content); err != nil {
		t.Error(err)
	}
	theirs := filepath.Join(etc, "ns2", "resolv.conf")
	if err := os.MkdirAll(filepath.Dir(theirs), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(theirs, []byte("nameserver 192.0.2.1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteNetnsResolvConf(etc, "ns2", content); !errors.Is(err, os.ErrExist) {
		t.Errorf("overwrote a foreign file: %v", err)
	}
	if err := RemoveNetnsResolvConf(etc, "ns2"); err != nil {
		t.Error(err)
	}
	if _, err := os.Stat(theirs); err != nil {
		t.Error("removed a foreign file")
	}
	if err := WriteNetnsResolvConf(etc, "../x", content); err == nil {
		t.Error("path in a namespace name accepted")
	}

	// ns1 has no namespace: a sweep removes its file and directory, and
	// leaves ns3 (which exists) and the foreign ns2 alone.
	if err := WriteNetnsResolvConf(etc, "ns3", content); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(netnsDir, "ns3"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	removed, err := SweepNetnsResolvConf(etc, netnsDir)
	if err != nil || !reflect.DeepEqual(removed, []string{"ns1"}) {
		t.Errorf("sweep removed %v, %v", removed, err)
	}
	if _, err := os.Stat(filepath.Join(etc, "ns1")); !errors.Is(err, os.ErrNotExist) {
		t.Error("ns1 directory left")
	}
	if err := RemoveNetnsResolvConf(etc, "ns3"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(etc, "ns3")); !errors.Is(err, os.ErrNotExist) {
		t.Error("ns3 directory left")
	}
	if err := RemoveNetnsResolvConf(etc, "ns9"); err != nil {
		t.Errorf("removing a missing file: %v", err)
	}
	if removed, err := SweepNetnsResolvConf(filepath.Join(dir, "none"), netnsDir); err != nil || removed != nil {
		t.Errorf("sweep of a missing dir: %v %v", removed, err)
	}
}
