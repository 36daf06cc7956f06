package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"weavemesh.dev/weave/dns"
	"weavemesh.dev/weave/test/harness"
)

// The DNS row: dnsperf against weaveDNS and against dnsmasq serving the
// same names, both inside one container namespace on one host, in one run.
const (
	dnsKey   = "dns"
	dnsNames = 1000
	// dnsRateShare of dnsmasq's rate is where latency is measured, and the
	// share of dnsmasq's rate weaveDNS must reach.
	dnsRateShare = 0.8
	// dnsmasqAddr is where dnsmasq listens in the container, next to
	// weaveDNS's dns.ContainerNameserver.
	dnsmasqAddr = "127.0.0.154"
)

// DNSResult is the DNS row.
type DNSResult struct {
	Names       int     `json:"names"`
	Seconds     float64 `json:"seconds_per_run"`
	DnsmasqQPS  float64 `json:"dnsmasq_qps"`
	WeaveQPS    float64 `json:"weave_qps"`
	Ratio       float64 `json:"weave_vs_dnsmasq"`
	RateQPS     float64 `json:"latency_rate_qps"` // dnsRateShare of dnsmasq's qps
	WeaveP50ms  float64 `json:"weave_p50_ms"`
	WeaveP99ms  float64 `json:"weave_p99_ms"`
	DnsmasqP50  float64 `json:"dnsmasq_p50_ms"`
	DnsmasqP99  float64 `json:"dnsmasq_p99_ms"`
	WeaveLost   int64   `json:"weave_lost"`
	DnsmasqLost int64   `json:"dnsmasq_lost"`
	RouterCPU   float64 `json:"router_cpu_s"` // router CPU seconds over the weave runs
	Error       string  `json:"error,omitempty"`
}

// dnsSelected reports whether the run includes the DNS row.
func dnsSelected(cfg config) bool { return cfg.only == nil || cfg.only[dnsKey] }

