package harness

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"weavemesh.dev/weave/api"
)

// CLITimeout bounds one `weave` CLI call made through Host.Weave.
const CLITimeout = 30 * time.Second

// Host is a simulated machine: a namespace with eth0 on the underlay, where a
// weave router runs.
type Host struct {
	*NS
	Name  string     // "host1"; also the router's nickname
	Index int        // 1-based
	IP    netip.Addr // underlay address
	MTU   int        // underlay MTU of eth0

	cluster *Cluster
	dataDir string

	mu        sync.Mutex // guards the router fields below
	router    *Proc      // router started with StartRouter
	launched  int        // pid of a router started with Launch
	args      []string   // extra args of the last start, for Restart
	viaLaunch bool
	httpAddr  string // --http-addr given to the router, "" for the default
}

// DataDir is the router's --data-dir.
func (h *Host) DataDir() string { return h.dataDir }

// RouterLogPath is where StartRouter sends the router's output.
func (h *Host) RouterLogPath() string {
	return filepath.Join(h.cluster.Dir, h.Name+"-router.log")
}

// ResetDataDir removes the router's data dir, so the next start is a new peer
// with no memory. The router must not be running.
func (h *Host) ResetDataDir() error {
	if h.RouterRunning() {
		return fmt.Errorf("%s: stop the router before resetting its data dir", h.Name)
	}
	if err := os.RemoveAll(h.dataDir); err != nil {
		return fmt.Errorf("%s: reset data dir: %w", h.Name, err)
	}
	return nil
}

// flagValue returns the value of --name or --name=value in args.
func flagValue(args []string, name string) string {
	for i, a := range args {
		if a == name && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
	}
	return ""
}

func (h *Host) baseArgs(verb string, args []string) []string {
	out := []string{verb}
	if flagValue(args, "--data-dir") == "" {
		out = append(out, "--data-dir", h.dataDir)
	}
	if flagValue(args, "--nickname") == "" {
		out = append(out, "--nickname", h.Name)
	}
	// The hosts share the machine's filesystem: without this, the first
	// router would take the real Docker plugin socket.
	if flagValue(args, "--plugin-socket") == "" && !slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--no-plugin") }) {
		out = append(out, "--no-plugin=true") // one word: the fake router of the harness tests reads "--flag value" pairs
	}
	return append(out, args...)
}

// StartRouter runs `weave router --data-dir <dir>/<host> --nickname <host>
// args...` in the host as a child process, output to RouterLogPath, and waits
// until `weave status` reports it ready.
func (h *Host) StartRouter(args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), h.cluster.Opts.ReadyTimeout)
	defer cancel()
	return h.StartRouterCtx(ctx, args...)
}

