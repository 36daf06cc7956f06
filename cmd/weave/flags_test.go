package main

import (
	"context"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"weavemesh.dev/weave/peer"
	"weavemesh.dev/weave/router"
)

func TestRouterFlags(t *testing.T) {
	cwd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	defaults := router.Config{Port: 6783, DataDir: "/var/lib/weave", HTTPAddr: "127.0.0.1:6784",
		MTU: 1376, Version: "dev", MeshName: "weave"}
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte("from a file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	with := func(f func(*router.Config)) router.Config { c := defaults; f(&c); return c }
	tests := []struct {
		name    string
		args    []string
		env     string // WEAVE_HTTP_ADDR
		want    router.Config
		code    int
		errText string
	}{
		{name: "defaults", args: nil, want: defaults},
		{name: "everything",
			args: []string{"--name", "AA:BB:CC:DD:EE:01", "--nickname", "web1", "--port", "7000",
				"--data-port", "7100", "--data-dir", "/tmp/w", "--http-addr", "127.0.0.1:7001", "--mtu", "1400",
				"--advertise-addr", "203.0.113.5:7000", "--log-level", "debug", "10.0.0.2", "host3:7000", "[fd00::1]:6783"},
			want: router.Config{Name: peer.Name(0xaabbccddee01), Nickname: "web1", Port: 7000, DataPort: 7100,
				DataDir: "/tmp/w", HTTPAddr: "127.0.0.1:7001", MTU: 1400, AdvertiseAddr: "203.0.113.5:7000",
				Peers: []string{"10.0.0.2", "host3:7000", "[fd00::1]:6783"}, Version: "dev", MeshName: "weave"}},
		{name: "password file", args: []string{"--password-file", pwFile, "--mesh-name", "prod"},
			want: with(func(c *router.Config) { c.Password = []byte("from a file"); c.MeshName = "prod" })},
		{name: "password flag", args: []string{"--password", "s3cret"},
			want: with(func(c *router.Config) { c.Password = []byte("s3cret") })},
		{name: "trusted subnets", args: []string{"--trusted-subnets", "192.168.1.7/24,10.0.0.0/8"},
			want: with(func(c *router.Config) {
				c.TrustedSubnets = []netip.Prefix{netip.MustParsePrefix("192.168.1.0/24"), netip.MustParsePrefix("10.0.0.0/8")}
			})},
		{name: "two passwords", args: []string{"--password", "x", "--password-file", pwFile}, code: 1, errText: "give the password once"},
		{name: "missing password file", args: []string{"--password-file", pwFile + ".none"}, code: 1, errText: "--password-file: "},
		{name: "bad trusted subnet", args: []string{"--trusted-subnets", "10.0.0.0/33"}, code: 1, errText: `--trusted-subnets "10.0.0.0/33"`},
		{name: "empty mesh name", args: []string{"--mesh-name", ""}, code: 1, errText: "--mesh-name: must not be empty"},
		{name: "fastdp flags", args: []string{"--datapath", "fastdp", "--fastdp-port", "4790", "--fastdp-no-tx-checksum"},
			want: with(func(c *router.Config) { c.Datapath = "fastdp"; c.FastdpPort = 4790; c.FastdpNoTxChecksum = true })},
		{name: "sleeve datapath", args: []string{"--datapath=sleeve"},
			want: with(func(c *router.Config) { c.Datapath = "sleeve" })},
		{name: "bad datapath", args: []string{"--datapath", "kernel"}, code: 1, errText: `--datapath "kernel": want auto, fastdp or sleeve`},
		{name: "fastdp port is the data port", args: []string{"--fastdp-port", "6784"}, code: 1,
			errText: "--fastdp-port 6784: must differ from --port 6783 and --data-port 6784"},
		{name: "fastdp port is the gossip port", args: []string{"--port", "7000", "--fastdp-port", "7000"}, code: 1,
			errText: "--fastdp-port 7000: must differ"},
		{name: "equals form", args: []string{"--port=7000", "--mtu=9000"},
			want: with(func(c *router.Config) { c.Port = 7000; c.MTU = 9000 })},
		{name: "relative data dir", args: []string{"--data-dir", "state"},
			want: with(func(c *router.Config) { c.DataDir = filepath.Join(cwd, "state") })},
		{name: "env http addr", env: "127.0.0.1:9999",
			want: with(func(c *router.Config) { c.HTTPAddr = "127.0.0.1:9999" })},
		{name: "flag beats env", env: "127.0.0.1:9999", args: []string{"--http-addr", "127.0.0.1:8888"},
			want: with(func(c *router.Config) { c.HTTPAddr = "127.0.0.1:8888" })},
		{name: "peers after --", args: []string{"--", "10.0.0.2"},
			want: with(func(c *router.Config) { c.Peers = []string{"10.0.0.2"} })},

		{name: "bad name", args: []string{"--name", "zz"}, code: 1, errText: "--name: peer name \"zz\""},
		{name: "reserved name", args: []string{"--name", "00:00:00:00:00:00"}, code: 1, errText: "--name: "},
		{name: "port range", args: []string{"--port", "70000"}, code: 1, errText: "--port 70000: must be 1-65535"},
		{name: "port zero", args: []string{"--port", "0"}, code: 1, errText: "--port 0"},
		{name: "port not a number", args: []string{"--port", "abc"}, code: 2, errText: `"--port"`},
		{name: "data port same", args: []string{"--data-port", "6783"}, code: 1, errText: "--data-port 6783: must be 1-65535 and differ from --port"},
		{name: "data port range", args: []string{"--data-port", "-1"}, code: 1, errText: "--data-port -1"},
		{name: "last port", args: []string{"--port", "65535"}, code: 1, errText: "set --data-port"},
		{name: "mtu low", args: []string{"--mtu", "100"}, code: 1, errText: "--mtu 100: must be 576-65000"},
		{name: "empty data dir", args: []string{"--data-dir", ""}, code: 1, errText: "--data-dir: must not be empty"},
		{name: "bad http addr", args: []string{"--http-addr", "6784"}, code: 1, errText: `--http-addr "6784": want host:port`},
		{name: "bad advertise", args: []string{"--advertise-addr", "h:0"}, code: 1, errText: `--advertise-addr "h:0": port must be 1-65535`},
		{name: "bad log level", args: []string{"--log-level", "loud"}, code: 1, errText: `--log-level "loud": want debug, info, warn or error`},
		{name: "bad peer port", args: []string{"host:99999"}, code: 1, errText: `peer "host:99999": port must be 1-65535`},
		{name: "empty peer host", args: []string{":6783"}, code: 1, errText: `peer ":6783": empty host`},
		{name: "unknown flag", args: []string{"--bogus"}, code: 2, errText: "unknown flag: --bogus"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, _, stderr := testApp(t)
			a.getenv = func(k string) string {
				if k == "WEAVE_HTTP_ADDR" {
					return tc.env
				}
				return ""
			}
			var got *router.Config
			a.runRouter = func(ctx context.Context, cfg router.Config) error {
				if cfg.Logger == nil {
					t.Error("no Logger")
				}
				cfg.Logger = nil
				got = &cfg
				return nil
			}
			code := a.run(context.Background(), append([]string{"router"}, tc.args...))
			if code != tc.code {
				t.Fatalf("exit code %d, want %d; stderr:\n%s", code, tc.code, stderr)
			}
			if tc.code != 0 {
				if !strings.Contains(stderr.String(), tc.errText) {
					t.Errorf("stderr %q does not contain %q", stderr, tc.errText)
				}
				if got != nil {
					t.Error("router ran despite the error")
				}
				return
			}
			if got == nil {
				t.Fatal("router did not run")
			}
			if !reflect.DeepEqual(*got, tc.want) {
				t.Errorf("config\n got %+v\nwant %+v", *got, tc.want)
			}
		})
	}
}

