package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"weavemesh.dev/weave/api"
)

// logFile is the file in the data directory a launched router writes to.
const logFile = "router.log"

// logTailLines is how much of the log launch shows when the router fails.
const logTailLines = 20

func (a *app) routerCmd() *cobra.Command {
	var f routerFlags
	cmd := &cobra.Command{
		Use:   "router [flags] [PEER...]",
		Short: "Run the router in the foreground (for systemd and containers)",
		Long: `Run the peer router in the foreground until SIGINT or SIGTERM, or until
weave stop. PEER is host or host:port (default port 6783) of a router to join.

Every flag can also be set in the environment as WEAVE_ and the flag's name
in capitals (WEAVE_IPALLOC_RANGE=10.40.0.0/16), or in a --config file, and
the peers as WEAVE_PEERS; the command line wins over the environment, which
wins over the file (docs/cli.md).`,
		Example: `  weave router --nickname web1 10.0.0.2 10.0.0.3:6783`,
		RunE: func(cmd *cobra.Command, peers []string) error {
			peers, err := a.layerSettings(cmd, peers)
			if err != nil {
				return err
			}
			f.httpToken = a.token()
			cfg, level, err := f.config(a.httpAddr, a.version, peers, a.getenv)
			if err != nil {
				return err
			}
			h, err := f.logHandler(a.stderr, level)
			if err != nil {
				return err
			}
			cfg.Logger = slog.New(h)
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return a.runRouter(ctx, cfg)
		},
	}
	f.register(cmd.Flags())
	registerConfig(cmd.Flags())
	return cmd
}

func (a *app) launchCmd() *cobra.Command {
	var f routerFlags
	cmd := &cobra.Command{
		Use:   "launch [flags] [PEER...]",
		Short: "Start the router in the background and wait until it is ready",
		Long: `Start the peer router in the background, wait until it is ready and print
its peer name. Its output goes to router.log in --data-dir. PEER is host or
host:port (default port 6783) of a router to join.

Every flag can also be set in the environment as WEAVE_ and the flag's name
in capitals (WEAVE_IPALLOC_RANGE=10.40.0.0/16), or in a --config file, and
the peers as WEAVE_PEERS; the command line wins over the environment, which
wins over the file (docs/cli.md).`,
		Example: `  weave launch 10.0.0.2 10.0.0.3
  weave launch --port 7783 --http-addr 127.0.0.1:7784 --data-dir /tmp/weave2`,
		RunE: func(cmd *cobra.Command, peers []string) error {
			peers, err := a.layerSettings(cmd, peers)
			if err != nil {
				return err
			}
			f.httpToken = a.token()
			return a.launch(cmd.Context(), &f, peers)
		},
	}
	f.register(cmd.Flags())
	cmd.Flags().DurationVar(&f.waitPeers, "wait-peers", 5*time.Second,
		"after start, show progress connecting to the PEERs for up to this long, then say why none is connected (0: do not wait); the router keeps trying either way")
	registerConfig(cmd.Flags())
	return cmd
}

func (a *app) launch(ctx context.Context, f *routerFlags, peers []string) error {
	cfg, _, err := f.config(a.httpAddr, a.version, peers, a.getenv)
	if err != nil {
		return err
	}
	c := a.client()
	defer c.CloseIdleConnections()
	if err := a.checkNoRouter(ctx, c); err != nil {
		return err
	}
	exe, err := a.executable()
	if err != nil {
		return fmt.Errorf("find the weave binary to start: %w", err)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("--data-dir: %w", err)
	}
	logPath := filepath.Join(cfg.DataDir, logFile)
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("open router log: %w", err)
	}
	defer logf.Close()
	// Where this run's output starts, so a failure shows only its own lines.
	logStart, err := logf.Seek(0, io.SeekEnd)
	if err != nil {
		return fmt.Errorf("open router log: %w", err)
	}

	spec := routerChild(exe, cfg, f, a.environ())
	if spec.Err != nil {
		return spec.Err
	}
	defer func() {
		for _, f := range spec.ExtraFiles {
			f.Close()
		}
	}()
	child := &exec.Cmd{
		Path:       spec.Path,
		Args:       spec.Args,
		Env:        spec.Env,
		Stdin:      nil, // /dev/null
		Stdout:     logf,
		Stderr:     logf,
		ExtraFiles: spec.ExtraFiles,
		// A session of its own: the router outlives this command and the
		// terminal's signals.
		SysProcAttr: &syscall.SysProcAttr{Setsid: true},
	}
	if err := child.Start(); err != nil {
		return fmt.Errorf("start router: %w", err)
	}
	// The router runs on after we exit; we never Wait for it but reap it
	// ourselves if it dies while we watch (see childExited).
	defer child.Process.Release()
	pid := child.Process.Pid

	st, err := a.waitReady(ctx, c, pid)
	if err != nil {
		var exitErr *childExitError
		if errors.As(err, &exitErr) {
			return fmt.Errorf("%w before it was ready%s", err, logTail(logPath, logStart))
		}
		return err
	}
	if len(peers) > 0 {
		a.waitPeers(ctx, c, peers, f.waitPeers)
	}
	fmt.Fprintln(a.stdout, st.Name)
	return nil
}

