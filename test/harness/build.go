package harness

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
)

// build state of this process: each package is built at most once.
var builds struct {
	mu   sync.Mutex // guards dir, once
	dir  string
	once map[string]*buildResult
}

type buildResult struct {
	once sync.Once
	path string
	err  error
}

// ModuleRoot finds the directory holding go.mod, starting from this source
// file (tests and `go run` keep it) and falling back to the working directory.
func ModuleRoot() (string, error) {
	var starts []string
	if _, file, _, ok := runtime.Caller(0); ok {
		starts = append(starts, filepath.Dir(file))
	}
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	for _, d := range starts {
		for {
			if b, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil && strings.Contains(string(b), "module weavemesh.dev/weave") {
				return d, nil
			}
			parent := filepath.Dir(d)
			if parent == d {
				break
			}
			d = parent
		}
	}
	return "", errors.New("cannot find the weave module root (go.mod); run from inside the source tree")
}

// goTool finds the go command, also when /usr/local/go/bin is not on PATH.
func goTool() (string, error) {
	if p, err := exec.LookPath("go"); err == nil {
		return p, nil
	}
	if _, err := os.Stat("/usr/local/go/bin/go"); err == nil {
		return "/usr/local/go/bin/go", nil
	}
	return "", errors.New("go command not found; put /usr/local/go/bin on PATH")
}

// BuildTo builds the package pkg of the module (e.g. "./cmd/weave") into out.
func BuildTo(pkg, out string) error {
	root, err := ModuleRoot()
	if err != nil {
		return err
	}
	gobin, err := goTool()
	if err != nil {
		return err
	}
	cmd := exec.Command(gobin, "build", "-o", out, pkg)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
	}
	return nil
}

// Build builds pkg once per process into a directory named after this
// process (so Sweep removes it once the process is gone) and returns the
// binary's path.
func Build(pkg string) (string, error) {
	builds.mu.Lock()
	if builds.once == nil {
		builds.once = map[string]*buildResult{}
	}
	r := builds.once[pkg]
	if r == nil {
		r = &buildResult{}
		builds.once[pkg] = r
	}
	if builds.dir == "" {
		d := filepath.Join(os.TempDir(), fmt.Sprintf("wv%dx0-bin", os.Getpid()))
		if err := os.MkdirAll(d, 0o755); err != nil {
			builds.mu.Unlock()
			return "", fmt.Errorf("create build dir: %w", err)
		}
		builds.dir = d
	}
	dir := builds.dir
	builds.mu.Unlock()

	r.once.Do(func() {
		out := filepath.Join(dir, filepath.Base(pkg))
		r.err = BuildTo(pkg, out)
		if r.err == nil {
			r.path = out
		}
	})
	return r.path, r.err
}

// BuildWeave builds ./cmd/weave once per process.
func BuildWeave() (string, error) { return Build("./cmd/weave") }

// BuildTool builds the traffic helper program (./test/harness/wvtool) once per
// process: TCP sink and sender with SHA-256, UDP broadcast, raw ARP, and a
// frame counter.
func BuildTool() (string, error) { return Build("./test/harness/wvtool") }

// RemoveBuilds deletes this process's build directory.
func RemoveBuilds() error {
	builds.mu.Lock()
	defer builds.mu.Unlock()
	if builds.dir == "" {
		return nil
	}
	err := os.RemoveAll(builds.dir)
	builds.dir = ""
	builds.once = nil
	return err
}

// clusterTools are the commands every cluster runs.
var clusterTools = []string{"ip", "nft", "ping"}

// CheckTools reports the first command a cluster needs that is not
// installed, naming the script that installs it.
func CheckTools() error {
	for _, c := range clusterTools {
		if _, err := exec.LookPath(c); err != nil {
			return fmt.Errorf("%s is not installed (%w); scripts/deps.sh installs what the tests need", c, err)
		}
	}
	return nil
}