// runDNSBench builds a one-host cluster, starts a router with dnsNames
// names and dnsmasq with the same names in a container, and measures.
func runDNSBench(ctx context.Context, cfg config, log *slog.Logger) (r DNSResult) {
	r = DNSResult{Names: dnsNames, Seconds: cfg.duration.Seconds()}
	fail := func(err error) DNSResult {
		r.Error = strings.Join(strings.Fields(err.Error()), " ")
		if len(r.Error) > 600 {
			r.Error = r.Error[:600] + " ..."
		}
		return r
	}
	dnsmasq, err := lookPath("dnsmasq")
	if err != nil {
		return fail(err)
	}
	if _, err := lookPath("dnsperf"); err != nil {
		return fail(err)
	}
	cl, err := harness.New(ctx, harness.Options{Hosts: 1, Logger: log, ReadyTimeout: 30 * time.Second})
	if err != nil {
		return fail(err)
	}
	defer func() {
		if err := cl.Close(); err != nil {
			log.Warn("cleanup", "err", err)
		}
	}()
	h := cl.Host(1)

	// The same names for both: nameN.weave.local at 10.40.x.y, given to
	// the router as its records added by hand, to dnsmasq as a hosts file.
	manual := map[string][]netip.Addr{}
	var hosts, queries strings.Builder
	for i := 1; i <= dnsNames; i++ {
		name := fmt.Sprintf("name%d.weave.local", i)
		addr := netip.AddrFrom4([4]byte{10, 40, byte(i / 250), byte(i%250 + 1)})
		manual[name+"."] = []netip.Addr{addr}
		fmt.Fprintf(&hosts, "%s %s\n", addr, name)
		fmt.Fprintf(&queries, "%s A\n", name)
	}
	if err := os.MkdirAll(h.DataDir(), 0o755); err != nil {
		return fail(err)
	}
	if err := dns.SaveManual(filepath.Join(h.DataDir(), dns.ManualFile), manual); err != nil {
		return fail(err)
	}
	hostsFile, queryFile := filepath.Join(cl.Dir, "dns-hosts"), filepath.Join(cl.Dir, "dns-queries")
	if err := os.WriteFile(hostsFile, []byte(hosts.String()), 0o644); err != nil {
		return fail(err)
	}
	if err := os.WriteFile(queryFile, []byte(queries.String()), 0o644); err != nil {
		return fail(err)
	}

	sctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	if err := h.StartRouterCtx(sctx); err != nil {
		return fail(err)
	}
	c, err := h.AddContainer("dnsc")
	if err != nil {
		return fail(err)
	}
	if err := c.Attach("10.32.1.1/12"); err != nil {
		return fail(err)
	}
	if _, err := c.Start(filepath.Join(cl.Dir, "dnsmasq.log"), dnsmasq, "--keep-in-foreground", "--conf-file=/dev/null",
		"--no-resolv", "--no-hosts", "--addn-hosts="+hostsFile, "--listen-address="+dnsmasqAddr, "--bind-interfaces",
		"--port=53", "--local-ttl=1", "--user=root", "--pid-file=", "--log-facility=-"); err != nil {
		return fail(err)
	}
	weave := dns.ContainerNameserver.Addr().String()
	for _, server := range []string{weave, dnsmasqAddr} {
		err := harness.Poll(sctx, "DNS server "+server+" answers", func(ctx context.Context) error {
			out, err := c.Output(ctx, "dig", "+short", "+time=1", "+tries=1", "@"+server, "name1000.weave.local")
			if err != nil {
				return err
			}
			if strings.TrimSpace(out) != "10.40.4.1" {
				return fmt.Errorf("answer %q", out)
			}
			return nil
		})
		if err != nil {
			return fail(err)
		}
	}
	pid := h.RouterPID()

	// Warm up, then the highest rate each sustains.
	if _, err := dnsperf(ctx, c, weave, queryFile, time.Second, 0, false); err != nil {
		return fail(err)
	}
	cpu0, err := procCPU(pid)
	if err != nil {
		return fail(err)
	}
	mq, err := dnsperf(ctx, c, dnsmasqAddr, queryFile, cfg.duration, 0, false)
	if err != nil {
		return fail(fmt.Errorf("dnsmasq: %w", err))
	}
	wq, err := dnsperf(ctx, c, weave, queryFile, cfg.duration, 0, false)
	if err != nil {
		return fail(fmt.Errorf("weave: %w", err))
	}
	r.DnsmasqQPS, r.WeaveQPS = mq.qps, wq.qps
	if mq.qps > 0 {
		r.Ratio = wq.qps / mq.qps
	}
	// Latency of both at the same fixed rate.
	r.RateQPS = float64(int(mq.qps * dnsRateShare))
	latDur := min(cfg.duration, 5*time.Second)
	wl, err := dnsperf(ctx, c, weave, queryFile, latDur, int(r.RateQPS), true)
	if err != nil {
		return fail(fmt.Errorf("weave at %0.f qps: %w", r.RateQPS, err))
	}
	cpu1, err := procCPU(pid)
	if err != nil {
		return fail(err)
	}
	ml, err := dnsperf(ctx, c, dnsmasqAddr, queryFile, latDur, int(r.RateQPS), true)
	if err != nil {
		return fail(fmt.Errorf("dnsmasq at %0.f qps: %w", r.RateQPS, err))
	}
	r.WeaveP50ms, r.WeaveP99ms = wl.p50*1e3, wl.p99*1e3
	r.DnsmasqP50, r.DnsmasqP99 = ml.p50*1e3, ml.p99*1e3
	r.WeaveLost, r.DnsmasqLost = wq.lost+wl.lost, mq.lost+ml.lost
	r.RouterCPU = cpu1 - cpu0
	return r
}

func lookPath(cmd string) (string, error) {
	if p, err := exec.LookPath(cmd); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		p := filepath.Join(dir, cmd)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found; run scripts/deps.sh --dns", cmd)
}

// perfResult is one dnsperf run.
type perfResult struct {
	qps      float64
	lost     int64
	p50, p99 float64 // seconds; with per-query output only
}

var (
	perfQPSRE  = regexp.MustCompile(`Queries per second:\s+([\d.]+)`)
	perfLostRE = regexp.MustCompile(`Queries lost:\s+(\d+)`)
)

