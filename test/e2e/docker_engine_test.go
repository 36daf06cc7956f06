package e2e

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"weavemesh.dev/weave/api"
	"weavemesh.dev/weave/plugin/docker"
	"weavemesh.dev/weave/test/harness"
)

// dockerPrefix starts the name of everything the Docker tests make: the
// plugin, the image, networks, containers. The creating process's pid
// follows, so a later run can remove what a crashed one left.
const dockerPrefix = "wvtest"

// busyboxPath is Debian's busybox-static, the image's only binary.
const busyboxPath = "/bin/busybox"

// dockerCmd runs the docker CLI and returns its trimmed output.
func dockerCmd(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "docker", args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("docker %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return strings.TrimSpace(out.String()), nil
}

// needDocker skips unless a Docker engine answers and the root namespace
// is free for a router of the test's own.
func needDocker(t *testing.T) {
	t.Helper()
	harness.RequireRoot(t)
	if buildErr != nil {
		t.Fatalf("cannot run the programs under test: %v", buildErr)
	}
	if _, err := exec.LookPath("docker"); err != nil {
		t.Skip("skipped: no docker CLI on this machine")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if _, err := dockerCmd(ctx, "info", "--format", "{{.ServerVersion}}"); err != nil {
		t.Skipf("skipped: no Docker engine answers: %v", err)
	}
	if _, err := netlink.LinkByName("weave"); err == nil {
		t.Skip("skipped: a link named weave exists in the root namespace (a router runs on this host); the test needs the root namespace for a router of its own")
	}
	needStaticBusybox(t)
	if _, err := os.Stat(filepath.Dir(docker.DefaultSocket)); err != nil {
		t.Skipf("skipped: Docker's plugin directory: %v", err)
	}
}

// needStaticBusybox skips unless busyboxPath is a static binary, the only
// file of the test image.
func needStaticBusybox(t *testing.T) {
	t.Helper()
	f, err := elf.Open(busyboxPath)
	if err != nil {
		t.Skipf("skipped: the test image is made from Debian's busybox-static (apt-get install busybox-static): %v", err)
	}
	defer f.Close()
	if f.Section(".interp") != nil {
		t.Skipf("skipped: %s is dynamically linked; the test image needs Debian's busybox-static", busyboxPath)
	}
}

// sweepDocker removes what earlier runs whose process is gone left: their
// containers, networks, images and plugin sockets.
func sweepDocker(ctx context.Context, t *testing.T) {
	dead := func(name string) bool {
		rest, ok := strings.CutPrefix(strings.TrimPrefix(name, "/"), dockerPrefix)
		if !ok {
			return false
		}
		digits := rest
		if i := strings.IndexAny(rest, "-.:"); i >= 0 {
			digits = rest[:i]
		}
		pid, err := strconv.Atoi(digits)
		return err == nil && pid != os.Getpid() && syscall.Kill(pid, 0) == syscall.ESRCH
	}
	list := func(args ...string) []string {
		out, _ := dockerCmd(ctx, args...)
		return strings.Fields(out)
	}
	for _, n := range list("ps", "-a", "--format", "{{.Names}}") {
		if dead(n) {
			dockerCmd(ctx, "rm", "-f", n)
		}
	}
	for _, n := range list("network", "ls", "--format", "{{.Name}}") {
		if dead(n) {
			dockerCmd(ctx, "network", "rm", n)
		}
	}
	for _, n := range list("images", "--format", "{{.Repository}}") {
		if dead(n) {
			dockerCmd(ctx, "rmi", "-f", n)
		}
	}
	if ents, err := os.ReadDir("/var/run/netns"); err == nil {
		for _, e := range ents {
			if dead(e.Name()) {
				harness.RemovePrefixed(e.Name(), 2*time.Second, "")
			}
		}
	}
	socks, _ := filepath.Glob(filepath.Join(filepath.Dir(docker.DefaultSocket), dockerPrefix+"*.sock"))
	for _, s := range socks {
		if dead(filepath.Base(s)) {
			os.Remove(s)
		}
	}
}

// busyboxRootfs is a tar of a root filesystem holding busybox and the
// applets the test runs.
func busyboxRootfs(t *testing.T) []byte {
	t.Helper()
	bb, err := os.ReadFile(busyboxPath)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(h *tar.Header, body []byte) {
		h.ModTime = time.Unix(0, 0)
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(body); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"bin/", "etc/", "proc/", "sys/", "dev/", "tmp/"} {
		add(&tar.Header{Name: d, Typeflag: tar.TypeDir, Mode: 0o755}, nil)
	}
	add(&tar.Header{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(bb))}, bb)
	for _, applet := range []string{"sh", "ping", "sleep", "ip", "cat", "nslookup"} {
		add(&tar.Header{Name: "bin/" + applet, Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777}, nil)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// freePort returns a TCP and UDP port free on loopback now.
func freePort(t *testing.T) int {
	t.Helper()
	for range 20 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if pc, err := net.ListenPacket("udp", fmt.Sprintf("0.0.0.0:%d", port)); err == nil {
			pc.Close()
			if pc2, err := net.ListenPacket("udp", fmt.Sprintf("0.0.0.0:%d", port+1)); err == nil {
				pc2.Close()
				return port
			}
		}
	}
	t.Fatal("no free port pair")
	return 0
}

// rootRouter is a router the test runs in the root namespace, with its
// own ports, data dir, allocation range and plugin name.
type rootRouter struct {
	cmd      *exec.Cmd
	args     []string
	logf     *os.File
	port     int // gossip; data is port+1
	httpAddr string
	plugin   string // plugin and driver name
	log      string
}

// startRootRouter starts the root namespace's router on gossip port port
// (data port+1), advertising advertise to its peers.
func startRootRouter(t *testing.T, name, ipRange string, port int, advertise string) *rootRouter {
	t.Helper()
	dir := t.TempDir()
	httpPort, dnsPort := freePort(t), freePort(t)
	r := &rootRouter{port: port, httpAddr: fmt.Sprintf("127.0.0.1:%d", httpPort), plugin: name, log: filepath.Join(dir, "router.log")}
	var err error
	if r.logf, err = os.Create(r.log); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.logf.Close() })
	r.args = []string{"router", "--data-dir", filepath.Join(dir, "data"), "--nickname", name,
		"--port", strconv.Itoa(port), "--http-addr", r.httpAddr, "--dns-listen-address", fmt.Sprintf("127.0.0.1:%d", dnsPort),
		"--ipalloc-range", ipRange, "--advertise-addr", advertise, "--plugin-socket", filepath.Join(filepath.Dir(docker.DefaultSocket), name+".sock")}
	// Registered before the Docker objects' cleanups, so it runs after
	// them: Docker needs the plugin to remove its network.
	t.Cleanup(func() {
		r.stop()
		// The bridge and TAP outlive a router; the test made them.
		for _, n := range []string{"weave-tap", "weave"} {
			if l, err := netlink.LinkByName(n); err == nil {
				netlink.LinkDel(l)
			}
		}
		if t.Failed() {
			b, _ := os.ReadFile(r.log)
			t.Logf("router log:\n%s", b)
		}
	})
	r.start(t)
	return r
}