func TestRouterLogLevel(t *testing.T) {
	a, _, stderr := testApp(t)
	a.runRouter = func(ctx context.Context, cfg router.Config) error {
		cfg.Logger.Debug("hidden")
		cfg.Logger.Warn("shown", "k", "v")
		return nil
	}
	if code := a.run(context.Background(), []string{"router", "--log-level", "warn"}); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if out := stderr.String(); strings.Contains(out, "hidden") || !strings.Contains(out, "level=WARN msg=shown k=v") {
		t.Errorf("log output %q", out)
	}
}

func TestRouterChild(t *testing.T) {
	tests := []struct {
		name string
		f    routerFlags
		cfg  router.Config
		want []string
	}{
		{
			name: "minimal",
			f:    routerFlags{logLevel: "info"},
			cfg:  router.Config{Port: 6783, DataDir: "/var/lib/weave", HTTPAddr: "127.0.0.1:6784", MTU: 1376},
			want: []string{"/usr/bin/weave", "router", "--port=6783", "--data-dir=/var/lib/weave",
				"--http-addr=127.0.0.1:6784", "--mtu=1376", "--log-level=info", "--"},
		},
		{
			name: "everything",
			f:    routerFlags{logLevel: "DEBUG"},
			cfg: router.Config{Name: peer.Name(0xaabbccddee01), Nickname: "web 1", Port: 7000, DataPort: 7100,
				DataDir: "/tmp/w", HTTPAddr: "127.0.0.1:7001", MTU: 1400, AdvertiseAddr: "203.0.113.5",
				Peers: []string{"10.0.0.2", "h:7000"}},
			want: []string{"/usr/bin/weave", "router", "--port=7000", "--data-dir=/tmp/w",
				"--http-addr=127.0.0.1:7001", "--mtu=1400", "--log-level=debug", "--name=aa:bb:cc:dd:ee:01",
				"--nickname=web 1", "--data-port=7100", "--advertise-addr=203.0.113.5", "--", "10.0.0.2", "h:7000"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := []string{"PATH=/bin"}
			spec := routerChild("/usr/bin/weave", tc.cfg, &tc.f, env)
			if spec.Path != "/usr/bin/weave" || !reflect.DeepEqual(spec.Args, tc.want) || !reflect.DeepEqual(spec.Env, env) {
				t.Errorf("got %q %q %q\nwant args %q", spec.Path, spec.Args, spec.Env, tc.want)
			}
		})
	}
}

