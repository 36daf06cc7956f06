// Command demo shows weave at work on one machine: three simulated hosts
// (network namespaces on a private underlay), a router launched on each,
// two containers per host attached by name (weave allocates their
// addresses), and every container pinging every other by DNS name across
// the overlay. Run it as root after scripts/deps.sh:
//
//	go run ./demo            run, show, clean up
//	go run ./demo --keep     leave it running to explore
//	go run ./demo --cleanup  remove a demo left with --keep
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"weavemesh.dev/weave/test/harness"
)

const (
	// prefix names the demo's namespaces. It is fixed, unlike the tests'
	// per-process prefixes, so a kept demo can be found and removed later.
	prefix  = "wvdemo-"
	hosts   = 3
	perHost = 2
)

// demoDir holds the weave binary, the routers' data dirs and logs.
var demoDir = filepath.Join(os.TempDir(), "wvdemo")

func main() {
	keep := flag.Bool("keep", false, "leave the hosts, routers and containers running to explore")
	cleanup := flag.Bool("cleanup", false, "remove a demo left running with --keep, then exit")
	verbose := flag.Bool("v", false, "log what the harness does")
	flag.Parse()
	var err error
	if *cleanup {
		err = removeKept()
	} else {
		err = run(*keep, *verbose)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func removeKept() error {
	if os.Geteuid() != 0 {
		return errors.New("needs root; run it as root")
	}
	names, err := harness.RemovePrefixed(prefix, 10*time.Second, demoDir)
	if len(names) == 0 && err == nil {
		fmt.Println("no demo is running")
		return nil
	}
	fmt.Printf("removed %d namespaces (%s...) and %s\n", len(names), prefix, demoDir)
	return err
}

func kept() bool {
	ents, _ := os.ReadDir("/var/run/netns")
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), prefix) {
			return true
		}
	}
	return false
}

// container is a demo container and where it lives.
type container struct {
	*harness.Container
}

// target is what others ping to reach c: the name it was attached with,
// resolved by weaveDNS as NAME.weave.local.
func (c container) target() string {
	return c.Name + ".weave.local"
}

func step(format string, args ...any) {
	fmt.Printf("\n==> "+format+"\n", args...)
}

func run(keep, verbose bool) (err error) {
	if os.Geteuid() != 0 {
		return errors.New("needs root (network namespaces); run it as root after scripts/deps.sh")
	}
	if kept() {
		return fmt.Errorf("a demo is already running (left with --keep); remove it first with: go run ./demo --cleanup")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var logw io.Writer = io.Discard
	if verbose {
		logw = os.Stderr
	}
	log := slog.New(slog.NewTextHandler(logw, nil))
	if _, err := harness.Sweep(log); err != nil {
		log.Warn("sweep", "err", err)
	}

	step("building weave")
	bin := filepath.Join(demoDir, "bin", "weave")
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		return err
	}
	if err := harness.BuildTo("./cmd/weave", bin); err != nil {
		os.RemoveAll(demoDir)
		return err
	}

	step("creating %d hosts on the underlay %s", hosts, harness.DefaultUnderlay)
	cl, err := harness.New(ctx, harness.Options{Hosts: hosts, Prefix: prefix, Dir: demoDir, WeaveBinary: bin, Logger: log})
	if err != nil {
		os.RemoveAll(demoDir)
		return err
	}
	defer func() {
		if keep && err == nil {
			cl.Keep()
			explain(cl, bin)
			return
		}
		step("cleaning up")
		for _, h := range cl.Hosts {
			if h.RouterRunning() {
				_, _ = h.Weave("stop")
			}
		}
		if cerr := cl.Close(); cerr != nil {
			err = errors.Join(err, cerr)
		}
		fmt.Println("removed everything the demo created")
	}()
	for _, h := range cl.Hosts {
		fmt.Printf("    %-6s namespace %-14s eth0 %s\n", h.Name, h.NS.Name, h.IP)
	}

	first := cl.Host(1)
	step("launching a router on each host (host2 and host3 join %s)", first.IP)
	for _, h := range cl.Hosts {
		args := []string{}
		if h != first {
			args = append(args, first.IP.String())
		}
		fmt.Printf("    %s$ %s\n", h.Name, strings.Join(append([]string{"weave", "launch"}, args...), " "))
		name, err := h.Launch(args...)
		if err != nil {
			return err
		}
		fmt.Printf("    %s\n", name)
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}

	step("attaching %d containers to each host", perHost)
	var ctrs []container
	for _, h := range cl.Hosts {
		for n := 1; n <= perHost; n++ {
			name := fmt.Sprintf("c%d", len(ctrs)+1)
			c, err := h.AddContainer(name)
			if err != nil {
				return err
			}
			// No address given: the router allocates one from the
			// mesh's range (IPAM) and registers the name (weaveDNS).
			args := []string{"--name", name}
			fmt.Printf("    %s$ weave attach %s %s\n", h.Name, strings.Join(args, " "), c.NS.Name)
			if err := c.AttachArgs(args...); err != nil {
				return err
			}
			fmt.Printf("        %s got %s\n", name, strings.Join(c.CIDRs(), " "))
			ctrs = append(ctrs, container{c})
		}
	}

	step("waiting for the mesh to form")
	start := time.Now()
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	err = harness.Poll(wctx, "every router connected to every other", func(ctx context.Context) error {
		for _, h := range cl.Hosts {
			st, err := h.StatusCtx(ctx)
			if err != nil {
				return err
			}
			if st.Peers != hosts || st.Connections["established"] != hosts-1 {
				return fmt.Errorf("%s: %d peers, connections %v", h.Name, st.Peers, st.Connections)
			}
		}
		return nil
	})
	cancel()
	if err != nil {
		return err
	}
	fmt.Printf("    full mesh after %s\n", time.Since(start).Round(10*time.Millisecond))

	for _, args := range [][]string{{"status"}, {"status", "connections"}} {
		step("%s$ weave %s", first.Name, strings.Join(args, " "))
		out, err := first.Weave(args...)
		if err != nil {
			return err
		}
		fmt.Print(indent(out))
	}

	step("every container pings every other")
	ok, total := pingMatrix(ctx, ctrs)

	step("summary")
	fmt.Printf("    %d hosts, %d routers, %d containers\n", hosts, hosts, len(ctrs))
	fmt.Printf("    %d of %d container pairs reachable across the overlay\n", ok, total)
	if ok != total {
		return fmt.Errorf("%d pairs could not reach each other", total-ok)
	}
	return ctx.Err()
}

