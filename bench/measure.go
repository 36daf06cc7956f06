package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"weavemesh.dev/weave/test/harness"
)

// userHZ is the unit of the CPU times in /proc (fixed at 100 on Linux).
const userHZ = 100

// procCPU returns utime+stime of a process in seconds.
func procCPU(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// After the command: state is field 3, utime 14, stime 15 (1-based).
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: bad utime/stime", pid)
	}
	return float64(ut+st) / userHZ, nil
}

// routersCPU sums procCPU over pids.
func routersCPU(pids []int) (float64, error) {
	var sum float64
	for _, p := range pids {
		s, err := procCPU(p)
		if err != nil {
			return 0, err
		}
		sum += s
	}
	return sum, nil
}

// machineBusy returns the busy CPU seconds of the whole machine (all cores)
// from the first line of /proc/stat.
func machineBusy() (float64, error) {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if !sc.Scan() {
		return 0, fmt.Errorf("/proc/stat: empty")
	}
	fields := strings.Fields(sc.Text())
	if len(fields) < 9 || fields[0] != "cpu" {
		return 0, fmt.Errorf("/proc/stat: unexpected first line %q", sc.Text())
	}
	var busy uint64
	for i, v := range fields[1:9] {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, err
		}
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		busy += n
	}
	return float64(busy) / userHZ, nil
}

// peakRSS returns VmHWM of a process in MiB.
func peakRSS(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			f := strings.Fields(v)
			if len(f) == 0 {
				break
			}
			kb, err := strconv.ParseFloat(f[0], 64)
			if err != nil {
				return 0, err
			}
			return kb / 1024, nil
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no VmHWM", pid)
}

// udpCounters reads the Udp line of /proc/net/snmp inside a namespace.
func udpCounters(ctx context.Context, ns *harness.NS) (map[string]uint64, error) {
	out, err := ns.Output(ctx, "cat", "/proc/net/snmp")
	if err != nil {
		return nil, err
	}
	return parseSNMP(out, "Udp")
}

// parseSNMP parses the header and value lines of one protocol in
// /proc/net/snmp format.
func parseSNMP(s, proto string) (map[string]uint64, error) {
	var hdr []string
	for _, l := range strings.Split(s, "\n") {
		f := strings.Fields(l)
		if len(f) == 0 || f[0] != proto+":" {
			continue
		}
		if hdr == nil {
			hdr = f[1:]
			continue
		}
		m := map[string]uint64{}
		for i, v := range f[1:] {
			if i < len(hdr) {
				m[hdr[i]], _ = strconv.ParseUint(v, 10, 64)
			}
		}
		return m, nil
	}
	return nil, fmt.Errorf("no %s counters in /proc/net/snmp", proto)
}

// iperfResult is the part of `iperf3 -J` output used here.
type iperfResult struct {
	End struct {
		SumReceived struct {
			Bytes         float64 `json:"bytes"`
			BitsPerSecond float64 `json:"bits_per_second"`
		} `json:"sum_received"`
		SumSent struct {
			Retransmits int `json:"retransmits"`
		} `json:"sum_sent"`
	} `json:"end"`
	Error string `json:"error"`
}

func parseIperf(out string) (iperfResult, error) {
	var r iperfResult
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		return r, fmt.Errorf("iperf3 output: %w: %q", err, harness.Tail(out, 5))
	}
	if r.Error != "" {
		return r, fmt.Errorf("iperf3: %s", r.Error)
	}
	return r, nil
}

// pingResult is the average RTT of a ping run, or why it failed.
type pingResult struct {
	ms  float64
	err error
}

// pingUnderLoad pings the server while an iperf3 run of cfg.duration
// goes on: it starts one second in, past TCP's slow start, and stops a
// second before the end.
func pingUnderLoad(ctx context.Context, cfg config, ep *Endpoints) <-chan pingResult {
	ch := make(chan pingResult, 1)
	n := max(5, int((cfg.duration-2*time.Second)/(50*time.Millisecond)))
	go func() {
		select {
		case <-ctx.Done():
			ch <- pingResult{err: ctx.Err()}
			return
		case <-time.After(time.Second):
		}
		pr, err := ep.Client.Ping(ctx, ep.ServerIP, "-c", fmt.Sprint(n), "-i", "0.05", "-W", "2")
		ch <- pingResult{ms: float64(pr.Avg) / float64(time.Millisecond), err: err}
	}()
	return ch
}

// work is what the routers did so far: their voluntary context switches
// and the sleeve's system calls.
type work struct{ wakeups, syscalls uint64 }

// routerWork sums work over the scenario's routers.
func routerWork(ctx context.Context, ep *Endpoints) (work, error) {
	var w work
	for _, pid := range ep.Routers {
		n, err := voluntarySwitches(pid)
		if err != nil {
			return w, err
		}
		w.wakeups += n
	}
	for _, h := range ep.Hosts {
		st, err := h.StatusCtx(ctx)
		if err != nil {
			return w, err
		}
		if st.Sleeve != nil {
			w.syscalls += st.Sleeve.Syscalls
		}
	}
	return w, nil
}

// voluntarySwitches sums voluntary_ctxt_switches over a process's threads.
func voluntarySwitches(pid int) (uint64, error) {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return 0, err
	}
	var sum uint64
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", pid, t.Name()))
		if err != nil {
			continue // the thread exited
		}
		v, ok := statusField(string(b), "voluntary_ctxt_switches:")
		if !ok {
			return 0, fmt.Errorf("/proc/%d/task/%s/status: no voluntary_ctxt_switches", pid, t.Name())
		}
		sum += v
	}
	return sum, nil
}

// statusField returns the number after name in /proc status text.
func statusField(s, name string) (uint64, bool) {
	for _, l := range strings.Split(s, "\n") {
		if v, ok := strings.CutPrefix(l, name); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}