// TestRouterChildPassword: the password reaches the child through a pipe,
// never on its command line or in its environment.
func TestRouterChildPassword(t *testing.T) {
	cfg := router.Config{Port: 6783, DataDir: "/d", HTTPAddr: "127.0.0.1:6784", MTU: 1376,
		Password: []byte("hunter2-but-longer"), MeshName: "weave"}
	spec := routerChild("/usr/bin/weave", cfg, &routerFlags{logLevel: "info"},
		[]string{"PATH=/bin", "WEAVE_PASSWORD=hunter2-but-longer"})
	if spec.Err != nil {
		t.Fatal(spec.Err)
	}
	defer func() {
		for _, f := range spec.ExtraFiles {
			f.Close()
		}
	}()
	all := strings.Join(append(append([]string(nil), spec.Args...), spec.Env...), " ")
	if strings.Contains(all, "hunter2") {
		t.Fatalf("password leaks into argv or env: %q", all)
	}
	if !slices.Contains(spec.Args, "--password-fd=3") || len(spec.ExtraFiles) != 1 {
		t.Fatalf("args %q, %d extra files", spec.Args, len(spec.ExtraFiles))
	}
	got, err := io.ReadAll(spec.ExtraFiles[0])
	if err != nil || string(got) != "hunter2-but-longer" {
		t.Fatalf("pipe holds %q, %v", got, err)
	}
}

// TestRouterChildRoundTrip: the child's command line parses back into the
// configuration launch validated.
func TestRouterChildRoundTrip(t *testing.T) {
	a, _, stderr := testApp(t)
	args := []string{"--http-addr", "127.0.0.1:7001", "router", "--name", "aa:bb:cc:dd:ee:01", "--nickname", "-odd name",
		"--port", "7000", "--data-port", "7100", "--data-dir", "/tmp/w", "--mtu", "1400",
		"--advertise-addr", "203.0.113.5", "--log-level", "warn", "--datapath", "sleeve", "--fastdp-port", "7200",
		"--fastdp-no-tx-checksum", "10.0.0.2", "h:7000"}
	var first router.Config
	a.runRouter = func(_ context.Context, cfg router.Config) error { first = cfg; return nil }
	if code := a.run(context.Background(), args); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	f := routerFlags{logLevel: "warn"}
	spec := routerChild("/x/weave", first, &f, nil)
	var second router.Config
	a.runRouter = func(_ context.Context, cfg router.Config) error { second = cfg; return nil }
	if code := a.run(context.Background(), spec.Args[1:]); code != 0 {
		t.Fatalf("child args %q: exit %d: %s", spec.Args, code, stderr)
	}
	first.Logger, second.Logger = nil, nil
	if !reflect.DeepEqual(first, second) {
		t.Errorf("round trip\n got %+v\nwant %+v", second, first)
	}
}