// start runs the router and waits until it is ready.
func (r *rootRouter) start(t *testing.T) {
	t.Helper()
	r.cmd = exec.Command(weaveBin, r.args...)
	r.cmd.Stdout, r.cmd.Stderr = r.logf, r.logf
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if err := harness.PollFor(30*time.Second, "router ready", func(ctx context.Context) error {
		var st api.Status
		if err := r.weaveJSON(ctx, &st, "status"); err != nil {
			return err
		}
		if !st.Ready {
			return errors.New("not ready")
		}
		return nil
	}); err != nil {
		b, _ := os.ReadFile(r.log)
		t.Fatalf("%v\nrouter log:\n%s", err, b)
	}
}

// stop ends the router it started (SIGTERM, SIGKILL after 15 s).
func (r *rootRouter) stop() {
	if r.cmd == nil {
		return
	}
	r.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { r.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		r.cmd.Process.Kill()
		<-done
	}
	r.cmd = nil
}

func (r *rootRouter) weaveJSON(ctx context.Context, v any, args ...string) error {
	cmd := exec.CommandContext(ctx, weaveBin, append(args, "--json", "--http-addr", r.httpAddr)...)
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("weave %s: %w", strings.Join(args, " "), err)
	}
	return json.Unmarshal(out, v)
}

