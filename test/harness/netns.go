package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// netnsDir is where iproute2 keeps named network namespaces.
const netnsDir = "/var/run/netns"

// NS is a named network namespace the harness created. Commands run in it
// through `ip netns exec`, which also gives them a /sys of the namespace.
type NS struct {
	Name  string
	owner *Cluster // registers started processes for cleanup; nil for stand-alone use
}

// Path is the namespace's file, as `weave attach` and setns(2) accept it.
func (n *NS) Path() string { return filepath.Join(netnsDir, n.Name) }

// ExecError is a command that failed inside a namespace.
type ExecError struct {
	Netns    string
	Argv     []string
	ExitCode int    // -1 when the command did not run or was killed
	Output   string // stderr, or the combined output for Exec
	Err      error
}

func (e *ExecError) Error() string {
	out := strings.TrimSpace(e.Output)
	if len(out) > 2000 {
		out = "..." + out[len(out)-2000:]
	}
	return fmt.Sprintf("in netns %s: %s: %v: %s", e.Netns, strings.Join(e.Argv, " "), e.Err, out)
}

func (e *ExecError) Unwrap() error { return e.Err }

func (n *NS) command(ctx context.Context, argv []string) *exec.Cmd {
	args := append([]string{"netns", "exec", n.Name}, argv...)
	cmd := exec.CommandContext(ctx, "ip", args...)
	// A killed command must not leave the caller waiting on pipes that a
	// grandchild still holds.
	cmd.WaitDelay = 2 * time.Second
	return cmd
}

func (n *NS) run(ctx context.Context, stdin io.Reader, combined bool, argv []string) (string, error) {
	if len(argv) == 0 {
		return "", errors.New("exec: empty command")
	}
	cmd := n.command(ctx, argv)
	cmd.Stdin = stdin
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	if combined {
		cmd.Stderr = &stdout
	} else {
		cmd.Stderr = &stderr
	}
	err := cmd.Run()
	if err != nil {
		code := -1
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		}
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", err, ctx.Err())
		}
		out := stderr.String()
		if combined {
			out = stdout.String()
		}
		return stdout.String(), &ExecError{Netns: n.Name, Argv: argv, ExitCode: code, Output: out, Err: err}
	}
	return stdout.String(), nil
}

// Exec runs argv in the namespace and returns its combined stdout and
// stderr. A non-zero exit is an *ExecError; the output is returned as well.
func (n *NS) Exec(ctx context.Context, argv ...string) (string, error) {
	return n.run(ctx, nil, true, argv)
}

// Output runs argv in the namespace and returns its stdout; stderr goes into
// the *ExecError when the command fails.
func (n *NS) Output(ctx context.Context, argv ...string) (string, error) {
	return n.run(ctx, nil, false, argv)
}

// ExecInput is Exec with stdin.
func (n *NS) ExecInput(ctx context.Context, stdin io.Reader, argv ...string) (string, error) {
	return n.run(ctx, stdin, true, argv)
}

// Start runs argv in the namespace in the background, stdout and stderr
// appended to logPath. The process is owned by the cluster: Close kills it if
// it is still running.
func (n *NS) Start(logPath string, argv ...string) (*Proc, error) {
	p, err := startProc(n.command(context.Background(), argv), logPath, argv)
	if err != nil {
		return nil, fmt.Errorf("in netns %s: %w", n.Name, err)
	}
	if n.owner != nil {
		n.owner.cleanup.Add("process "+strconv.Itoa(p.PID), func() error {
			return p.Stop(5 * time.Second)
		})
	}
	// Return only once the process is inside the namespace (ip has called
	// setns), so that whoever removes the namespace finds it there.
	if ino, err := n.Inode(); err == nil {
		want := fmt.Sprintf("net:[%d]", ino)
		deadline := time.Now().Add(5 * time.Second)
		for !p.Exited() && time.Now().Before(deadline) {
			if link, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", p.PID)); link == want {
				break
			}
			time.Sleep(time.Millisecond)
		}
	}
	return p, nil
}

// Inode identifies the namespace; processes inside it show the same inode in
// /proc/PID/ns/net.
func (n *NS) Inode() (uint64, error) { return nsInode(n.Name) }

// PIDs lists the processes whose network namespace is this one.
func (n *NS) PIDs() ([]int, error) {
	ino, err := n.Inode()
	if err != nil {
		return nil, err
	}
	return pidsInNetns(ino), nil
}