// waitPeers shows, on stderr, how the router connects to the peers it was
// given, until one connection is established or wait passes; then it says
// why none is, and leaves the router trying. The first host of a new mesh
// waits for nobody longer than that.
func (a *app) waitPeers(ctx context.Context, c *api.Client, peers []string, wait time.Duration) {
	if wait <= 0 {
		return
	}
	deadline := time.Now().Add(wait)
	tick := time.NewTicker(a.pollInterval)
	defer tick.Stop()
	last := ""
	for {
		cctx, cancel := context.WithTimeout(ctx, a.callTimeout)
		conns, err := c.Connections(cctx)
		cancel()
		var states []string
		for _, cn := range conns {
			if cn.State == "established" || cn.State == "relayed" {
				return
			}
			s := cn.Address + " " + cn.State
			if cn.Reason != "" {
				s += " (" + cn.Reason + ")"
			}
			states = append(states, s)
		}
		msg := fmt.Sprintf("waiting for peers %s: none connected yet", strings.Join(peers, " "))
		if len(states) > 0 {
			msg += ": " + strings.Join(states, ", ")
		}
		if err == nil && msg != last {
			fmt.Fprintf(a.stderr, "weave: %s\n", msg)
			last = msg
		}
		if time.Now().After(deadline) {
			why := "no peer answered"
			if len(states) > 0 {
				why = strings.Join(states, ", ")
			}
			fmt.Fprintf(a.stderr, "weave: no peer connected within %s (%s); the router keeps trying them: see weave status connections\n", wait, why)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// checkNoRouter fails if something already answers on the API address.
func (a *app) checkNoRouter(ctx context.Context, c *api.Client) error {
	cctx, cancel := context.WithTimeout(ctx, a.callTimeout)
	defer cancel()
	st, err := c.Status(cctx)
	switch {
	case err == nil:
		return fmt.Errorf("a router is already running on %s (peer %s); stop it with weave stop", c.Addr(), st.Name)
	case errors.Is(err, api.ErrNoRouter):
		return nil
	case errors.Is(err, api.ErrNotReady):
		return fmt.Errorf("a router is already running on %s (starting or stopping); stop it with weave stop", c.Addr())
	}
	return fmt.Errorf("something already answers on %s (%v); stop it or choose another --http-addr", c.Addr(), err)
}

// childExitError says the launched router exited.
type childExitError struct {
	pid    int
	status syscall.WaitStatus
}

func (e *childExitError) Error() string {
	if e.status.Signaled() {
		return fmt.Sprintf("router (pid %d) was killed by signal %v", e.pid, e.status.Signal())
	}
	return fmt.Sprintf("router (pid %d) exited with status %d", e.pid, e.status.ExitStatus())
}

// waitReady polls the API until the router says it is ready, the child
// exits, or the launch timeout passes.
func (a *app) waitReady(ctx context.Context, c *api.Client, pid int) (api.Status, error) {
	deadline := time.Now().Add(a.launchTimeout)
	tick := time.NewTicker(a.pollInterval)
	defer tick.Stop()
	var last error
	for {
		if err := childExited(pid); err != nil {
			return api.Status{}, err
		}
		cctx, cancel := context.WithTimeout(ctx, a.callTimeout)
		st, err := c.Status(cctx)
		cancel()
		if err == nil && st.Ready {
			return st, nil
		}
		last = err
		if time.Now().After(deadline) {
			why := "it is still starting"
			if last != nil {
				why = last.Error()
			}
			return api.Status{}, fmt.Errorf("router (pid %d) is not ready after %s (%s); it is still running: check weave status, its log in --data-dir, or stop it with weave stop",
				pid, a.launchTimeout, why)
		}
		select {
		case <-ctx.Done():
			return api.Status{}, fmt.Errorf("stopped waiting for the router (pid %d) to be ready: %w", pid, ctx.Err())
		case <-tick.C:
		}
	}
}

// childExited reaps pid without blocking and reports whether it exited.
func childExited(pid int) error {
	var ws syscall.WaitStatus
	for {
		got, err := syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil || got != pid {
			return nil // still running (or not ours to reap)
		}
		if ws.Exited() || ws.Signaled() {
			return &childExitError{pid: pid, status: ws}
		}
		return nil
	}
}

// logTail returns the last lines the router wrote to path from offset on,
// formatted to follow an error message.
func logTail(path string, offset int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	const maxRead = 64 << 10
	if st, err := f.Stat(); err == nil && st.Size()-offset > maxRead {
		offset = st.Size() - maxRead
	}
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return ""
	}
	data, err := io.ReadAll(io.LimitReader(f, maxRead))
	if err != nil {
		return ""
	}
	lines := strings.Split(string(bytes.TrimRight(data, "\n")), "\n")
	if len(lines) == 1 && lines[0] == "" {
		return "; " + path + " is empty"
	}
	if len(lines) > logTailLines {
		lines = lines[len(lines)-logTailLines:]
	}
	return "; last lines of " + path + ":\n    " + strings.Join(lines, "\n    ")
}

func (a *app) stopCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "stop",
		Short: "Stop the router and wait until it has left the mesh",
		Args:  argsExactly(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c := a.client()
			defer c.CloseIdleConnections()
			ctx := cmd.Context()
			if err := c.Stop(ctx); err != nil {
				if errors.Is(err, api.ErrNoRouter) {
					removeFastdpLeftover(a.stderr)
					a.removeStaleAPISocket(a.stderr)
				}
				return err
			}
			return a.waitStopped(ctx, c)
		},
	}
}

// waitStopped polls until nothing answers on the API address.
func (a *app) waitStopped(ctx context.Context, c *api.Client) error {
	deadline := time.Now().Add(a.stopTimeout)
	tick := time.NewTicker(a.pollInterval)
	defer tick.Stop()
	for {
		// Stale kept-alive connections would hide that the listener is gone.
		c.CloseIdleConnections()
		cctx, cancel := context.WithTimeout(ctx, a.callTimeout)
		_, err := c.Status(cctx)
		cancel()
		if errors.Is(err, api.ErrNoRouter) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the router on %s still answers %s after it was asked to stop; check its log (router.log in its --data-dir)",
				c.Addr(), a.stopTimeout)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("stopped waiting for the router to stop: %w", ctx.Err())
		case <-tick.C:
		}
	}
}