func TestParseCIDRs(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		errText string
	}{
		{"10.32.1.5/12", "10.32.1.5/12", ""},
		{"192.168.1.1/30", "192.168.1.1/30", ""},
		{"192.168.1.0/31", "192.168.1.0/31", ""},
		{"10.0.0.1/32", "10.0.0.1/32", ""},
		{"fd00::5/64", "fd00::5/64", ""},
		{"FD00::5/64", "fd00::5/64", ""},
		{"10.32.1.5", "", "want an address with prefix length, like 10.32.1.5/12"},
		{"10.32.1.5/33", "", "want an address with prefix length"},
		{"web/12", "", "want an address with prefix length"},
		{"10.32.0.0/12", "", "is the network address of 10.32.0.0/12"},
		{"10.47.255.255/12", "", "is the broadcast address of 10.32.0.0/12"},
		{"0.0.0.0/8", "", "not a unicast host address"},
		{"127.0.0.2/8", "", "not a unicast host address"},
		{"224.0.0.1/4", "", "not a unicast host address"},
		{"::ffff:10.0.0.1/104", "", "write IPv4 addresses as a.b.c.d/n"},
		{"10.0.0.1/0", "", "prefix length 0"},
	}
	for _, tc := range tests {
		got, err := parseCIDRs([]string{tc.in})
		if tc.errText != "" {
			if err == nil || !strings.Contains(err.Error(), tc.errText) {
				t.Errorf("parseCIDRs(%q) = %v, %v; want error containing %q", tc.in, got, err, tc.errText)
			}
			continue
		}
		if err != nil || len(got) != 1 || got[0] != tc.want {
			t.Errorf("parseCIDRs(%q) = %v, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestResolveNetns(t *testing.T) {
	a, _, _ := testApp(t)
	for _, p := range []string{
		filepath.Join(a.netnsDir, "ns1"),
		filepath.Join(a.procDir, "1234", "ns", "net"),
	} {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	nsFile := filepath.Join(a.netnsDir, "ns1")
	cwd, _ := os.Getwd()
	tests := []struct {
		arg       string
		mustExist bool
		want      string
		errText   string
	}{
		{"ns1", true, nsFile, ""},
		{"1234", true, filepath.Join(a.procDir, "1234", "ns", "net"), ""},
		{nsFile, true, nsFile, ""},
		{nsFile + "/../ns1", true, nsFile, ""},
		{"ns2", true, "", `no network namespace "ns2": ` + filepath.Join(a.netnsDir, "ns2") + " does not exist; create it with ip netns add ns2"},
		{"99999", true, "", "no process 99999: " + filepath.Join(a.procDir, "99999", "ns", "net") + " does not exist"},
		{"0", true, "", `NETNS "0": not a valid PID`},
		{"/no/such/file", true, "", "/no/such/file does not exist"},
		{"", true, "", "NETNS is empty"},
		{"..", true, "", "not a namespace name"},
		{"ns2", false, filepath.Join(a.netnsDir, "ns2"), ""},
		{"99999", false, filepath.Join(a.procDir, "99999", "ns", "net"), ""},
		{"./x/y", false, filepath.Join(cwd, "x", "y"), ""},
	}
	for _, tc := range tests {
		got, err := a.resolveNetns(tc.arg, tc.mustExist)
		if tc.errText != "" {
			if err == nil || !strings.Contains(err.Error(), tc.errText) {
				t.Errorf("resolveNetns(%q) = %q, %v; want error containing %q", tc.arg, got, err, tc.errText)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("resolveNetns(%q, %v) = %q, %v; want %q", tc.arg, tc.mustExist, got, err, tc.want)
		}
	}
}
