package main

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// percentile returns the p-th percentile (0-100) of xs by the nearest-rank
// method: the smallest value with at least p% of the values at or below
// it. It returns 0 for no values.
func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	return s[min(max(rank, 1), len(s))-1]
}

// seconds rounds d to milliseconds, in seconds, for the JSON.
func seconds(d time.Duration) float64 {
	return math.Round(d.Seconds()*1000) / 1000
}

// round3 rounds x to three decimals.
func round3(x float64) float64 { return math.Round(x*1000) / 1000 }

// settle tracks when each of n observers first saw something: the time it
// took is from the change to the last first sight.
type settle struct {
	start time.Time
	seen  []time.Time // zero: not yet
	left  int
}

func newSettle(n int, start time.Time) *settle {
	return &settle{start: start, seen: make([]time.Time, n), left: n}
}

// see records that observer i saw it at t; later sightings do not count.
func (s *settle) see(i int, t time.Time) {
	if s.seen[i].IsZero() {
		s.seen[i] = t
		s.left--
	}
}

// skip takes observer i out (it stopped): it need not see anything.
func (s *settle) skip(i int) { s.see(i, s.start) }

func (s *settle) done(i int) bool { return !s.seen[i].IsZero() }

// complete reports whether every observer saw it.
func (s *settle) complete() bool { return s.left == 0 }

// took is how long after start the last observer saw it.
func (s *settle) took() time.Duration {
	var last time.Time
	for _, t := range s.seen {
		if t.After(last) {
			last = t
		}
	}
	if last.Before(s.start) {
		return 0
	}
	return last.Sub(s.start)
}

// cpuTime is the CPU time this process has used, user and system.
func cpuTime() (time.Duration, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, fmt.Errorf("getrusage: %w", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}

// cpuPerMinPerRouter is CPU seconds per minute of wall time per router.
func cpuPerMinPerRouter(cpu, wall time.Duration, routers int) float64 {
	if wall <= 0 || routers <= 0 {
		return 0
	}
	return cpu.Seconds() / wall.Minutes() / float64(routers)
}

// parseRSS reads VmRSS, in bytes, from a /proc/PID/status file.
func parseRSS(r io.Reader) (uint64, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("VmRSS line %q: want N kB", sc.Text())
		}
		kb, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("VmRSS line %q: %w", sc.Text(), err)
		}
		return kb * 1024, nil
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("no VmRSS line")
}