// StartRouterCtx is StartRouter with a caller-chosen deadline for readiness.
func (h *Host) StartRouterCtx(ctx context.Context, args ...string) error {
	if h.RouterRunning() {
		return fmt.Errorf("%s: a router started by the harness is already running (pid %d)", h.Name, h.RouterPID())
	}
	bin, err := h.cluster.WeaveBinary()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(h.dataDir, 0o755); err != nil {
		return fmt.Errorf("%s: create data dir: %w", h.Name, err)
	}
	logPath := h.RouterLogPath()
	argv := append([]string{bin}, h.baseArgs("router", args)...)
	appendLog(logPath, fmt.Sprintf("=== %s: %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(argv, " ")))
	p, err := h.NS.Start(logPath, argv...)
	if err != nil {
		return fmt.Errorf("%s: start router: %w", h.Name, err)
	}
	h.mu.Lock()
	h.router, h.launched, h.viaLaunch = p, 0, false
	h.args = append([]string(nil), args...)
	h.httpAddr = flagValue(args, "--http-addr")
	h.mu.Unlock()
	h.cluster.log.Info("router started", "host", h.Name, "pid", p.PID)
	if err := h.WaitReady(ctx); err != nil {
		return err
	}
	return nil
}

// peerNameRE matches a peer name as `weave launch` prints it.
var peerNameRE = regexp.MustCompile(`\b[0-9a-f]{2}(?::[0-9a-f]{2}){5}\b`)

// Launch runs `weave launch --data-dir ... --nickname ... args...` in the host
// (the router detaches and keeps running) and returns what it printed,
// trimmed: the peer name. The detached router's pid is found by its
// namespace and recorded, so Kill, Stop and Close can end it.
func (h *Host) Launch(args ...string) (string, error) {
	bin, err := h.cluster.WeaveBinary()
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(h.dataDir, 0o755); err != nil {
		return "", fmt.Errorf("%s: create data dir: %w", h.Name, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), h.cluster.Opts.ReadyTimeout+10*time.Second)
	defer cancel()
	before, _ := h.PIDs()
	out, err := h.Output(ctx, append([]string{bin}, h.baseArgs("launch", args)...)...)
	if err != nil {
		return strings.TrimSpace(out), fmt.Errorf("%s: weave launch: %w", h.Name, err)
	}
	pid, err := h.findDaemon(bin, before)
	if err != nil {
		return strings.TrimSpace(out), err
	}
	h.mu.Lock()
	h.router, h.launched, h.viaLaunch = nil, pid, true
	h.args = append([]string(nil), args...)
	h.httpAddr = flagValue(args, "--http-addr")
	h.mu.Unlock()
	h.cluster.cleanup.Add(fmt.Sprintf("launched router %d", pid), func() error {
		return killPID(pid)
	})
	return strings.TrimSpace(out), nil
}

// findDaemon returns the weave process in the host namespace that was not
// there before launch.
func (h *Host) findDaemon(bin string, before []int) (int, error) {
	old := map[int]bool{}
	for _, p := range before {
		old[p] = true
	}
	pids, err := h.PIDs()
	if err != nil {
		return 0, err
	}
	var found []int
	for _, p := range pids {
		if old[p] {
			continue
		}
		exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", p))
		if err != nil {
			continue
		}
		if exe == bin || filepath.Base(exe) == filepath.Base(bin) {
			found = append(found, p)
		}
	}
	if len(found) != 1 {
		return 0, fmt.Errorf("%s: after weave launch, expected one new weave process in the namespace, found %v", h.Name, found)
	}
	return found[0], nil
}

func killPID(pid int) error {
	if processGone(pid) {
		return nil
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	if !waitGone([]int{pid}, 10*time.Second) {
		return fmt.Errorf("pid %d did not exit after SIGKILL", pid)
	}
	return nil
}

// RouterPID is the pid of the router the harness started (0 if none).
func (h *Host) RouterPID() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.router != nil {
		return h.router.PID
	}
	return h.launched
}

// RouterRunning reports whether the router the harness started is alive.
func (h *Host) RouterRunning() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.router != nil {
		return !h.router.Exited()
	}
	return h.launched != 0 && !processGone(h.launched)
}

// routerExitErr describes why the router is not running, or returns nil while it runs.
func (h *Host) routerExitErr() error {
	h.mu.Lock()
	p, pid := h.router, h.launched
	h.mu.Unlock()
	switch {
	case p != nil && p.Exited():
		return fmt.Errorf("%s: router exited: %v; log:\n%s", h.Name, p.Err(), Tail(h.RouterLog(), 40))
	case p == nil && pid != 0 && processGone(pid):
		return fmt.Errorf("%s: launched router (pid %d) exited; log:\n%s", h.Name, pid, Tail(h.RouterLog(), 40))
	case p == nil && pid == 0:
		return fmt.Errorf("%s: no router was started", h.Name)
	}
	return nil
}

// WaitReady polls `weave status --json` until the router says it is ready,
// failing early if the router process exits.
func (h *Host) WaitReady(ctx context.Context) error {
	err := Poll(ctx, "router "+h.Name+" ready", func(ctx context.Context) error {
		if err := h.routerExitErr(); err != nil {
			return Permanent(err)
		}
		st, err := h.StatusCtx(ctx)
		if err != nil {
			return err
		}
		if !st.Ready {
			return errors.New("status says not ready")
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("%w\nrouter log:\n%s", err, Tail(h.RouterLog(), 40))
	}
	return nil
}

// Kill ends the router with SIGKILL, by pid, and waits for it to go.
func (h *Host) Kill() error {
	h.mu.Lock()
	p, pid := h.router, h.launched
	h.mu.Unlock()
	if p != nil {
		return p.Kill()
	}
	if pid != 0 {
		return killPID(pid)
	}
	return fmt.Errorf("%s: no router was started", h.Name)
}

// Stop ends the router gracefully (SIGTERM) and waits up to 15s for it.
func (h *Host) Stop() error {
	h.mu.Lock()
	p, pid := h.router, h.launched
	h.mu.Unlock()
	switch {
	case p != nil:
		if p.Exited() {
			return nil
		}
		if err := p.Signal(syscall.SIGTERM); err != nil {
			return err
		}
		select {
		case <-p.Done():
			return nil
		case <-time.After(15 * time.Second):
			_ = p.Kill()
			return fmt.Errorf("%s: router did not exit within 15s of SIGTERM; killed", h.Name)
		}
	case pid != 0:
		if processGone(pid) {
			return nil
		}
		if err := syscall.Kill(pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
			return err
		}
		if !waitGone([]int{pid}, 15*time.Second) {
			_ = killPID(pid)
			return fmt.Errorf("%s: router did not exit within 15s of SIGTERM; killed", h.Name)
		}
		return nil
	}
	return fmt.Errorf("%s: no router was started", h.Name)
}

// WaitExit waits for the router process to exit, e.g. after `weave stop`.
func (h *Host) WaitExit(ctx context.Context) error {
	return Poll(ctx, "router "+h.Name+" to exit", func(context.Context) error {
		if h.RouterRunning() {
			return errors.New("still running")
		}
		return nil
	})
}

// Restart stops the router if it runs and starts it again the same way
// (StartRouter or Launch) with the same arguments and data dir.
func (h *Host) Restart() error {
	h.mu.Lock()
	args, viaLaunch, started := h.args, h.viaLaunch, h.router != nil || h.launched != 0
	h.mu.Unlock()
	if !started {
		return fmt.Errorf("%s: no router was started", h.Name)
	}
	if h.RouterRunning() {
		if err := h.Stop(); err != nil {
			return err
		}
	}
	if viaLaunch {
		_, err := h.Launch(args...)
		return err
	}
	return h.StartRouter(args...)
}

// RouterLog returns the router's output: the StartRouter log, or for a
// launched router the *.log files in its data dir.
func (h *Host) RouterLog() string {
	var b strings.Builder
	if data, err := os.ReadFile(h.RouterLogPath()); err == nil {
		b.Write(data)
	}
	logs, _ := filepath.Glob(filepath.Join(h.dataDir, "*.log"))
	for _, l := range logs {
		if data, err := os.ReadFile(l); err == nil {
			fmt.Fprintf(&b, "=== %s\n%s", l, data)
		}
	}
	return b.String()
}

func appendLog(path, s string) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	_, _ = f.WriteString(s)
}

// Weave runs the weave CLI in the host with args and returns its stdout; a
// failure's error carries stderr. It talks to the router on the --http-addr
// the router was started with.
func (h *Host) Weave(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), CLITimeout)
	defer cancel()
	return h.WeaveCtx(ctx, args...)
}

