package harness

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// PingResult is what ping(8) printed, parsed.
type PingResult struct {
	Transmitted, Received int
	Loss                  float64 // percent
	Min, Avg, Max, Mdev   time.Duration
	// FragNeeded: an ICMP "Frag needed and DF set" came back (from a router
	// on the path); TooLong: the local stack refused with "message too long".
	FragNeeded, TooLong bool
	MTU                 int // the MTU either of them named, 0 if none
	Output              string
}

var (
	pingCountRE = regexp.MustCompile(`(\d+) packets transmitted, (\d+) (?:packets )?received`)
	pingLossRE  = regexp.MustCompile(`([\d.]+)% packet loss`)
	pingRTTRE   = regexp.MustCompile(`= ([\d.]+)/([\d.]+)/([\d.]+)/([\d.]+) ms`)
	pingFragRE  = regexp.MustCompile(`Frag needed and DF set \(mtu = (\d+)\)`)
	pingLongRE  = regexp.MustCompile(`[Mm]essage too long(?:, mtu[= ]+(\d+))?`)
)

// ParsePing parses the output of iputils ping. It fails only when the
// summary line is missing.
func ParsePing(out string) (PingResult, error) {
	r := PingResult{Output: out}
	if m := pingFragRE.FindStringSubmatch(out); m != nil {
		r.FragNeeded = true
		r.MTU, _ = strconv.Atoi(m[1])
	}
	if m := pingLongRE.FindStringSubmatch(out); m != nil {
		r.TooLong = true
		if m[1] != "" && r.MTU == 0 {
			r.MTU, _ = strconv.Atoi(m[1])
		}
	}
	m := pingCountRE.FindStringSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("no ping summary in %q", Tail(out, 5))
	}
	r.Transmitted, _ = strconv.Atoi(m[1])
	r.Received, _ = strconv.Atoi(m[2])
	if m := pingLossRE.FindStringSubmatch(out); m != nil {
		r.Loss, _ = strconv.ParseFloat(m[1], 64)
	}
	if m := pingRTTRE.FindStringSubmatch(out); m != nil {
		ds := []*time.Duration{&r.Min, &r.Avg, &r.Max, &r.Mdev}
		for i, d := range ds {
			f, _ := strconv.ParseFloat(m[i+1], 64)
			*d = time.Duration(f * float64(time.Millisecond))
		}
	}
	return r, nil
}

// Ping runs `ping -n -c 1 -W 2 [args] ip` in the namespace (extra args, e.g.
// "-c", "20", "-i", "0.05", override the defaults). The error is nil only
// when at least one reply came back; the parsed result is returned either way.
func (n *NS) Ping(ctx context.Context, ip string, args ...string) (PingResult, error) {
	argv := []string{"ping", "-n"}
	if flagValue(args, "-c") == "" {
		argv = append(argv, "-c", "1")
	}
	if flagValue(args, "-W") == "" {
		argv = append(argv, "-W", "2")
	}
	argv = append(argv, args...)
	argv = append(argv, ip)
	out, runErr := n.Exec(ctx, argv...)
	r, err := ParsePing(out)
	if err != nil {
		if runErr != nil {
			return r, runErr
		}
		return r, err
	}
	if r.Received == 0 {
		return r, fmt.Errorf("ping %s from %s: no reply: %s", ip, n.Name, strings.TrimSpace(Tail(out, 4)))
	}
	return r, nil
}