// dockerAllocs lists the addresses IPAM holds for Docker pools.
func (r *rootRouter) dockerAllocs(ctx context.Context, t *testing.T) []string {
	t.Helper()
	var st api.IPAMStatus
	if err := r.weaveJSON(ctx, &st, "status", "ipam"); err != nil {
		t.Fatal(err)
	}
	return dockerOwned(st)
}

// farHost is a second simulated host for the Docker test: a namespace
// joined to the root namespace by a veth on a private /30, running a
// router that joins the root namespace's, with one namespace attached by
// name.
type farHost struct {
	ns, ctr  string // namespace names
	httpAddr string
	log      string // the far router's
	addr     string // the far container's overlay address
}

// Addresses of the private link between the root namespace and the far
// host.
const (
	farRootIP = "192.168.251.1"
	farHostIP = "192.168.251.2"
)

// startFarHost makes the far host and starts its router, which joins the
// root namespace's at rootPort.
func startFarHost(ctx context.Context, t *testing.T, name string, rootPort int) *farHost {
	t.Helper()
	f := &farHost{ns: name + "-h2", ctr: name + "-far", httpAddr: "127.0.0.1:6784"}
	t.Cleanup(func() {
		if _, err := harness.RemovePrefixed(name+"-", 5*time.Second, ""); err != nil {
			t.Errorf("remove the far host: %v", err)
		}
	})
	rootEnd := fmt.Sprintf("wvt%dr", os.Getpid())
	run := func(argv ...string) {
		t.Helper()
		if out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v: %s", strings.Join(argv, " "), err, out)
		}
	}
	run("ip", "netns", "add", f.ns)
	run("ip", "netns", "add", f.ctr)
	run("ip", "link", "add", rootEnd, "type", "veth", "peer", "name", "eth0", "netns", f.ns)
	run("ip", "addr", "add", farRootIP+"/30", "dev", rootEnd)
	run("ip", "link", "set", rootEnd, "up")
	run("ip", "-n", f.ns, "addr", "add", farHostIP+"/30", "dev", "eth0")
	run("ip", "-n", f.ns, "link", "set", "eth0", "up")
	run("ip", "-n", f.ns, "link", "set", "lo", "up")
	dir := t.TempDir()
	logPath := filepath.Join(dir, "router.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { logf.Close() })
	cmd := exec.Command("ip", "netns", "exec", f.ns, weaveBin, "router", "--data-dir", filepath.Join(dir, "data"),
		"--nickname", name+"-h2", "--no-plugin", "--ipalloc-range", "10.251.0.0/24", "--ipalloc-init", "observer",
		fmt.Sprintf("%s:%d", farRootIP, rootPort))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// RemovePrefixed ends the router with the namespace; this reaps it.
	t.Cleanup(func() {
		go cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("far router log:\n%s", b)
		}
	})
	f.log = logPath
	return f
}

// attach attaches the far host's container namespace, named attachName,
// once its router has address space.
func (f *farHost) attach(t *testing.T, attachName string) {
	t.Helper()
	// The far router's API is on the far host's loopback: the CLI runs there.
	if err := harness.PollFor(60*time.Second, "the far host attaches "+attachName, func(ctx context.Context) error {
		out, err := exec.CommandContext(ctx, "ip", "netns", "exec", f.ns, weaveBin, "attach", "--name", attachName,
			"/var/run/netns/"+f.ctr).CombinedOutput()
		if err != nil {
			return fmt.Errorf("weave attach: %v: %s", err, out)
		}
		return nil
	}); err != nil {
		b, _ := os.ReadFile(f.log)
		t.Fatalf("%v\nfar router log:\n%s", err, b)
	}
	out, err := exec.Command("ip", "-n", f.ctr, "-o", "-4", "addr", "show", "dev", "ethwe").CombinedOutput()
	fields := strings.Fields(string(out))
	if err != nil || len(fields) < 4 {
		t.Fatalf("far container's address: %v: %s", err, out)
	}
	f.addr = strings.Split(fields[3], "/")[0]
}

