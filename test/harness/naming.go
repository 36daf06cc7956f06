package harness

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"sync/atomic"
	"syscall"
)

// runCounter numbers the prefixes one process hands out.
var runCounter atomic.Uint64

// NewPrefix returns a fresh name prefix "wv<pid>x<N>-": the pid says which
// process created the objects (so Sweep can tell a dead run's leftovers from
// a live run's), N keeps several clusters of one process apart.
func NewPrefix() string {
	return fmt.Sprintf("wv%dx%d-", os.Getpid(), runCounter.Add(1))
}

// prefixRE matches names created with a NewPrefix prefix.
var prefixRE = regexp.MustCompile(`^wv([0-9]+)x([0-9]+)-`)

// CreatorPID returns the pid encoded in a name made with a NewPrefix prefix.
func CreatorPID(name string) (int, bool) {
	m := prefixRE.FindStringSubmatch(name)
	if m == nil {
		return 0, false
	}
	pid, err := strconv.Atoi(m[1])
	if err != nil || pid <= 0 {
		return 0, false
	}
	return pid, true
}

// pidAlive reports whether a process with this pid exists. A reused pid
// counts as alive, which errs on the side of leaving things alone.
func pidAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// SweepReport lists what Sweep removed.
type SweepReport struct {
	Namespaces []string
	Links      []string
	Dirs       []string
	Killed     []int // processes that were still running inside a removed namespace
}

// etcNetnsDir holds per-namespace configuration files (resolv.conf) that
// ip netns exec bind-mounts over /etc.
const etcNetnsDir = "/etc/netns"

// Empty reports whether Sweep found nothing to remove.
func (r SweepReport) Empty() bool {
	return len(r.Namespaces)+len(r.Links)+len(r.Dirs)+len(r.Killed) == 0
}

// Sweep removes network namespaces, root-namespace links and temporary
// directories whose names carry a NewPrefix prefix of a process that is no
// longer alive. Processes still running inside such a namespace were put
// there by that dead run (nothing else enters these namespaces) and are
// killed so that the namespace really goes away. Leftover /etc/netns/NAME
// directories of such namespaces go too. Nothing else is touched.
func Sweep(log *slog.Logger) (SweepReport, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var rep SweepReport
	var errs []error
	dead := func(name string) bool {
		pid, ok := CreatorPID(name)
		return ok && pid != os.Getpid() && !pidAlive(pid)
	}

	entries, err := os.ReadDir(netnsDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, fmt.Errorf("list %s: %w", netnsDir, err))
	}
	for _, e := range entries {
		if !dead(e.Name()) {
			continue
		}
		killed, err := removeNamespace(e.Name(), 0)
		rep.Killed = append(rep.Killed, killed...)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		log.Info("swept namespace", "netns", e.Name())
		rep.Namespaces = append(rep.Namespaces, e.Name())
	}

	ifaces, err := net.Interfaces()
	if err != nil {
		errs = append(errs, fmt.Errorf("list links: %w", err))
	}
	for _, ifc := range ifaces {
		if !dead(ifc.Name) {
			continue
		}
		if out, err := exec.Command("ip", "link", "del", ifc.Name).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("delete link %s: %w: %s", ifc.Name, err, out))
			continue
		}
		log.Info("swept link", "link", ifc.Name)
		rep.Links = append(rep.Links, ifc.Name)
	}

	// Per-namespace files ip netns exec mounts (weaveDNS writes a
	// resolv.conf there for each named container namespace).
	etcDirs, err := os.ReadDir(etcNetnsDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, fmt.Errorf("list %s: %w", etcNetnsDir, err))
	}
	for _, d := range etcDirs {
		if !d.IsDir() || !dead(d.Name()) {
			continue
		}
		p := filepath.Join(etcNetnsDir, d.Name())
		if err := os.RemoveAll(p); err != nil {
			errs = append(errs, fmt.Errorf("remove %s: %w", p, err))
			continue
		}
		log.Info("swept directory", "dir", p)
		rep.Dirs = append(rep.Dirs, p)
	}

	tmp := os.TempDir()
	dirs, err := os.ReadDir(tmp)
	if err != nil {
		errs = append(errs, fmt.Errorf("list %s: %w", tmp, err))
	}
	for _, d := range dirs {
		if !d.IsDir() || !dead(d.Name()) {
			continue
		}
		p := filepath.Join(tmp, d.Name())
		if err := os.RemoveAll(p); err != nil {
			errs = append(errs, fmt.Errorf("remove %s: %w", p, err))
			continue
		}
		log.Info("swept directory", "dir", p)
		rep.Dirs = append(rep.Dirs, p)
	}
	return rep, errors.Join(errs...)
}
