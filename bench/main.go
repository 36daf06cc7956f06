// Command bench measures container-to-container TCP throughput (iperf3, 1
// and 4 streams), ping RTT, CPU cost per gigabyte and router memory across
// two simulated hosts, for each datapath in the scenario table, and prints
// one table (or JSON with --json). The lossy rows (bench/loss.go) repeat
// one stream over kernel VXLAN and the sleeve with wire-size packets,
// without loss and with 1% dropped. The DNS row (bench/dns.go) has
// dnsperf measure weaveDNS against dnsmasq. Run as root after
// scripts/deps.sh --dns:
//
//	go run ./bench [--duration 10s] [--only underlay,vxlan,loss,dns] [--json]
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"weavemesh.dev/weave/test/harness"
)

// Result is one scenario's measurements. Pointers are absent values: no
// router in the scenario, or no reference to compare with.
type Result struct {
	Scenario    string   `json:"scenario"`
	Title       string   `json:"title"`
	Gbps1       float64  `json:"gbps_1_stream"`
	Gbps4       float64  `json:"gbps_4_streams"`
	Ratio1      *float64 `json:"ratio_1_stream,omitempty"`
	Ratio4      *float64 `json:"ratio_4_streams,omitempty"`
	Retransmits int      `json:"tcp_retransmits"`
	RTTms       float64  `json:"rtt_avg_ms"`
	RTTLoadms   float64  `json:"rtt_under_load_avg_ms"` // during the single-stream run
	// RTT added over the bare underlay row of the same run, idle and
	// under load (each against the underlay's under the same load).
	AddedIdleUs *float64 `json:"rtt_added_idle_us,omitempty"`
	AddedLoadUs *float64 `json:"rtt_added_under_load_us,omitempty"`
	// Per GB received: the routers' voluntary context switches (each a
	// sleep and a wakeup), and the sleeve's system calls on its TAP
	// queues and sockets (both routers).
	WakeupsGB     *float64 `json:"router_wakeups_per_gb,omitempty"`
	SyscallsGB    *float64 `json:"sleeve_syscalls_per_gb,omitempty"`
	RouterCPUGB   *float64 `json:"router_cpu_s_per_gb,omitempty"`
	MachineCPUGB  float64  `json:"machine_cpu_s_per_gb"`
	RouterRSSMB   *float64 `json:"router_peak_rss_mb,omitempty"`
	UDPRcvbufErrs uint64   `json:"udp_rcvbuf_errors"`
	UDPInErrors   uint64   `json:"udp_in_errors"`
	GB            float64  `json:"gb_transferred"`
	Error         string   `json:"error,omitempty"`
}

type config struct {
	duration time.Duration
	pings    int
	only     map[string]bool
	jsonOut  bool
	verbose  bool
	// congestion is the iperf3 clients' TCP congestion control; empty
	// keeps the host's default.
	congestion string
}

