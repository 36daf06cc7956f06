package main

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"weavemesh.dev/weave/meshkey"
	"weavemesh.dev/weave/metrics"
	"weavemesh.dev/weave/peer"
	"weavemesh.dev/weave/router"
)

// routerFlags are the flags of weave router and weave launch, as given.
type routerFlags struct {
	name          string
	nickname      string
	port          int
	dataPort      int
	dataDir       string
	mtu           int
	advertiseAddr string
	logLevel      string
	logFormat     string
	ipalloc       ipallocFlags
	dns           dnsFlags
	plugin        pluginFlags
	fastdp        fastdpFlags
	sleeve        sleeveFlags
	// Encryption.
	password       string
	passwordFile   string
	passwordFD     int
	trustedSubnets []string
	meshName       string
	metricsAddr    string
	waitPeers      time.Duration // launch only: how long to show progress connecting to the peers
	httpToken      string        // the global --http-token, or its variable, set by the command
}

func (f *routerFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.name, "name", "",
		"peer name, like aa:bb:cc:dd:ee:ff (default: kept in --data-dir, created on first run)")
	fs.StringVar(&f.nickname, "nickname", "", "human-friendly peer name shown in status (default: the hostname)")
	fs.IntVar(&f.port, "port", router.DefaultPort, "gossip port, tcp and udp")
	fs.IntVar(&f.dataPort, "data-port", 0, "sleeve data-plane port, udp (default: --port + 1)")
	fs.StringVar(&f.dataDir, "data-dir", router.DefaultDataDir, "directory for the peer name, known peers, endpoints and router.log")
	fs.IntVar(&f.mtu, "mtu", router.DefaultMTU, fmt.Sprintf("overlay MTU, %d-%d", router.MinMTU, router.MaxMTU))
	fs.StringVar(&f.advertiseAddr, "advertise-addr", "", "address other peers should use to reach this one, host or host:port (behind NAT)")
	fs.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&f.logFormat, "log-format", "text", "log format: text (key=value) or json (one object a line)")
	f.ipalloc.register(fs)
	f.dns.register(fs)
	f.plugin.register(fs)
	f.fastdp.register(fs)
	f.sleeve.register(fs)
	fs.StringVar(&f.password, "password", "",
		"mesh password: encrypts gossip and data (also env "+passwordEnv+"; --password-file keeps it out of ps and shell history)")
	fs.StringVar(&f.passwordFile, "password-file", "", "file holding the mesh password (preferred way to give it)")
	fs.IntVar(&f.passwordFD, "password-fd", 0, "read the mesh password from this inherited file descriptor")
	_ = fs.MarkHidden("password-fd") // how weave launch hands the password to the router
	fs.StringSliceVar(&f.trustedSubnets, "trusted-subnets", nil,
		"underlay subnets (CIDR,...) whose peers exchange data unencrypted with us when both sides trust each other; gossip stays encrypted")
	fs.StringVar(&f.meshName, "mesh-name", router.DefaultMeshName, "name of the mesh: peers of meshes with different names never merge")
	fs.StringVar(&f.metricsAddr, "metrics-addr", metrics.DefaultAddr, "host:port to serve Prometheus metrics on (GET /metrics), or off")
}

// passwordEnv is the environment variable holding the mesh password.
const passwordEnv = "WEAVE_PASSWORD"

// password returns the mesh password from --password, --password-file,
// --password-fd or $WEAVE_PASSWORD; at most one may be given.
func (f *routerFlags) resolvePassword(getenv func(string) string) ([]byte, error) {
	var sources []string
	var pw []byte
	if f.password != "" {
		sources = append(sources, "--password")
		pw = []byte(f.password)
	}
	if f.passwordFile != "" {
		sources = append(sources, "--password-file")
		b, err := meshkey.ReadFile(f.passwordFile)
		if err != nil {
			return nil, fmt.Errorf("--password-file: %w", err)
		}
		pw = b
	}
	if f.passwordFD != 0 {
		sources = append(sources, "--password-fd")
		file := os.NewFile(uintptr(f.passwordFD), "password")
		if file == nil {
			return nil, fmt.Errorf("--password-fd %d: not an open file descriptor", f.passwordFD)
		}
		b, err := io.ReadAll(io.LimitReader(file, 64<<10))
		file.Close()
		if err != nil {
			return nil, fmt.Errorf("--password-fd %d: %w", f.passwordFD, err)
		}
		pw = b
	}
	if env := getenv(passwordEnv); env != "" && len(sources) == 0 {
		pw = []byte(env)
	}
	if len(sources) > 1 {
		return nil, fmt.Errorf("give the password once: %s are all set", strings.Join(sources, " and "))
	}
	return pw, nil
}