type pingResult struct {
	rtt time.Duration
	err error
}

// pingMatrix pings every ordered pair (retrying each for a while, several
// at once) and prints a matrix of round-trip times.
func pingMatrix(ctx context.Context, ctrs []container) (ok, total int) {
	res := make([][]pingResult, len(ctrs))
	for i := range res {
		res[i] = make([]pingResult, len(ctrs))
	}
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 6)
	for i, a := range ctrs {
		for j, b := range ctrs {
			if i == j {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				sem <- struct{}{}
				defer func() { <-sem }()
				var r harness.PingResult
				err := harness.Poll(pctx, a.Name+" -> "+b.Name, func(ctx context.Context) error {
					var err error
					r, err = a.Ping(ctx, b.target())
					return err
				})
				res[i][j] = pingResult{r.Avg, err}
			}()
		}
	}
	wg.Wait()

	var b strings.Builder
	fmt.Fprintf(&b, "    %-18s", "from \\ to")
	for _, c := range ctrs {
		fmt.Fprintf(&b, "%-10s", c.Name)
	}
	b.WriteString("\n")
	for i, a := range ctrs {
		fmt.Fprintf(&b, "    %-3s %-14s", a.Name, "("+a.Host.Name+")")
		for j := range ctrs {
			switch {
			case i == j:
				fmt.Fprintf(&b, "%-10s", "-")
			case res[i][j].err != nil:
				total++
				fmt.Fprintf(&b, "%-10s", "FAIL")
			default:
				total++
				ok++
				fmt.Fprintf(&b, "%-10s", fmt.Sprintf("%.2fms", float64(res[i][j].rtt)/float64(time.Millisecond)))
			}
		}
		b.WriteString("\n")
	}
	fmt.Print(b.String())
	fmt.Println("    (addresses: " + addresses(ctrs) + ")")
	for i := range ctrs {
		for j := range ctrs {
			if res[i][j].err != nil {
				fmt.Printf("    %s -> %s: %v\n", ctrs[i].Name, ctrs[j].Name, res[i][j].err)
			}
		}
	}
	return ok, total
}

func addresses(ctrs []container) string {
	var parts []string
	for _, c := range ctrs {
		parts = append(parts, c.Name+"="+c.target())
	}
	return strings.Join(parts, " ")
}

func indent(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return "    " + strings.Join(lines, "\n    ") + "\n"
}

func explain(cl *harness.Cluster, bin string) {
	h1 := cl.Host(1).NS.Name
	fmt.Printf(`
The demo is still running. Explore it as root:

    ip netns exec %[1]s %[2]s status
    ip netns exec %[1]s %[2]s status peers
    ip netns exec %[1]s %[2]s status connections
    ip netns exec %[1]s %[2]s ps
    ip netns exec %[3]sc1 ping c3.weave.local      # c1 on host1 -> c3 on host2, by name (weaveDNS)
    ip netns exec %[1]s %[2]s status ipam          # how the address range is shared out
    ip netns exec %[3]sc1 dig c4.weave.local       # answered inside c1 at 127.0.0.153
    ip netns exec %[1]s %[2]s status dns
    ip netns exec %[3]sc1 ip addr show ethwe
    ip netns exec %[3]shost2 bash                  # a shell on host2

Routers' logs: %[4]s/host*/router.log
Hosts: %[3]shost1..3, containers: %[3]sc1..c6, underlay: %[3]sunderlay

Remove it with:  go run ./demo --cleanup
`, h1, bin, prefix, cl.Dir)
}
