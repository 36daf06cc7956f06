package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"weavemesh.dev/weave/test/harness"
)

// podman runs the podman CLI inside a simulated host's network namespace
// (nsenter, not ip netns exec: the namespaces podman makes must stay
// visible to the router), with storage, configuration and CNI directories
// of the test's own.
type podman struct {
	host *harness.Host
	dir  string
	conf string // CONTAINERS_CONF
}

func (p *podman) run(ctx context.Context, args ...string) (string, error) {
	argv := append([]string{"--net=" + p.host.Path(), "podman", "--root", filepath.Join(p.dir, "root"),
		"--runroot", filepath.Join(p.dir, "runroot"), "--storage-driver", "vfs"}, args...)
	cmd := exec.CommandContext(ctx, "nsenter", argv...)
	cmd.Env = append(os.Environ(), "CONTAINERS_CONF="+p.conf)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("podman %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return strings.TrimSpace(out.String()), nil
}

// unmountUnder unmounts whatever podman left mounted below dir, deepest
// first, so the directory can be removed.
func unmountUnder(dir string) {
	f, err := os.Open("/proc/self/mounts")
	if err != nil {
		return
	}
	defer f.Close()
	var mnts []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) > 1 && strings.HasPrefix(fields[1], dir+"/") {
			mnts = append(mnts, fields[1])
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(mnts)))
	for _, m := range mnts {
		syscall.Unmount(m, syscall.MNT_DETACH)
	}
}

// TestPodman runs a Podman container (CNI backend, a network of type
// weave-net) on one simulated host, which pings by weaveDNS name a
// namespace attached on the other; removing the container detaches it.
func TestPodman(t *testing.T) {
	harness.RequireRoot(t)
	if _, err := exec.LookPath("podman"); err != nil {
		t.Skip("skipped: no podman on this machine (Debian: apt-get install podman)")
	}
	needStaticBusybox(t)
	// Podman keeps a blob cache in /var/lib/containers whatever --root
	// says; remove it afterwards if this test is what made it.
	if _, err := os.Stat("/var/lib/containers"); os.IsNotExist(err) {
		t.Cleanup(func() { os.RemoveAll("/var/lib/containers") })
	}
	cl := startMesh(t, harness.Options{Hosts: 2}, 0).cl
	ctx := ctxFor(t, 3*time.Minute)
	far, err := cl.Host(2).AddContainer("far2")
	if err != nil {
		t.Fatal(err)
	}
	if err := far.AttachArgs("--name", "far2"); err != nil {
		t.Fatal(err)
	}

	bin, err := harness.Build("./cmd/weave-net")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	t.Cleanup(func() { unmountUnder(dir) })
	netName := fmt.Sprintf("%s%d", dockerPrefix, os.Getpid())
	cniDir := filepath.Join(dir, "cni")
	if err := os.MkdirAll(cniDir, 0o755); err != nil {
		t.Fatal(err)
	}
	conflist := fmt.Sprintf(`{"cniVersion": "1.0.0", "name": %q, "plugins": [{"type": "weave-net", "dataDir": %q}]}`,
		netName, filepath.Join(dir, "weave-net"))
	if err := os.WriteFile(filepath.Join(cniDir, netName+".conflist"), []byte(conflist), 0o644); err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf(`[containers]
default_ulimits = ["nofile=20000:20000", "nproc=30000:30000"]
[network]
network_backend = "cni"
network_config_dir = %q
cni_plugin_dirs = [%q]
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
`, cniDir, filepath.Dir(bin))
	p := &podman{host: cl.Host(1), dir: dir, conf: filepath.Join(dir, "containers.conf")}
	if err := os.WriteFile(p.conf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	tarPath := filepath.Join(dir, "rootfs.tar")
	if err := os.WriteFile(tarPath, busyboxRootfs(t), 0o644); err != nil {
		t.Fatal(err)
	}
	img := netName + "-img"
	if _, err := p.run(ctx, "import", tarPath, img); err != nil {
		t.Fatal(err)
	}
	ctr := netName + "-p1"
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		p.run(ctx, "rm", "-f", "-t", "0", ctr)
		p.run(ctx, "rmi", "-f", img)
	})
	if _, err := p.run(ctx, "run", "-d", "--name", ctr, "--network", netName, "--dns", "127.0.0.153", "--dns-search", "weave.local",
		img, "/bin/sleep", "600"); err != nil {
		cl.LogRouters(t)
		t.Fatal(err)
	}
	eps, err := cl.Host(1).Endpoints()
	if err != nil || len(eps) != 1 || eps[0].Iface != "eth0" {
		t.Fatalf("host1 endpoints %+v, %v; want the podman container's eth0", eps, err)
	}
	if err := harness.PollFor(pingTimeout, "the podman container pings far2 by name", func(ctx context.Context) error {
		_, err := p.run(ctx, "exec", ctr, "/bin/ping", "-c", "1", "-W", "2", "far2")
		return err
	}); err != nil {
		cl.LogRouters(t)
		t.Fatal(err)
	}
	if _, err := p.run(ctx, "rm", "-f", "-t", "0", ctr); err != nil {
		t.Fatal(err)
	}
	if eps, err := cl.Host(1).Endpoints(); err != nil || len(eps) != 0 {
		t.Errorf("host1 endpoints after podman rm: %+v, %v; want none", eps, err)
	}
}