// removeGWBridgeAfter removes docker_gwbridge at cleanup if it is not
// there now: Docker makes it for the first container on a network whose
// driver names no gateway, as weavemesh does.
func removeGWBridgeAfter(t *testing.T) {
	if _, err := dockerCmd(context.Background(), "network", "inspect", "docker_gwbridge"); err == nil {
		return
	}
	t.Cleanup(func() { dockerCmd(context.Background(), "network", "rm", "docker_gwbridge") })
}

// TestDockerEngine runs a router in the root namespace and has the real
// Docker engine use its plugin: `docker network create -d <plugin>
// --ipam-driver <plugin>`, two containers from an image imported from
// busybox-static, which ping each other over the weave bridge and resolve
// each other's names and network aliases; removing them and the network
// releases every address.
func TestDockerEngine(t *testing.T) {
	needDocker(t)
	ctx := ctxFor(t, 4*time.Minute)
	sweepDocker(ctx, t)
	name := fmt.Sprintf("%s%d", dockerPrefix, os.Getpid())
	removeGWBridgeAfter(t)
	// The second host's link first: the root router advertises its end.
	port := freePort(t)
	far := startFarHost(ctx, t, name, port)
	r := startRootRouter(t, name, "10.251.0.0/24", port, farRootIP)

	img := name + "-img"
	cmd := exec.CommandContext(ctx, "docker", "import", "-", img)
	cmd.Stdin = bytes.NewReader(busyboxRootfs(t))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("docker import: %v: %s", err, out)
	}
	t.Cleanup(func() { dockerCmd(context.Background(), "rmi", "-f", img) })

	netName := name + "-net"
	if _, err := dockerCmd(ctx, "network", "create", "-d", r.plugin, "--ipam-driver", r.plugin, netName); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dockerCmd(context.Background(), "network", "rm", netName) })

	var ips []string
	var ctrs []string
	for i := 1; i <= 2; i++ {
		c := fmt.Sprintf("%s-c%d", name, i)
		t.Cleanup(func() { dockerCmd(context.Background(), "rm", "-f", c) })
		args := []string{"run", "-d", "--name", c, "--network", netName}
		if i == 1 {
			// Network aliases are names in weaveDNS too.
			args = append(args, "--network-alias", "web", "--network-alias", "api.prod")
		}
		if _, err := dockerCmd(ctx, append(args, img, "/bin/sleep", "600")...); err != nil {
			b, _ := os.ReadFile(r.log)
			t.Fatalf("%v\nrouter log:\n%s", err, b)
		}
		ip, err := dockerCmd(ctx, "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", c)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(ip, "10.251.0.") {
			t.Fatalf("container %s has address %q; want one from weave's default subnet 10.251.0.0/24", c, ip)
		}
		ctrs, ips = append(ctrs, c), append(ips, ip)
	}
	if mtu, err := dockerCmd(ctx, "exec", ctrs[0], "/bin/cat", "/sys/class/net/"+docker.DstPrefix+"0/mtu"); err != nil || mtu != "1376" {
		t.Errorf("container interface MTU %q, %v; want the overlay MTU 1376", mtu, err)
	}
	// Outbound access stays with Docker's gateway bridge.
	if routes, err := dockerCmd(ctx, "exec", ctrs[0], "/bin/ip", "route"); err != nil || !strings.Contains(routes, "default via") || strings.Contains(routes, "default via 10.251.") {
		t.Errorf("container routes %q, %v; want a default route through docker_gwbridge, none through weave", routes, err)
	}
	if got := r.dockerAllocs(ctx, t); len(got) != 3 {
		t.Errorf("IPAM holds %v for the network; want its gateway and two containers", got)
	}
	for i, c := range ctrs {
		to := ips[1-i]
		if err := harness.PollFor(pingTimeout, c+" pings "+to, func(ctx context.Context) error {
			_, err := dockerCmd(ctx, "exec", c, "/bin/ping", "-c", "1", "-W", "2", to)
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}

	// Names: the router follows the engine and registers every container
	// on the network; weaveDNS answers inside the containers.
	api := api.NewClient(r.httpAddr)
	t.Cleanup(api.CloseIdleConnections)
	for i, c := range ctrs {
		other := ctrs[1-i] + ".weave.local"
		if err := harness.PollFor(10*time.Second, c+" resolves "+other, func(ctx context.Context) error {
			out, err := dockerCmd(ctx, "exec", c, "/bin/nslookup", other, "127.0.0.153")
			if err == nil && !strings.Contains(out, ips[1-i]) {
				err = fmt.Errorf("answer %q lacks %s", out, ips[1-i])
			}
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}

	// Aliases given at docker run, and with docker network connect
	// --alias to a container started on Docker's own bridge, resolve to
	// the container's address on the weave network until it leaves it.
	c4 := name + "-c4"
	t.Cleanup(func() { dockerCmd(context.Background(), "rm", "-f", c4) })
	if _, err := dockerCmd(ctx, "run", "-d", "--name", c4, img, "/bin/sleep", "600"); err != nil {
		t.Fatal(err)
	}
	if _, err := dockerCmd(ctx, "network", "connect", "--alias", "db", netName, c4); err != nil {
		t.Fatal(err)
	}
	ip4, err := dockerCmd(ctx, "inspect", "-f", "{{(index .NetworkSettings.Networks \""+netName+"\").IPAddress}}", c4)
	if err != nil || !strings.HasPrefix(ip4, "10.251.0.") {
		t.Fatalf("%s's address on %s: %q %v", c4, netName, ip4, err)
	}
	for _, q := range []struct{ name, ip string }{{"web", ips[0]}, {"api.prod", ips[0]}, {"db", ip4}, {c4, ip4}} {
		fqdn := q.name + ".weave.local"
		if err := harness.PollFor(10*time.Second, ctrs[1]+" resolves the alias "+fqdn, func(ctx context.Context) error {
			out, err := dockerCmd(ctx, "exec", ctrs[1], "/bin/nslookup", fqdn, "127.0.0.153")
			if err == nil && !strings.Contains(out, q.ip) {
				err = fmt.Errorf("answer %q lacks %s", out, q.ip)
			}
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := dockerCmd(ctx, "network", "disconnect", netName, c4); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"db", c4} {
		if err := harness.PollFor(10*time.Second, "the alias "+n+" removed", func(ctx context.Context) error {
			if l, err := api.DNSLookup(ctx, n); err == nil {
				return fmt.Errorf("still answered: %+v", l)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}

	// A second host: a container started with weave's DNS flags pings, by
	// name, a namespace attached there.
	far.attach(t, "far")
	c3 := name + "-c3"
	t.Cleanup(func() { dockerCmd(context.Background(), "rm", "-f", c3) })
	if _, err := dockerCmd(ctx, "run", "-d", "--name", c3, "--network", netName, "--dns", "127.0.0.153", "--dns-search", "weave.local",
		img, "/bin/sleep", "600"); err != nil {
		t.Fatal(err)
	}
	if err := harness.PollFor(pingTimeout, c3+" pings far by name", func(ctx context.Context) error {
		_, err := dockerCmd(ctx, "exec", c3, "/bin/ping", "-c", "1", "-W", "2", "far")
		return err
	}); err != nil {
		var diag []string
		for _, argv := range [][]string{{"/bin/nslookup", "far.weave.local", "127.0.0.153"}, {"/bin/nslookup", "far"},
			{"/bin/cat", "/etc/resolv.conf"}, {"/bin/ping", "-c", "1", "-W", "2", far.addr}} {
			out, err := dockerCmd(ctx, append([]string{"exec", c3}, argv...)...)
			diag = append(diag, fmt.Sprintf("%s: %s %v", strings.Join(argv, " "), out, err))
		}
		t.Fatalf("%v (far is %s); in %s:\n%s", err, far.addr, c3, strings.Join(diag, "\n"))
	}

	// A router restart with the containers running: addresses, names and
	// the path to the other host stay.
	held := r.dockerAllocs(ctx, t)
	r.stop()
	// Restarted as a user's router would be, naming its peer: a router
	// that names none hears of the other host only when that host's
	// gossip reaches out again. The range stays split as before (the
	// ring is in the data dir).
	r.args = append(r.args, "--ipalloc-init", "consensus=1", farHostIP)
	r.start(t)
	restarted := time.Now()
	// The other host's records come back as soon as the router is ready.
	if err := harness.PollFor(restartCatchUp, "far's record back on the restarted router", func(ctx context.Context) error {
		_, err := api.DNSLookup(ctx, "far")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Logf("far's record came back %v after the restarted router was ready", time.Since(restarted).Round(time.Millisecond))
	if got := r.dockerAllocs(ctx, t); strings.Join(got, ",") != strings.Join(held, ",") {
		t.Errorf("Docker allocations before the router restart %v, after %v", held, got)
	}
	if err := harness.PollFor(pingTimeout, c3+" pings far by name after the router restart", func(ctx context.Context) error {
		_, err := dockerCmd(ctx, "exec", c3, "/bin/ping", "-c", "1", "-W", "2", "far")
		return err
	}); err != nil {
		l, lerr := api.DNSLookup(ctx, "far")
		out, _ := dockerCmd(ctx, "exec", c3, "/bin/nslookup", "far.weave.local", "127.0.0.153")
		st, _ := api.DNSStatus(ctx)
		t.Fatalf("%v\nlookup on the root router: %+v %v\nnslookup in c3: %s\nrecords: %+v", err, l, lerr, out, st.Entries)
	}
	if err := harness.PollFor(10*time.Second, ctrs[0]+" resolves "+ctrs[1]+" after the router restart", func(ctx context.Context) error {
		_, err := dockerCmd(ctx, "exec", ctrs[0], "/bin/nslookup", ctrs[1]+".weave.local", "127.0.0.153")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if err := harness.PollFor(10*time.Second, ctrs[1]+" resolves the alias web after the router restart", func(ctx context.Context) error {
		out, err := dockerCmd(ctx, "exec", ctrs[1], "/bin/nslookup", "web.weave.local", "127.0.0.153")
		if err == nil && !strings.Contains(out, ips[0]) {
			err = fmt.Errorf("answer %q lacks %s", out, ips[0])
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}

	// A container that stops loses its name.
	if _, err := dockerCmd(ctx, "stop", "-t", "0", ctrs[1]); err != nil {
		t.Fatal(err)
	}
	if err := harness.PollFor(10*time.Second, ctrs[1]+"'s name removed", func(ctx context.Context) error {
		if l, err := api.DNSLookup(ctx, ctrs[1]); err == nil {
			return fmt.Errorf("still answered: %+v", l)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	for _, c := range append(ctrs, c3, c4) {
		if _, err := dockerCmd(ctx, "rm", "-f", c); err != nil {
			t.Fatal(err)
		}
	}
	// The removed container's aliases go with its name.
	for _, n := range []string{ctrs[0], "web", "api.prod"} {
		if err := harness.PollFor(10*time.Second, n+" removed with its container", func(ctx context.Context) error {
			if l, err := api.DNSLookup(ctx, n); err == nil {
				return fmt.Errorf("still answered: %+v", l)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := dockerCmd(ctx, "network", "rm", netName); err != nil {
		t.Fatal(err)
	}
	if got := r.dockerAllocs(ctx, t); len(got) != 0 {
		t.Errorf("IPAM still holds %v after the network was removed", got)
	}
	links, _ := netlink.LinkList()
	for _, l := range links {
		if n := l.Attrs().Name; strings.HasPrefix(n, "vwd") || strings.HasPrefix(n, "vwc") {
			t.Errorf("veth %s left after the containers were removed", n)
		}
	}
}
