package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"text/tabwriter"
	"time"
)

// The lossy rows: single-stream TCP over kernel VXLAN and the sleeve with
// every wire packet the size it has on a real link (segmentation offloads
// off on the hosts' underlay veths, GRO off on the bridge ports), first
// with no loss, then with the underlay bridge dropping lossPercent of them
// at random (harness.SetLoss; this kernel has no netem).
const (
	lossKey     = "loss"
	lossPercent = 1
)

// lossScenarios are the rows of the lossy table, by scenario key; the
// first is the reference.
var lossScenarios = []string{"vxlan", "sleeve", "sleeve-enc"}

// LossResult is one lossy row.
type LossResult struct {
	Scenario  string   `json:"scenario"`
	Title     string   `json:"title"`
	Gbps0     float64  `json:"gbps_no_loss"`
	GbpsLoss  float64  `json:"gbps_loss"`
	Retrans0  int      `json:"tcp_retransmits_no_loss"`
	RetransL  int      `json:"tcp_retransmits_loss"`
	Dropped   int64    `json:"wire_packets_dropped"`
	Kept      float64  `json:"kept"`                 // GbpsLoss / Gbps0
	RatioLoss *float64 `json:"ratio_loss,omitempty"` // GbpsLoss / the reference's
	LossPct   int      `json:"loss_percent"`
	Error     string   `json:"error,omitempty"`
}

func lossSelected(cfg config) bool { return cfg.only == nil || cfg.only[lossKey] }

func runLossBench(ctx context.Context, cfg config, log *slog.Logger) []LossResult {
	var rs []LossResult
	for _, key := range lossScenarios {
		for _, s := range scenarios {
			if s.Key == key {
				if !cfg.jsonOut {
					fmt.Fprintf(os.Stderr, "bench: %s at %d%% loss ...\n", s.Title, lossPercent)
				}
				rs = append(rs, runLoss(ctx, cfg, log, s))
			}
		}
		if ctx.Err() != nil {
			break
		}
	}
	if len(rs) > 0 && rs[0].Error == "" && rs[0].GbpsLoss > 0 {
		for i := range rs {
			if rs[i].Error == "" {
				v := rs[i].GbpsLoss / rs[0].GbpsLoss
				rs[i].RatioLoss = &v
			}
		}
	}
	return rs
}

// runLoss builds a fresh cluster for s and measures one stream without
// and with loss.
func runLoss(ctx context.Context, cfg config, log *slog.Logger, s Scenario) (r LossResult) {
	r = LossResult{Scenario: s.Key, Title: s.Title, LossPct: lossPercent}
	fail := func(err error) LossResult {
		r.Error = errText(err)
		return r
	}
	cl, ep, err := startScenario(ctx, log, s)
	defer closeCluster(cl, log)
	if err != nil {
		return fail(err)
	}
	for _, pct := range []int{0, lossPercent} {
		if err := cl.SetLoss(pct); err != nil {
			return fail(err)
		}
		ir, err := iperf(ctx, cfg, ep, 1)
		if err != nil {
			return fail(fmt.Errorf("at %d%% loss: %w", pct, err))
		}
		gbps, retr := ir.End.SumReceived.BitsPerSecond/1e9, ir.End.SumSent.Retransmits
		if pct == 0 {
			r.Gbps0, r.Retrans0 = gbps, retr
		} else {
			r.GbpsLoss, r.RetransL = gbps, retr
		}
	}
	if r.Dropped, err = cl.LossDrops(ctx); err != nil {
		return fail(err)
	}
	if r.Gbps0 > 0 {
		r.Kept = r.GbpsLoss / r.Gbps0
	}
	return r
}

// iperf runs one iperf3 client for cfg.duration with streams streams.
func iperf(ctx context.Context, cfg config, ep *Endpoints, streams int) (iperfResult, error) {
	ictx, cancel := context.WithTimeout(ctx, cfg.duration+60*time.Second)
	defer cancel()
	args := []string{"iperf3", "-c", ep.ServerIP, "-p", "5201", "-J",
		"-t", fmt.Sprintf("%.0f", max(1, cfg.duration.Seconds())), "-P", fmt.Sprint(streams)}
	if cfg.congestion != "" {
		args = append(args, "-C", cfg.congestion)
	}
	out, err := ep.Client.Output(ictx, args...)
	ir, perr := parseIperf(out)
	if perr != nil {
		if err != nil {
			return ir, fmt.Errorf("iperf3 -P %d: %w", streams, err)
		}
		return ir, perr
	}
	return ir, nil
}

func printLoss(w io.Writer, rs []LossResult) {
	fmt.Fprintf(w, "\nSingle stream with wire-size packets, without loss and with %d%% of them dropped at random:\n", lossPercent)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "scenario\tGbit/s 0%%\tretrans 0%%\tGbit/s %d%%\tretrans %d%%\tkept\tvs %s at %d%%\tdropped\t\n",
		lossPercent, lossPercent, lossScenarios[0], lossPercent)
	for _, r := range rs {
		if r.Error != "" {
			fmt.Fprintf(tw, "%s\t(failed)\t\t\t\t\t\t\t\n", r.Title)
			continue
		}
		fmt.Fprintf(tw, "%s\t%.2f\t%d\t%.2f\t%d\t%.2f\t%s\t%d\t\n",
			r.Title, r.Gbps0, r.Retrans0, r.GbpsLoss, r.RetransL, r.Kept, opt(r.RatioLoss, "%.2f"), r.Dropped)
	}
	tw.Flush()
	for _, r := range rs {
		if r.Error != "" {
			fmt.Fprintf(w, "\n%s (lossy) failed: %s\n", r.Title, r.Error)
		}
	}
}
