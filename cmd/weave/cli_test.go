package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"weavemesh.dev/weave/api"
)

// TestCLI runs each verb in process against an API server over a fake
// backend.
func TestCLI(t *testing.T) {
	f := &fakeBackend{status: goldenStatus, peers: goldenPeers, conns: goldenConns, endpoints: goldenEndpoints}
	addr := startAPI(t, f)
	var jsonPeers, jsonConns, jsonEndpoints, jsonStatus strings.Builder
	for _, x := range []struct {
		b *strings.Builder
		v any
	}{{&jsonPeers, goldenPeers}, {&jsonConns, goldenConns}, {&jsonEndpoints, goldenEndpoints}, {&jsonStatus, goldenStatus}} {
		if err := writeJSON(x.b, x.v); err != nil {
			t.Fatal(err)
		}
	}

	tests := []struct {
		name   string
		args   []string
		code   int
		stdout string // exact, unless "" and code != 0
		stderr string // substring
	}{
		{name: "status", args: []string{"status"}, stdout: `Version: dev (protocol 1..1)
Name: aa:bb:cc:dd:ee:ff (host1)
Encryption: disabled
Peers: 3
Connections: 2 (2 established, 0 relayed, 0 connecting, 0 failed)
Datapath: sleeve 2
Overlay MTU: 1376
`},
		{name: "status json", args: []string{"status", "--json"}, stdout: jsonStatus.String()},
		{name: "status peers", args: []string{"status", "peers"}, stdout: func() string {
			var b strings.Builder
			formatPeers(&b, goldenPeers, testNow)
			return b.String()
		}()},
		{name: "status peers json", args: []string{"status", "peers", "--json"}, stdout: jsonPeers.String()},
		{name: "status json peers", args: []string{"status", "--json", "peers"}, stdout: jsonPeers.String()},
		{name: "status connections", args: []string{"status", "connections"}, stdout: func() string {
			var b strings.Builder
			formatConnections(&b, goldenConns)
			return b.String()
		}()},
		{name: "status connections json", args: []string{"status", "connections", "--json"}, stdout: jsonConns.String()},
		{name: "ps", args: []string{"ps"}, stdout: func() string {
			var b strings.Builder
			formatEndpoints(&b, goldenEndpoints)
			return b.String()
		}()},
		{name: "ps json", args: []string{"ps", "--json"}, stdout: jsonEndpoints.String()},
		{name: "connect", args: []string{"connect", "10.0.0.7", "h8:6783"}, stdout: ""},
		{name: "forget", args: []string{"forget", "10.0.0.7"}, stdout: ""},
		{name: "version", args: []string{"version"}, stdout: "weave dev (protocol 2..2, " + runtime.Version() + ")\n" +
			"router 1.2.3 (protocol 1..1, go1.26) on " + addr + "\n"},
		{name: "unknown status report", args: []string{"status", "bogus"}, code: 2, stderr: `unknown status report "bogus"`},
		{name: "connect nothing", args: []string{"connect"}, code: 2, stderr: "give at least one peer as host or host:port"},
		{name: "connect bad peer", args: []string{"connect", "h:0"}, code: 1, stderr: `peer "h:0": port must be 1-65535`},
		{name: "attach no args", args: []string{"attach"}, code: 2, stderr: "give NETNS, after any IP/PREFIX, net:CIDR or net:default"},
		{name: "attach bad net item", args: []string{"attach", "net:10.32.0.0", "ns1"}, code: 1, stderr: "want net:CIDR"},
		{name: "attach bad cidr", args: []string{"attach", "10.32.1.5", "ns1"}, code: 1, stderr: `"10.32.1.5": want an address with prefix length`},
		{name: "attach missing netns", args: []string{"attach", "10.32.1.5/12", "ns9"}, code: 1, stderr: `no network namespace "ns9"`},
		{name: "detach two", args: []string{"detach", "a", "b"}, code: 2, stderr: "give exactly one NETNS"},
		{name: "ps extra", args: []string{"ps", "x"}, code: 2, stderr: "give no arguments"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, stdout, stderr := testApp(t)
			code := a.run(context.Background(), append([]string{"--http-addr", addr}, tc.args...))
			if code != tc.code {
				t.Fatalf("exit code %d, want %d; stderr:\n%s", code, tc.code, stderr)
			}
			if tc.code == 0 && stdout.String() != tc.stdout {
				t.Errorf("stdout\n%s\nwant\n%s", stdout, tc.stdout)
			}
			if !strings.Contains(stderr.String(), tc.stderr) {
				t.Errorf("stderr %q does not contain %q", stderr, tc.stderr)
			}
		})
	}

	f.mu.Lock()
	defer f.mu.Unlock()
	if want := []string{"10.0.0.7", "h8:6783"}; !reflect.DeepEqual(f.connected, want) {
		t.Errorf("connected %q, want %q", f.connected, want)
	}
	if want := []string{"10.0.0.7"}; !reflect.DeepEqual(f.forgotten, want) {
		t.Errorf("forgot %q, want %q", f.forgotten, want)
	}
}

