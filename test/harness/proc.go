package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// Proc is a background process the harness started and owns.
type Proc struct {
	Argv    []string
	PID     int
	LogPath string // stdout and stderr, appended

	cmd  *exec.Cmd
	done chan struct{} // closed once the process was reaped
	err  error         // exit error; written before done is closed
}

func startProc(cmd *exec.Cmd, logPath string, argv []string) (*Proc, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open log: %w", err)
	}
	cmd.Stdout = f
	cmd.Stderr = f
	// Its own process group, so that a terminal's Ctrl-C reaches the program
	// that owns the cluster, which then cleans up in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", strings.Join(argv, " "), err)
	}
	p := &Proc{Argv: argv, PID: cmd.Process.Pid, LogPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Err is the exit error once the process has exited (nil for exit status 0).
func (p *Proc) Err() error {
	<-p.done
	return p.err
}

// Wait waits for the process to exit or ctx to end.
func (p *Proc) Wait(ctx context.Context) error {
	select {
	case <-p.done:
		return p.err
	case <-ctx.Done():
		return fmt.Errorf("waiting for %s (pid %d): %w", p.Argv[0], p.PID, ctx.Err())
	}
}

// Signal sends sig to the process unless it has exited.
func (p *Proc) Signal(sig syscall.Signal) error {
	if p.Exited() {
		return nil
	}
	if err := syscall.Kill(p.PID, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal %v to pid %d: %w", sig, p.PID, err)
	}
	return nil
}

// Kill sends SIGKILL and waits for the process to be reaped.
func (p *Proc) Kill() error {
	if err := p.Signal(syscall.SIGKILL); err != nil {
		return err
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("pid %d did not exit after SIGKILL", p.PID)
	}
}

// Stop sends SIGTERM, waits up to grace, then kills. It reports an error only
// when the process could not be ended; a non-zero exit status is not one.
func (p *Proc) Stop(grace time.Duration) error {
	if p.Exited() {
		return nil
	}
	if err := p.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(grace):
		return p.Kill()
	}
}

// Log returns what the process wrote so far.
func (p *Proc) Log() string {
	b, err := os.ReadFile(p.LogPath)
	if err != nil {
		return fmt.Sprintf("(log %s unreadable: %v)", p.LogPath, err)
	}
	return string(b)
}

// WaitLog polls the log until it contains substr, the process exits, or ctx
// ends.
func (p *Proc) WaitLog(ctx context.Context, substr string) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		if strings.Contains(p.Log(), substr) {
			return nil
		}
		select {
		case <-p.done:
			if strings.Contains(p.Log(), substr) {
				return nil
			}
			return fmt.Errorf("%s exited (%v) before printing %q; log:\n%s", p.Argv[0], p.err, substr, Tail(p.Log(), 40))
		case <-ctx.Done():
			return fmt.Errorf("%s did not print %q: %w; log:\n%s", p.Argv[0], substr, ctx.Err(), Tail(p.Log(), 40))
		case <-t.C:
		}
	}
}

// LastJSON decodes the last line of the log that starts with '{' into v;
// helper programs print their result that way.
func (p *Proc) LastJSON(v any) error {
	lines := strings.Split(p.Log(), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		l := strings.TrimSpace(lines[i])
		if strings.HasPrefix(l, "{") {
			return json.Unmarshal([]byte(l), v)
		}
	}
	return fmt.Errorf("%s printed no JSON result; log:\n%s", p.Argv[0], Tail(p.Log(), 40))
}

// Tail returns the last n lines of s.
func Tail(s string, n int) string {
	s = strings.TrimRight(s, "\n")
	idx := len(s)
	for i := 0; i < n; i++ {
		j := strings.LastIndexByte(s[:idx], '\n')
		if j < 0 {
			return s
		}
		idx = j
	}
	return string(bytes.TrimLeft([]byte(s[idx:]), "\n"))
}
