package chaos

import (
	"bufio"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"weavemesh.dev/weave/test/harness"
)

// weaveBin and toolBin are built once for the whole run; buildErr says why
// there are none.
var (
	weaveBin, toolBin string
	buildErr          error
)

func TestMain(m *testing.M) {
	if os.Geteuid() == 0 {
		// The data-dir tmpfs mounts of a crashed run first: Sweep cannot
		// remove a directory something is mounted on.
		for _, m := range unmountDead() {
			fmt.Fprintln(os.Stderr, "chaos: unmounted a leftover of an earlier run:", m)
		}
		if rep, err := harness.Sweep(slog.Default()); err != nil {
			fmt.Fprintln(os.Stderr, "chaos: sweeping leftovers of earlier runs:", err)
		} else if !rep.Empty() {
			fmt.Fprintf(os.Stderr, "chaos: removed leftovers of earlier runs: %+v\n", rep)
		}
		buildErr = harness.CheckTools()
		if buildErr == nil {
			weaveBin, buildErr = harness.BuildWeave()
		}
		if buildErr == nil {
			toolBin, buildErr = harness.BuildTool()
		}
	} else {
		fmt.Fprintln(os.Stderr, "chaos: not root: every test will skip (they need network namespaces)")
	}
	code := m.Run()
	if err := harness.RemoveBuilds(); err != nil {
		fmt.Fprintln(os.Stderr, "chaos: remove builds:", err)
	}
	os.Exit(code)
}

// unmountDead lazily unmounts the tmpfs mounts under the temporary
// directory that a cluster of a process now gone put on its data dirs
// (<TempDir>/wv<pid>x<n>-run/hostN), and returns them.
func unmountDead() []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	tmp := filepath.Clean(os.TempDir()) + "/"
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// ID parent major:minor root mountpoint options ... - fstype source
		fields := strings.Fields(sc.Text())
		sep := slices.Index(fields, "-")
		if len(fields) < 5 || sep < 0 || sep+1 >= len(fields) || fields[sep+1] != "tmpfs" {
			continue
		}
		mp := fields[4]
		rest, ok := strings.CutPrefix(mp, tmp)
		if !ok {
			continue
		}
		pid, ok := harness.CreatorPID(rest)
		if !ok || syscall.Kill(pid, 0) == nil || pid == os.Getpid() {
			continue
		}
		if syscall.Unmount(mp, syscall.MNT_DETACH) == nil {
			out = append(out, mp)
		}
	}
	return out
}
