// Command scale runs many real routers in this process, without a data
// plane (router/inproc), and measures the mesh at that size: how fast it
// converges after the last join, how fast one change and a change on
// every peer reach everyone, how fast a killed peer is declared dead,
// whether a live one ever is, and what each router costs at rest in
// memory, CPU and gossip bytes. It prints one JSON object (docs/scale.md):
//
//	go run ./bench/scale -peers 500 -json [-dilate K] [-quick]
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	if err := mainErr(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "scale:", err)
		os.Exit(1)
	}
}

func mainErr(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("scale", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		p       Params
		asJSON  = fs.Bool("json", false, "print the result as one JSON object (default: indented)")
		quick   = fs.Bool("quick", false, "short windows and 3 trials per kind, for a quick look")
		verbose = fs.Bool("v", false, "log the routers' warnings and the steps to stderr")
		tune    = fs.String("tune", "default", "memberlist timings before dilation: default (the gossip package's), lan (memberlist's LAN defaults) or fast (gossip every 100ms to 4 peers)")
		seed    = fs.Uint64("seed", 0, "random seed (0: from the clock)")
		cpuProf = fs.String("cpuprofile", "", "write a CPU profile of the steady window to this file")
		memProf = fs.String("memprofile", "", "write a heap profile at the end of the steady window to this file")
		pprofAt = fs.String("pprof", "", "serve net/http/pprof on this loopback address (host:port) for the whole run")
		gogc    = fs.Int("gogc", defaultGOGC, "garbage collector target percentage of the one heap all routers share (GOGC; -1: off)")
	)
	fs.IntVar(&p.Peers, "peers", 100, "routers to run")
	fs.Float64Var(&p.Dilate, "dilate", 1, "multiply every gossip timer by this (slower gossip for more peers on few cores)")
	fs.DurationVar(&p.JoinEvery, "join-every", 20*time.Millisecond, "pace of the joins")
	fs.IntVar(&p.Trials, "trials", 10, "changes of each kind (topology, IP allocation, DNS) for change_p99_s")
	fs.DurationVar(&p.Quiet, "quiet", 10*time.Second, "wait after convergence before the steady window")
	fs.DurationVar(&p.Steady, "steady", time.Minute, "the steady window for CPU, memory and gossip bytes")
	fs.DurationVar(&p.Timeout, "timeout", 2*time.Minute, "bound of every wait for the mesh to settle")
	fs.IntVar(&p.Port, "port", 0, "gossip port of every router (default 6783), each on its own 127.x.y.z")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *quick {
		// Shorter unless given.
		for name, set := range map[string]func(){
			"trials": func() { p.Trials = 3 },
			"quiet":  func() { p.Quiet = 3 * time.Second },
			"steady": func() { p.Steady = 10 * time.Second },
		} {
			if !isSet(fs, name) {
				set()
			}
		}
	}
	switch *tune {
	case "default":
	case "lan":
		p.Tune = lanDefaults
	case "fast":
		p.Tune = fastGossip
	default:
		return fmt.Errorf("-tune %q: want default, lan or fast", *tune)
	}
	p.CPUProfile, p.MemProfile = *cpuProf, *memProf
	p.GOGC = *gogc
	p.Seed = *seed
	if p.Seed == 0 {
		p.Seed = uint64(time.Now().UnixNano())
	}
	level := slog.LevelError + 1
	if *verbose {
		level = slog.LevelWarn
	}
	p.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	if *verbose {
		p.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	dir, err := os.MkdirTemp("", "weave-scale-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	p.Dir = dir

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *pprofAt != "" {
		closeProf, err := servePprof(*pprofAt)
		if err != nil {
			return err
		}
		defer closeProf()
	}
	res, err := run(ctx, p)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(stdout)
	if !*asJSON {
		enc.SetIndent("", "  ")
	}
	return enc.Encode(res)
}

func isSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// servePprof serves the profiling handlers on addr, which must be a
// loopback address: the profiles show the whole process.
func servePprof(addr string) (func(), error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil || !ap.Addr().IsLoopback() {
		return nil, fmt.Errorf("-pprof %q: want a loopback host:port such as 127.0.0.1:6060", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("-pprof: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	return func() { srv.Close(); <-done }, nil
}