func TestAttachDetach(t *testing.T) {
	f := &fakeBackend{}
	addr := startAPI(t, f)
	a, stdout, stderr := testApp(t)
	ns := filepath.Join(a.netnsDir, "ns1")
	if err := os.MkdirAll(a.netnsDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ns, nil, 0o644); err != nil {
		t.Fatal(err)
	}

	code := a.run(context.Background(), []string{"--http-addr", addr, "attach", "--name", "web",
		"10.32.1.5/12", "FD00::5/64", "ns1"})
	if code != 0 {
		t.Fatalf("attach: exit %d: %s", code, stderr)
	}
	if want := "vwe01020304 0a:58:0a:20:01:05 10.32.1.5/12,fd00::5/64\n"; stdout.String() != want {
		t.Errorf("attach printed %q, want %q", stdout, want)
	}
	f.mu.Lock()
	want := api.AttachRequest{Netns: ns, CIDRs: []string{"10.32.1.5/12", "fd00::5/64"}, Name: "web"}
	if !reflect.DeepEqual(f.attached, want) {
		t.Errorf("backend got %+v, want %+v", f.attached, want)
	}
	f.mu.Unlock()

	// detach works for a namespace that is already gone.
	stdout.Reset()
	if code := a.run(context.Background(), []string{"--http-addr", addr, "detach", "4242"}); code != 0 {
		t.Fatalf("detach: exit %d: %s", code, stderr)
	}
	if want := "vwe01020304 0a:58:0a:20:01:05 10.32.1.5/12\n"; stdout.String() != want {
		t.Errorf("detach printed %q, want %q", stdout, want)
	}
	f.mu.Lock()
	if want := filepath.Join(a.procDir, "4242", "ns", "net"); f.detached.Netns != want {
		t.Errorf("backend detach %q, want %q", f.detached.Netns, want)
	}
	f.mu.Unlock()
}

// TestAPIErrors: the router's error messages reach the user unchanged.
func TestAPIErrors(t *testing.T) {
	f := &fakeBackend{err: api.NotFound("no endpoint in /proc/4242/ns/net")}
	addr := startAPI(t, f)
	a, _, stderr := testApp(t)
	if code := a.run(context.Background(), []string{"--http-addr", addr, "detach", "4242"}); code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	if got := stderr.String(); got != "weave: no endpoint in /proc/4242/ns/net\n" {
		t.Errorf("stderr %q", got)
	}
}

func TestNoRouter(t *testing.T) {
	addr := freeAddr(t)
	want := "weave: no router is running on " + addr + "; start one with weave launch\n"
	for _, args := range [][]string{
		{"status"}, {"status", "peers"}, {"status", "connections"}, {"ps"}, {"stop"},
		{"connect", "h"}, {"forget", "h"}, {"detach", "ns1"},
	} {
		a, _, stderr := testApp(t)
		code := a.run(context.Background(), append([]string{"--http-addr", addr}, args...))
		if code != 1 || stderr.String() != want {
			t.Errorf("%v: exit %d, stderr %q; want 1, %q", args, code, stderr, want)
		}
	}
	// version still prints the client's version.
	a, stdout, _ := testApp(t)
	if code := a.run(context.Background(), []string{"--http-addr", addr, "version"}); code != 0 {
		t.Errorf("version: exit %d", code)
	}
	if !strings.HasSuffix(stdout.String(), "router: none running on "+addr+"\n") {
		t.Errorf("version printed %q", stdout)
	}
}

func TestHTTPAddrFromEnv(t *testing.T) {
	addr := startAPI(t, &fakeBackend{status: goldenStatus})
	a, stdout, stderr := testApp(t)
	a.getenv = func(k string) string {
		if k == "WEAVE_HTTP_ADDR" {
			return addr
		}
		return ""
	}
	if code := a.run(context.Background(), []string{"status", "--json"}); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var st api.Status
	if err := json.Unmarshal(stdout.Bytes(), &st); err != nil || st.Name != goldenStatus.Name {
		t.Errorf("status %q: %v", stdout, err)
	}
}

func TestUsage(t *testing.T) {
	tests := []struct {
		args   []string
		code   int
		stderr string
	}{
		{nil, 2, "weave: give a command"},
		{[]string{"bogus"}, 2, "weave: unknown command \"bogus\"\nRun 'weave --help' for usage."},
		{[]string{"status", "--bogus"}, 2, "Run 'weave status --help' for usage."},
		{[]string{"--http-addr", "nope", "status"}, 1, `weave: --http-addr "nope": want host:port`},
		{[]string{"--help"}, 0, ""},
		{[]string{"attach", "--help"}, 0, ""},
	}
	for _, tc := range tests {
		a, _, stderr := testApp(t)
		code := a.run(context.Background(), tc.args)
		if code != tc.code || !strings.Contains(stderr.String(), tc.stderr) {
			t.Errorf("%q: exit %d stderr %q; want %d, %q", tc.args, code, stderr, tc.code, tc.stderr)
		}
	}
}