// config validates the flags and builds the router configuration; every
// error names the flag. Logger is left for the caller.
func (f *routerFlags) config(httpAddr, version string, peers []string, getenv func(string) string) (router.Config, slog.Level, error) {
	cfg := router.Config{
		Nickname:      f.nickname,
		Port:          f.port,
		DataPort:      f.dataPort,
		HTTPAddr:      httpAddr,
		HTTPToken:     f.httpToken,
		MTU:           f.mtu,
		AdvertiseAddr: f.advertiseAddr,
		Version:       version,
	}
	if f.metricsAddr != metrics.DefaultAddr {
		cfg.MetricsAddr = f.metricsAddr
	}
	level, err := parseLogLevel(f.logLevel)
	if err != nil {
		return cfg, 0, err
	}
	if _, err := f.logHandler(io.Discard, level); err != nil {
		return cfg, 0, err
	}
	if f.name != "" {
		if cfg.Name, err = peer.ParseName(f.name); err != nil {
			return cfg, 0, fmt.Errorf("--name: %w", err)
		}
	}
	if f.port < 1 || f.port > 65535 {
		return cfg, 0, fmt.Errorf("--port %d: must be 1-65535", f.port)
	}
	if f.dataPort != 0 && (f.dataPort < 1 || f.dataPort > 65535 || f.dataPort == f.port) {
		return cfg, 0, fmt.Errorf("--data-port %d: must be 1-65535 and differ from --port", f.dataPort)
	}
	if f.dataPort == 0 && f.port == 65535 {
		return cfg, 0, fmt.Errorf("--port 65535 leaves no room for the default --data-port (--port + 1); set --data-port")
	}
	if f.mtu < router.MinMTU || f.mtu > router.MaxMTU {
		return cfg, 0, fmt.Errorf("--mtu %d: must be %d-%d", f.mtu, router.MinMTU, router.MaxMTU)
	}
	if strings.TrimSpace(f.dataDir) == "" {
		return cfg, 0, fmt.Errorf("--data-dir: must not be empty")
	}
	// The launched router may run from another directory; pin the path.
	if cfg.DataDir, err = filepath.Abs(f.dataDir); err != nil {
		return cfg, 0, fmt.Errorf("--data-dir %q: %w", f.dataDir, err)
	}
	if f.advertiseAddr != "" {
		if err := validHostPort(f.advertiseAddr); err != nil {
			return cfg, 0, fmt.Errorf("--advertise-addr %w", err)
		}
	}
	for _, p := range peers {
		if err := validHostPort(p); err != nil {
			return cfg, 0, fmt.Errorf("peer %w", err)
		}
	}
	if len(peers) > 0 {
		cfg.Peers = peers
	}
	if cfg.Password, err = f.resolvePassword(getenv); err != nil {
		return cfg, 0, err
	}
	for _, s := range f.trustedSubnets {
		p, err := netip.ParsePrefix(strings.TrimSpace(s))
		if err != nil {
			return cfg, 0, fmt.Errorf("--trusted-subnets %q: want CIDR like 192.168.0.0/16", s)
		}
		cfg.TrustedSubnets = append(cfg.TrustedSubnets, p.Masked())
	}
	if strings.TrimSpace(f.meshName) == "" {
		return cfg, 0, fmt.Errorf("--mesh-name: must not be empty")
	}
	cfg.MeshName = f.meshName
	if err := f.ipalloc.apply(&cfg); err != nil {
		return cfg, 0, err
	}
	if err := f.dns.apply(&cfg); err != nil {
		return cfg, 0, err
	}
	if err := f.plugin.apply(&cfg); err != nil {
		return cfg, 0, err
	}
	if err := f.fastdp.apply(&cfg); err != nil {
		return cfg, 0, err
	}
	if err := f.sleeve.apply(&cfg); err != nil {
		return cfg, 0, err
	}
	return cfg, level, nil
}

func parseLogLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("--log-level %q: want debug, info, warn or error", s)
}