// dnsperf runs dnsperf in c against server for d, at most rate queries a
// second (0: as fast as answers come), with per-query latencies when
// latencies is set.
func dnsperf(ctx context.Context, c *harness.Container, server, queryFile string, d time.Duration, rate int, latencies bool) (perfResult, error) {
	args := []string{"dnsperf", "-s", server, "-d", queryFile, "-l", strconv.Itoa(max(1, int(d.Seconds()))), "-t", "2"}
	if rate > 0 {
		args = append(args, "-Q", strconv.Itoa(rate))
	}
	if latencies {
		args = append(args, "-v")
	}
	rctx, cancel := context.WithTimeout(ctx, d+60*time.Second)
	defer cancel()
	if !latencies {
		out, err := c.Output(rctx, args...)
		if err != nil {
			return perfResult{}, err
		}
		return parseDNSPerf(strings.NewReader(out))
	}
	// With -v dnsperf prints a line per query. Into a file, not a pipe
	// this process drains, so reading its output does not compete with
	// the servers for the CPU while latency is measured.
	f, err := os.CreateTemp("", "dnsperf-*.out")
	if err != nil {
		return perfResult{}, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if _, err := c.Output(rctx, append([]string{"sh", "-c", `exec "$@" > "$0"`, f.Name()}, args...)...); err != nil {
		return perfResult{}, err
	}
	return parseDNSPerf(bufio.NewReaderSize(f, 1<<20))
}

// parseDNSPerf reads dnsperf's summary and, with -v, the latency of every
// query ("> NOERROR name A 0.000123").
func parseDNSPerf(rd io.Reader) (perfResult, error) {
	var r perfResult
	var lat []float64
	sc := bufio.NewScanner(rd)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, "> ") {
			f := strings.Fields(l)
			if v, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil {
				lat = append(lat, v)
			}
			continue
		}
		if m := perfQPSRE.FindStringSubmatch(l); m != nil {
			r.qps, _ = strconv.ParseFloat(m[1], 64)
		}
		if m := perfLostRE.FindStringSubmatch(l); m != nil {
			r.lost, _ = strconv.ParseInt(m[1], 10, 64)
		}
	}
	if err := sc.Err(); err != nil {
		return r, err
	}
	if r.qps == 0 {
		return r, errors.New("dnsperf printed no queries per second")
	}
	if len(lat) > 0 {
		slices.Sort(lat)
		r.p50 = lat[len(lat)*50/100]
		r.p99 = lat[min(len(lat)-1, len(lat)*99/100)]
	}
	return r, nil
}

// printDNS prints the DNS row.
func printDNS(w io.Writer, r DNSResult) {
	fmt.Fprintf(w, "\nDNS: dnsperf, %d names, %.0fs per run, server and client on one machine\n", r.Names, r.Seconds)
	if r.Error != "" {
		fmt.Fprintf(w, "DNS failed: %s\n", r.Error)
		return
	}
	fmt.Fprintf(w, "  dnsmasq  %8.0f qps   p50 %.3f ms  p99 %.3f ms at %.0f qps   lost %d\n",
		r.DnsmasqQPS, r.DnsmasqP50, r.DnsmasqP99, r.RateQPS, r.DnsmasqLost)
	fmt.Fprintf(w, "  weave    %8.0f qps   p50 %.3f ms  p99 %.3f ms at %.0f qps   lost %d   router CPU %.1fs\n",
		r.WeaveQPS, r.WeaveP50ms, r.WeaveP99ms, r.RateQPS, r.WeaveLost, r.RouterCPU)
	verdict := "meets"
	if r.Ratio < dnsRateShare || r.WeaveP99ms >= 1 {
		verdict = "misses"
	}
	fmt.Fprintf(w, "  weave/dnsmasq %.2f; %s the target (>= %.2f of dnsmasq's qps, p99 < 1 ms at %.0f%% of its rate)\n",
		r.Ratio, verdict, dnsRateShare, dnsRateShare*100)
}
