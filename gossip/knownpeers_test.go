package gossip

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestNormalizeAddr(t *testing.T) {
	tests := []struct {
		in, want string
		wantErr  string
	}{
		{in: "10.0.0.1", want: "10.0.0.1:6783"},
		{in: "10.0.0.1:7000", want: "10.0.0.1:7000"},
		{in: "::1", want: "[::1]:6783"},
		{in: "[::1]", want: "[::1]:6783"},
		{in: "[::1]:7000", want: "[::1]:7000"},
		{in: "[::ffff:10.0.0.1]:7000", want: "10.0.0.1:7000"},
		{in: "Host.Example", want: "host.example:6783"},
		{in: "host.example:1", want: "host.example:1"},
		{in: "", wantErr: "empty"},
		{in: ":7000", wantErr: "empty host"},
		{in: "h:0", wantErr: "port"},
		{in: "h:70000", wantErr: "port"},
		{in: "h:x", wantErr: "port"},
		{in: "name/10.0.0.1", wantErr: "host or host:port"},
		{in: "a b", wantErr: "host or host:port"},
		{in: "[fe80::1%eth0]:1", wantErr: "zoned"},
		{in: "[#", wantErr: "neither"},
		{in: "-h:1", wantErr: "neither"},
		{in: "[::0x", wantErr: "neither"},
	}
	for _, tt := range tests {
		got, err := normalizeAddr(tt.in, 6783)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%q: error %v, want one containing %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%q: got %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestKnownPeersPersist(t *testing.T) {
	dir := t.TempDir()
	k := newKnownPeers(dir, time.Hour, 6783)
	now := time.Now().Truncate(time.Second)
	k.name([]string{"10.0.0.1:6783", "host.example:6783"})
	k.learn("10.0.0.2:6783", now)
	k.learn("10.0.0.1:6783", now) // named and learned
	if err := k.save(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, KnownPeersFile))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), "10.0.0.2:6783 learned ") {
		t.Fatalf("file lacks the learned peer:\n%s", data)
	}
	st, _ := os.Stat(filepath.Join(dir, KnownPeersFile))
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("file mode %v, want 0600", st.Mode().Perm())
	}

	k2 := newKnownPeers(dir, time.Hour, 6783)
	if warnings, err := k2.load(); err != nil || len(warnings) > 0 {
		t.Fatalf("load: %v %v", warnings, err)
	}
	want := []string{"10.0.0.1:6783", "10.0.0.2:6783", "host.example:6783"}
	if got := k2.list(); !slices.Equal(got, want) {
		t.Fatalf("reloaded %v, want %v", got, want)
	}
	if e := k2.entries["10.0.0.1:6783"]; !e.named || !e.lastSeen.Equal(now) {
		t.Fatalf("entry lost named or last-seen: %+v", e)
	}

	// Learned addresses expire; named ones never do.
	k2.expire(now.Add(2 * time.Hour))
	want = []string{"10.0.0.1:6783", "host.example:6783"}
	if got := k2.list(); !slices.Equal(got, want) {
		t.Fatalf("after expiry %v, want %v", got, want)
	}

	// Forgotten addresses are not learned again until named.
	k2.forget([]string{"10.0.0.1:6783"})
	k2.learn("10.0.0.1:6783", now)
	if k2.has("10.0.0.1:6783") {
		t.Fatal("forgotten address was learned again")
	}
	k2.name([]string{"10.0.0.1:6783"})
	if !k2.has("10.0.0.1:6783") {
		t.Fatal("named address not remembered")
	}
}

func TestKnownPeersBadLines(t *testing.T) {
	in := "# comment\n\n10.0.0.1\n10.0.0.2:1 learned yesterday\nbad:port:x\n10.0.0.3:1 what\n10.0.0.4:2 learned 2025-01-02T03:04:05Z\n"
	entries, warnings := parseKnownPeers([]byte(in), 6783)
	if len(warnings) != 3 {
		t.Fatalf("warnings %v, want 3", warnings)
	}
	if e := entries["10.0.0.1:6783"]; len(entries) != 2 || e == nil || !e.named {
		t.Fatalf("entries %v lack the named peer with the default port", entries)
	}
	if e := entries["10.0.0.4:2"]; e == nil || e.named || e.lastSeen.IsZero() {
		t.Fatalf("entries %v lack the learned peer", entries)
	}
}

func TestKnownPeersBackoff(t *testing.T) {
	k := newKnownPeers(t.TempDir(), time.Hour, 6783)
	k.name([]string{"10.0.0.1:1"})
	now := time.Now()
	iv := 10 * time.Second
	wantDelays := []time.Duration{5 * time.Second, 15 * time.Second, 35 * time.Second, 75 * time.Second, 75 * time.Second}
	for i, want := range wantDelays {
		k.result("10.0.0.1:1", false, now, iv)
		if got := k.entries["10.0.0.1:1"].nextTry.Sub(now); got != want {
			t.Fatalf("failure %d: next try in %v, want %v", i+1, got, want)
		}
	}
	if len(k.due(now)) != 0 {
		t.Fatal("address due during backoff")
	}
	k.result("10.0.0.1:1", true, now, iv)
	if len(k.due(now)) != 1 {
		t.Fatal("address not due after success")
	}
}

func FuzzParseKnownPeers(f *testing.F) {
	f.Add([]byte("10.0.0.1:6783\n10.0.0.2:6783 learned 2025-01-02T03:04:05Z\n"))
	f.Add([]byte("# x\n[::1]:1\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		entries, _ := parseKnownPeers(b, 6783)
		again, warnings := parseKnownPeers(formatKnownPeers(entries), 6783)
		if len(warnings) > 0 || len(again) != len(entries) {
			t.Fatalf("re-parse: %d entries, warnings %v; want %d", len(again), warnings, len(entries))
		}
	})
}