// logHandler is the slog handler --log-format names, or an error naming
// the flag.
func (f *routerFlags) logHandler(w io.Writer, level slog.Level) (slog.Handler, error) {
	opts := &slog.HandlerOptions{Level: level}
	switch strings.ToLower(f.logFormat) {
	case "", "text":
		return slog.NewTextHandler(w, opts), nil
	case "json":
		return slog.NewJSONHandler(w, opts), nil
	}
	return nil, usagef("--log-format %q: want text or json", f.logFormat)
}

// validHostPort accepts "host" or "host:port" (IPv6 as "[::1]:6783" or a
// bare address).
func validHostPort(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		host, port = s, ""
	}
	host = strings.Trim(host, "[]")
	switch {
	case host == "":
		return fmt.Errorf("%q: empty host; give host or host:port", s)
	case strings.ContainsAny(host, " /\t"):
		return fmt.Errorf("%q: not a host name or address; give host or host:port", s)
	}
	if port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("%q: port must be 1-65535", s)
		}
	}
	return nil
}

// childSpec is how launch starts the background router.
type childSpec struct {
	Path string
	Args []string // argv, Args[0] included
	Env  []string
	// ExtraFiles are inherited as fds 3, 4, ...: the way to hand the router
	// a secret through a pipe.
	ExtraFiles []*os.File
	// Err is set when the spec could not be built (the pipe failed).
	Err error
}

// routerChild builds the command line and environment of the background
// router from the validated configuration. Anything secret (an encryption
// password, say) must travel in Env or an inherited pipe, never in Args:
// every local user can read a process's command line.
func routerChild(exe string, cfg router.Config, f *routerFlags, environ []string) childSpec {
	args := []string{exe, "router",
		"--port=" + strconv.Itoa(cfg.Port),
		"--data-dir=" + cfg.DataDir,
		"--http-addr=" + cfg.HTTPAddr,
		"--mtu=" + strconv.Itoa(cfg.MTU),
		"--log-level=" + strings.ToLower(f.logLevel),
	}
	if f.logFormat != "" && f.logFormat != "text" {
		args = append(args, "--log-format="+f.logFormat)
	}
	if cfg.Name != peer.None {
		args = append(args, "--name="+cfg.Name.String())
	}
	if cfg.Nickname != "" {
		args = append(args, "--nickname="+cfg.Nickname)
	}
	if cfg.DataPort != 0 {
		args = append(args, "--data-port="+strconv.Itoa(cfg.DataPort))
	}
	if cfg.AdvertiseAddr != "" {
		args = append(args, "--advertise-addr="+cfg.AdvertiseAddr)
	}
	for _, p := range cfg.TrustedSubnets {
		args = append(args, "--trusted-subnets="+p.String())
	}
	if cfg.MeshName != "" {
		args = append(args, "--mesh-name="+cfg.MeshName)
	}
	if cfg.MetricsAddr != "" {
		args = append(args, "--metrics-addr="+cfg.MetricsAddr)
	}
	env := make([]string, 0, len(environ)+1)
	for _, e := range environ {
		if !strings.HasPrefix(e, passwordEnv+"=") && !strings.HasPrefix(e, httpTokenEnv+"=") {
			env = append(env, e)
		}
	}
	if cfg.HTTPToken != "" {
		// In the environment, not on the command line, where ps shows it.
		env = append(env, httpTokenEnv+"="+cfg.HTTPToken)
	}
	spec := childSpec{Path: exe, Env: env}
	if len(cfg.Password) > 0 {
		// Through a pipe: never on the command line, never in the
		// environment of a long-lived process.
		r, w, err := os.Pipe()
		if err == nil {
			_, err = w.Write(cfg.Password)
			w.Close()
		}
		if err != nil {
			spec.Err = fmt.Errorf("hand the password to the router: %w", err)
		} else {
			spec.ExtraFiles = append(spec.ExtraFiles, r)
			args = append(args, "--password-fd="+strconv.Itoa(2+len(spec.ExtraFiles)))
		}
	}
	args = append(args, ipallocArgs(cfg)...)
	args = append(args, dnsArgs(cfg)...)
	args = append(args, pluginArgs(cfg)...)
	args = append(args, fastdpArgs(cfg)...)
	args = append(args, sleeveArgs(cfg)...)
	// Peers after "--" so that none is taken for a flag.
	args = append(args, "--")
	args = append(args, cfg.Peers...)
	spec.Args = args
	return spec
}