// WeaveCtx is Weave with a context.
func (h *Host) WeaveCtx(ctx context.Context, args ...string) (string, error) {
	bin, err := h.cluster.WeaveBinary()
	if err != nil {
		return "", err
	}
	h.mu.Lock()
	addr := h.httpAddr
	h.mu.Unlock()
	argv := append([]string{bin}, args...)
	if addr != "" && len(args) > 0 && args[0] != "router" && args[0] != "launch" && flagValue(args, "--http-addr") == "" {
		argv = append(argv, "--http-addr", addr)
	}
	return h.Output(ctx, argv...)
}

// WeaveJSON runs the weave CLI and decodes its stdout into v.
func (h *Host) WeaveJSON(ctx context.Context, v any, args ...string) error {
	out, err := h.WeaveCtx(ctx, args...)
	if err != nil {
		return err
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		return fmt.Errorf("%s: weave %s: decode output: %w: %q", h.Name, strings.Join(args, " "), err, Tail(out, 5))
	}
	return nil
}

// Status is `weave status --json`.
func (h *Host) Status() (api.Status, error) {
	ctx, cancel := context.WithTimeout(context.Background(), CLITimeout)
	defer cancel()
	return h.StatusCtx(ctx)
}

// StatusCtx is Status with a context.
func (h *Host) StatusCtx(ctx context.Context) (api.Status, error) {
	var st api.Status
	err := h.WeaveJSON(ctx, &st, "status", "--json")
	return st, err
}

// Peers is `weave status peers --json`.
func (h *Host) Peers() ([]api.Peer, error) {
	ctx, cancel := context.WithTimeout(context.Background(), CLITimeout)
	defer cancel()
	var ps []api.Peer
	err := h.WeaveJSON(ctx, &ps, "status", "peers", "--json")
	return ps, err
}

// Connections is `weave status connections --json`.
func (h *Host) Connections() ([]api.Connection, error) {
	ctx, cancel := context.WithTimeout(context.Background(), CLITimeout)
	defer cancel()
	var cs []api.Connection
	err := h.WeaveJSON(ctx, &cs, "status", "connections", "--json")
	return cs, err
}

// Endpoints is `weave ps --json`.
func (h *Host) Endpoints() ([]api.Endpoint, error) {
	ctx, cancel := context.WithTimeout(context.Background(), CLITimeout)
	defer cancel()
	var es []api.Endpoint
	err := h.WeaveJSON(ctx, &es, "ps", "--json")
	return es, err
}

// ConnectionTo returns this host's connection entry for the peer whose
// nickname is other's name (hosts are started with --nickname <host>).
func (h *Host) ConnectionTo(other *Host) (api.Connection, error) {
	cs, err := h.Connections()
	if err != nil {
		return api.Connection{}, err
	}
	for _, c := range cs {
		if c.Nickname == other.Name {
			return c, nil
		}
	}
	return api.Connection{}, fmt.Errorf("%s: no connection to %s in %+v", h.Name, other.Name, cs)
}

// AddContainer creates a container namespace on this host; attach it with
// Container.Attach.
func (h *Host) AddContainer(name string) (*Container, error) {
	cl := h.cluster
	cl.mu.Lock()
	if _, dup := cl.containers[name]; dup {
		cl.mu.Unlock()
		return nil, fmt.Errorf("container %q already exists", name)
	}
	cl.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ns, err := createNS(ctx, cl.Prefix+name, cl)
	if err != nil {
		return nil, err
	}
	c := &Container{NS: ns, Name: name, Host: h, seq: containerSeq.Add(1)}
	cl.mu.Lock()
	cl.containers[name] = c
	cl.mu.Unlock()
	return c, nil
}
