package main

import (
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestLayerSettings(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	conf := write("weave.conf", `# a comment
peers = 10.0.0.1 10.0.0.2
ipalloc-range = 10.40.0.0/16
mtu = 1400
--nickname = fromfile
trusted-subnets = 10.0.0.0/24
trusted-subnets = 10.1.0.0/24
`)
	for _, tc := range []struct {
		name    string
		args    []string
		env     map[string]string
		want    map[string]string
		peers   []string
		wantErr string
	}{
		{name: "file alone", args: []string{"--config", conf},
			want:  map[string]string{"ipalloc-range": "10.40.0.0/16", "mtu": "1400", "nickname": "fromfile", "trusted-subnets": "[10.0.0.0/24,10.1.0.0/24]"},
			peers: []string{"10.0.0.1", "10.0.0.2"}},
		{name: "env over file", args: []string{"--config", conf}, env: map[string]string{"WEAVE_MTU": "1300", "WEAVE_PEERS": "10.9.9.9,10.9.9.8"},
			want: map[string]string{"mtu": "1300", "ipalloc-range": "10.40.0.0/16"}, peers: []string{"10.9.9.9", "10.9.9.8"}},
		{name: "flag over env", args: []string{"--mtu", "1200", "10.5.5.5"}, env: map[string]string{"WEAVE_MTU": "1300", "WEAVE_CONFIG": conf},
			want: map[string]string{"mtu": "1200", "ipalloc-range": "10.40.0.0/16"}, peers: []string{"10.5.5.5"}},
		{name: "no file", args: nil, want: map[string]string{"mtu": "1376"}, peers: nil},
		{name: "bad env value", env: map[string]string{"WEAVE_MTU": "big"}, wantErr: "WEAVE_MTU"},
		{name: "unknown setting", args: []string{"--config", write("bad.conf", "mtu = 1400\nspeed = fast\n")}, wantErr: "bad.conf:2: \"speed\" is not a setting"},
		{name: "not a setting line", args: []string{"--config", write("bad2.conf", "just words\n")}, wantErr: "bad2.conf:1"},
		{name: "password not in a file", args: []string{"--config", write("pw.conf", "password = s3cret\n")}, wantErr: "use password-file"},
		{name: "bad value in file", args: []string{"--config", write("bad3.conf", "port = x\n")}, wantErr: "bad3.conf:1: port"},
		{name: "missing file", args: []string{"--config", filepath.Join(dir, "nope.conf")}, wantErr: "nope.conf"},
		{name: "password env is its own", env: map[string]string{"WEAVE_PASSWORD": "pw"}, want: map[string]string{"password": ""}},
		{name: "plugin flags from env", env: map[string]string{"WEAVE_NO_PLUGIN": "true"}, want: map[string]string{"no-plugin": "true", "plugin-socket": ""}},
		{name: "plugin socket from file", args: []string{"--config", write("plugin.conf", "plugin-socket = /run/docker/plugins/wm2.sock\n")},
			want: map[string]string{"plugin-socket": "/run/docker/plugins/wm2.sock", "no-plugin": "false"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newApp()
			a.getenv = func(k string) string { return tc.env[k] }
			cmd := a.launchCmd()
			if err := cmd.Flags().Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			peers, err := a.layerSettings(cmd, cmd.Flags().Args())
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, want an error naming %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tc.want {
				if got := cmd.Flags().Lookup(k).Value.String(); got != v {
					t.Errorf("--%s = %q, want %q", k, got, v)
				}
			}
			if !slices.Equal(peers, tc.peers) {
				t.Errorf("peers %v, want %v", peers, tc.peers)
			}
		})
	}
}

// Every flag of launch and router says what it does, and those with a
// default show it in --help.
func TestLaunchHelpDocumentsEveryFlag(t *testing.T) {
	a := newApp()
	for _, cmd := range []func() string{
		func() string { c := a.launchCmd(); return c.Flags().FlagUsages() },
		func() string { c := a.routerCmd(); return c.Flags().FlagUsages() },
	} {
		usage := cmd()
		for _, line := range strings.Split(strings.TrimSpace(usage), "\n") {
			f := strings.Fields(line)
			if len(f) < 2 {
				t.Errorf("flag without a description: %q", line)
			}
		}
		for _, want := range []string{"--ipalloc-range string", "(default \"10.32.0.0/12\")", "--config string", "--port int", "(default 6783)"} {
			if !strings.Contains(usage, want) {
				t.Errorf("--help lacks %q", want)
			}
		}
	}
}

func TestLogFormat(t *testing.T) {
	for _, tc := range []struct {
		format, want string
		bad          bool
	}{{"text", "level=INFO msg=hello", false}, {"json", `"msg":"hello"`, false}, {"xml", "", true}} {
		f := routerFlags{logFormat: tc.format}
		var b strings.Builder
		h, err := f.logHandler(&b, 0)
		if tc.bad {
			if err == nil || !strings.Contains(err.Error(), "--log-format") {
				t.Errorf("%s: %v", tc.format, err)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		slog.New(h).Info("hello")
		if !strings.Contains(b.String(), tc.want) {
			t.Errorf("%s: %q lacks %q", tc.format, b.String(), tc.want)
		}
	}
}