func main() {
	var cfg config
	var only string
	flag.DurationVar(&cfg.duration, "duration", 10*time.Second, "length of each iperf3 run")
	flag.IntVar(&cfg.pings, "pings", 20, "pings for the RTT (at 0.05s intervals)")
	flag.StringVar(&only, "only", "", "comma-separated scenario keys to run (default all: "+keys()+")")
	flag.BoolVar(&cfg.jsonOut, "json", false, "print JSON instead of a table")
	flag.BoolVar(&cfg.verbose, "v", false, "log progress to stderr")
	flag.StringVar(&cfg.congestion, "congestion", "", "TCP congestion control of the iperf3 clients, e.g. cubic or bbr (default: the host's, net.ipv4.tcp_congestion_control)")
	flag.Parse()
	if only != "" {
		cfg.only = map[string]bool{}
		for _, k := range strings.Split(only, ",") {
			cfg.only[strings.TrimSpace(k)] = true
		}
		for k := range cfg.only {
			if !validKey(k) {
				fmt.Fprintf(os.Stderr, "bench: --only: unknown scenario %q (have %s)\n", k, keys())
				os.Exit(2)
			}
		}
	}
	if err := run(cfg); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func keys() string {
	var ks []string
	for _, s := range scenarios {
		ks = append(ks, s.Key)
	}
	ks = append(ks, lossKey, dnsKey)
	return strings.Join(ks, ",")
}

func validKey(k string) bool {
	if k == dnsKey || k == lossKey {
		return true
	}
	for _, s := range scenarios {
		if s.Key == k {
			return true
		}
	}
	return false
}

func run(cfg config) error {
	if os.Geteuid() != 0 {
		return errors.New("needs root (network namespaces); run as root after scripts/deps.sh")
	}
	for _, c := range []string{"ip", "iperf3", "ping"} {
		if _, err := exec.LookPath(c); err != nil {
			return fmt.Errorf("%s not found; run scripts/deps.sh", c)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var logw io.Writer = io.Discard
	if cfg.verbose {
		logw = os.Stderr
	}
	log := slog.New(slog.NewTextHandler(logw, nil))
	if rep, err := harness.Sweep(log); err != nil {
		log.Warn("sweep", "err", err)
	} else if !rep.Empty() {
		log.Info("removed leftovers of earlier runs", "namespaces", rep.Namespaces)
	}
	defer harness.RemoveBuilds()

	var results []Result
	for _, s := range scenarios {
		if cfg.only != nil && !cfg.only[s.Key] {
			continue
		}
		if !cfg.jsonOut {
			fmt.Fprintf(os.Stderr, "bench: %s ...\n", s.Title)
		}
		r := runScenario(ctx, cfg, log, s)
		if r.Error != "" {
			fmt.Fprintf(os.Stderr, "bench: %s: %s\n", s.Title, r.Error)
		}
		results = append(results, r)
		if ctx.Err() != nil {
			break
		}
	}
	addRatios(results)
	var lossRes []LossResult
	if lossSelected(cfg) && ctx.Err() == nil {
		lossRes = runLossBench(ctx, cfg, log)
	}
	var dnsRes *DNSResult
	if dnsSelected(cfg) && ctx.Err() == nil {
		if !cfg.jsonOut {
			fmt.Fprintf(os.Stderr, "bench: DNS (dnsperf: weaveDNS and dnsmasq) ...\n")
		}
		r := runDNSBench(ctx, cfg, log)
		dnsRes = &r
	}
	if cfg.jsonOut {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(struct {
			DurationS float64      `json:"duration_s"`
			Reference string       `json:"reference"`
			Results   []Result     `json:"results"`
			Loss      []LossResult `json:"loss,omitempty"`
			DNS       *DNSResult   `json:"dns,omitempty"`
		}{cfg.duration.Seconds(), referenceKey, results, lossRes, dnsRes}); err != nil {
			return err
		}
	} else {
		if len(results) > 0 {
			printTable(os.Stdout, results)
		}
		if len(lossRes) > 0 {
			printLoss(os.Stdout, lossRes)
		}
		if dnsRes != nil {
			printDNS(os.Stdout, *dnsRes)
		}
	}
	if ctx.Err() != nil {
		return errors.New("interrupted; everything created was removed")
	}
	return nil
}

// errText is err on one line, cut to a length a table note can hold.
func errText(err error) string {
	s := strings.Join(strings.Fields(err.Error()), " ")
	if len(s) > 600 {
		s = s[:600] + " ..."
	}
	return s
}

// startScenario builds a fresh two-host cluster, sets s up on it and
// starts the iperf3 server, returning once the client reaches it. The
// caller closes the cluster, also on error.
func startScenario(ctx context.Context, log *slog.Logger, s Scenario) (*harness.Cluster, *Endpoints, error) {
	cl, err := harness.New(ctx, harness.Options{Hosts: 2, Logger: log, ReadyTimeout: 30 * time.Second})
	if err != nil {
		return nil, nil, err
	}
	sctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	ep, err := s.Setup(sctx, cl)
	cancel()
	if err != nil {
		return cl, nil, fmt.Errorf("setup: %w", err)
	}
	srv, err := ep.Server.Start(filepath.Join(cl.Dir, "iperf3-server.log"), "iperf3", "-s", "-p", "5201", "--forceflush")
	if err != nil {
		return cl, nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := srv.WaitLog(wctx, "Server listening"); err != nil {
		return cl, nil, err
	}
	if err := harness.Poll(wctx, "client reaches server", func(ctx context.Context) error {
		_, err := ep.Client.Ping(ctx, ep.ServerIP, "-W", "1")
		return err
	}); err != nil {
		return cl, nil, err
	}
	return cl, ep, nil
}

func closeCluster(cl *harness.Cluster, log *slog.Logger) {
	if cl == nil {
		return
	}
	if err := cl.Close(); err != nil {
		log.Warn("cleanup", "err", err)
	}
}

// runScenario builds a fresh cluster, measures, and tears it down.
func runScenario(ctx context.Context, cfg config, log *slog.Logger, s Scenario) (r Result) {
	r = Result{Scenario: s.Key, Title: s.Title}
	fail := func(err error) Result {
		r.Error = errText(err)
		return r
	}
	cl, ep, err := startScenario(ctx, log, s)
	defer closeCluster(cl, log)
	if err != nil {
		return fail(err)
	}

	snmp0, err := udpCounters(ctx, ep.RecvHost)
	if err != nil {
		return fail(err)
	}
	pr, err := ep.Client.Ping(ctx, ep.ServerIP, "-c", fmt.Sprint(cfg.pings), "-i", "0.05", "-W", "2")
	if err != nil {
		return fail(fmt.Errorf("ping: %w", err))
	}
	r.RTTms = float64(pr.Avg) / float64(time.Millisecond)

	var bytes, routerCPU, machineCPU float64
	w0, err := routerWork(ctx, ep)
	if err != nil {
		return fail(err)
	}
	for _, streams := range []int{1, 4} {
		rc0, err := routersCPU(ep.Routers)
		if err != nil {
			return fail(err)
		}
		mc0, err := machineBusy()
		if err != nil {
			return fail(err)
		}
		var loaded <-chan pingResult
		if streams == 1 {
			loaded = pingUnderLoad(ctx, cfg, ep)
		}
		ir, err := iperf(ctx, cfg, ep, streams)
		if err != nil {
			return fail(err)
		}
		if loaded != nil {
			pr := <-loaded
			if pr.err != nil {
				return fail(fmt.Errorf("ping under load: %w", pr.err))
			}
			r.RTTLoadms = pr.ms
		}
		rc1, err := routersCPU(ep.Routers)
		if err != nil {
			return fail(fmt.Errorf("router gone after the run: %w", err))
		}
		mc1, err := machineBusy()
		if err != nil {
			return fail(err)
		}
		gbps := ir.End.SumReceived.BitsPerSecond / 1e9
		if streams == 1 {
			r.Gbps1 = gbps
		} else {
			r.Gbps4 = gbps
		}
		r.Retransmits += ir.End.SumSent.Retransmits
		bytes += ir.End.SumReceived.Bytes
		routerCPU += rc1 - rc0
		machineCPU += mc1 - mc0
	}
	r.GB = bytes / 1e9
	w1, err := routerWork(ctx, ep)
	if err != nil {
		return fail(err)
	}
	if r.GB > 0 {
		r.MachineCPUGB = machineCPU / r.GB
		if len(ep.Routers) > 0 {
			v := routerCPU / r.GB
			r.RouterCPUGB = &v
			wk := float64(w1.wakeups-w0.wakeups) / r.GB
			r.WakeupsGB = &wk
		}
		if len(ep.Hosts) > 0 {
			sc := float64(w1.syscalls-w0.syscalls) / r.GB
			r.SyscallsGB = &sc
		}
	}
	if len(ep.Routers) > 0 {
		var peak float64
		for _, p := range ep.Routers {
			m, err := peakRSS(p)
			if err != nil {
				return fail(err)
			}
			peak = max(peak, m)
		}
		r.RouterRSSMB = &peak
	}
	snmp1, err := udpCounters(ctx, ep.RecvHost)
	if err != nil {
		return fail(err)
	}
	r.UDPRcvbufErrs = snmp1["RcvbufErrors"] - snmp0["RcvbufErrors"]
	r.UDPInErrors = snmp1["InErrors"] - snmp0["InErrors"]
	return r
}

// addRatios sets each row's throughput relative to the reference row, and
// its RTT added over the underlay row's.
func addRatios(rs []Result) {
	var ref, under *Result
	for i := range rs {
		if rs[i].Scenario == referenceKey && rs[i].Error == "" {
			ref = &rs[i]
		}
		if rs[i].Scenario == underlayKey && rs[i].Error == "" {
			under = &rs[i]
		}
	}
	if under != nil {
		for i := range rs {
			if rs[i].Error != "" || &rs[i] == under {
				continue
			}
			idle := (rs[i].RTTms - under.RTTms) * 1000
			load := (rs[i].RTTLoadms - under.RTTLoadms) * 1000
			rs[i].AddedIdleUs, rs[i].AddedLoadUs = &idle, &load
		}
	}
	if ref == nil {
		return
	}
	for i := range rs {
		if rs[i].Error != "" {
			continue
		}
		if ref.Gbps1 > 0 {
			v := rs[i].Gbps1 / ref.Gbps1
			rs[i].Ratio1 = &v
		}
		if ref.Gbps4 > 0 {
			v := rs[i].Gbps4 / ref.Gbps4
			rs[i].Ratio4 = &v
		}
	}
}

func opt(p *float64, format string) string {
	if p == nil {
		return "-"
	}
	return fmt.Sprintf(format, *p)
}

func printTable(w io.Writer, rs []Result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tGbit/s 1\tGbit/s 4\tvs "+referenceKey+" 1\tvs "+referenceKey+" 4\tRTT ms\tloaded\tadded µs\tloaded\trouter CPU-s/GB\tmachine CPU-s/GB\tsyscalls/GB\twakeups/GB\trouter RSS MB\tUDP RcvbufErrors\tretrans\t")
	for _, r := range rs {
		if r.Error != "" {
			fmt.Fprintf(tw, "%s\t(failed)\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\n", r.Title)
			continue
		}
		fmt.Fprintf(tw, "%s\t%.2f\t%.2f\t%s\t%s\t%.3f\t%.3f\t%s\t%s\t%s\t%.2f\t%s\t%s\t%s\t%d\t%d\t\n",
			r.Title, r.Gbps1, r.Gbps4, opt(r.Ratio1, "%.2f"), opt(r.Ratio4, "%.2f"), r.RTTms, r.RTTLoadms,
			opt(r.AddedIdleUs, "%.0f"), opt(r.AddedLoadUs, "%.0f"),
			opt(r.RouterCPUGB, "%.2f"), r.MachineCPUGB, opt(r.SyscallsGB, "%.0f"), opt(r.WakeupsGB, "%.0f"),
			opt(r.RouterRSSMB, "%.1f"), r.UDPRcvbufErrs, r.Retransmits)
	}
	tw.Flush()
	for _, r := range rs {
		if r.Error != "" {
			fmt.Fprintf(w, "\n%s failed: %s\n", r.Title, r.Error)
		}
	}
	fmt.Fprintln(w, "\nCPU-s/GB: CPU seconds per gigabyte received (router: both routers' utime+stime; machine: all cores busy time).")
	fmt.Fprintln(w, "RTT: ping idle, and loaded during the 1-stream run; added: over the bare underlay's, idle and under the same load.")
	fmt.Fprintln(w, "syscalls/GB: the sleeve's TAP and socket system calls (both routers); wakeups/GB: the routers' voluntary context switches.")
	fmt.Fprintln(w, "Numbers from a shared machine are noisy; compare rows of one run.")
}