func nsInode(name string) (uint64, error) {
	var st syscall.Stat_t
	p := filepath.Join(netnsDir, name)
	if err := syscall.Stat(p, &st); err != nil {
		return 0, fmt.Errorf("stat %s: %w", p, err)
	}
	return st.Ino, nil
}

// pidsInNetns scans /proc for processes living in the namespace with this
// inode. Processes that vanish during the scan are skipped.
func pidsInNetns(ino uint64) []int {
	want := fmt.Sprintf("net:[%d]", ino)
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		link, err := os.Readlink(filepath.Join("/proc", e.Name(), "ns", "net"))
		if err != nil || link != want {
			continue
		}
		if procState(pid) == 'Z' {
			continue // already dead, waiting for its parent
		}
		pids = append(pids, pid)
	}
	return pids
}

// procState returns the state letter of /proc/PID/stat, or 0 when the
// process does not exist.
func procState(pid int) byte {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return 0
	}
	return b[i+2]
}

// processGone reports whether pid has exited (or is a zombie).
func processGone(pid int) bool {
	s := procState(pid)
	return s == 0 || s == 'Z' || s == 'X'
}

// waitGone polls until every pid has exited or the timeout passes.
func waitGone(pids []int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		alive := false
		for _, p := range pids {
			if !processGone(p) {
				alive = true
				break
			}
		}
		if !alive {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func createNS(ctx context.Context, name string, owner *Cluster) (*NS, error) {
	if out, err := exec.CommandContext(ctx, "ip", "netns", "add", name).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("create netns %s: %w: %s", name, err, bytes.TrimSpace(out))
	}
	n := &NS{Name: name, owner: owner}
	if owner != nil {
		owner.cleanup.Add("netns "+name, func() error {
			_, err := removeNamespace(name, 0)
			return err
		})
	}
	if out, err := exec.CommandContext(ctx, "ip", "-n", name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		return n, fmt.Errorf("netns %s: set lo up: %w: %s", name, err, bytes.TrimSpace(out))
	}
	return n, nil
}

// removeNamespace ends the processes still inside the namespace (SIGTERM,
// then SIGKILL after grace; a zero grace kills at once), then deletes it.
// A namespace that does not exist is not an error.
func removeNamespace(name string, grace time.Duration) (killed []int, err error) {
	ino, err := nsInode(name)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err == nil {
		pids := pidsInNetns(ino)
		if len(pids) > 0 && grace > 0 {
			for _, p := range pids {
				_ = syscall.Kill(p, syscall.SIGTERM)
			}
			waitGone(pids, grace)
		}
		for _, p := range pids {
			if !processGone(p) {
				_ = syscall.Kill(p, syscall.SIGKILL)
				killed = append(killed, p)
			}
		}
		if !waitGone(pids, 10*time.Second) {
			return killed, fmt.Errorf("netns %s: processes %v did not exit after SIGKILL", name, pids)
		}
	}
	out, err := exec.Command("ip", "netns", "del", name).CombinedOutput()
	if err != nil {
		if _, serr := os.Stat(filepath.Join(netnsDir, name)); errors.Is(serr, os.ErrNotExist) {
			return killed, nil
		}
		return killed, fmt.Errorf("delete netns %s: %w: %s", name, err, bytes.TrimSpace(out))
	}
	return killed, nil
}

// RemovePrefixed removes every namespace whose name starts with prefix,
// giving the processes inside grace to exit on SIGTERM first, and the
// directory dir when it is not empty. It is how a cluster left running on
// purpose (Cluster.Keep) is taken down later, by a process that did not
// create it.
func RemovePrefixed(prefix string, grace time.Duration, dir string) ([]string, error) {
	if prefix == "" {
		return nil, errors.New("RemovePrefixed: empty prefix")
	}
	entries, err := os.ReadDir(netnsDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("list %s: %w", netnsDir, err)
	}
	// Stop processes in every namespace first, hosts before they notice
	// their peers vanish, then delete.
	var names []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) {
			names = append(names, e.Name())
		}
	}
	var pids []int
	for _, name := range names {
		if ino, err := nsInode(name); err == nil {
			for _, p := range pidsInNetns(ino) {
				_ = syscall.Kill(p, syscall.SIGTERM)
				pids = append(pids, p)
			}
		}
	}
	waitGone(pids, grace)
	var errs []error
	for _, name := range names {
		if _, err := removeNamespace(name, 0); err != nil {
			errs = append(errs, err)
		}
	}
	if dir != "" {
		if err := os.RemoveAll(dir); err != nil {
			errs = append(errs, err)
		}
	}
	return names, errors.Join(errs...)
}
