package main

import (
	"strings"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	tests := []struct {
		xs   []float64
		p    float64
		want float64
	}{
		{nil, 99, 0},
		{[]float64{3}, 50, 3},
		{[]float64{5, 1, 4, 2, 3}, 50, 3},
		{[]float64{5, 1, 4, 2, 3}, 99, 5},
		{[]float64{5, 1, 4, 2, 3}, 0, 1},
		{[]float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 90, 9},
		{[]float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 91, 10},
	}
	for _, tt := range tests {
		if got := percentile(tt.xs, tt.p); got != tt.want {
			t.Errorf("percentile(%v, %v) = %v, want %v", tt.xs, tt.p, got, tt.want)
		}
	}
}

func TestSettle(t *testing.T) {
	t0 := time.Unix(1000, 0)
	s := newSettle(3, t0)
	s.see(0, t0.Add(2*time.Second))
	s.see(0, t0.Add(9*time.Second)) // later sightings do not count
	if s.complete() {
		t.Fatal("complete with two observers left")
	}
	s.skip(1)
	s.see(2, t0.Add(3*time.Second))
	if !s.complete() || !s.done(1) {
		t.Fatal("not complete")
	}
	if got := s.took(); got != 3*time.Second {
		t.Errorf("took %s, want 3s", got)
	}
	if got := newSettle(2, t0).took(); got != 0 {
		t.Errorf("nobody saw it: took %s, want 0", got)
	}
}

func TestCPUPerMinPerRouter(t *testing.T) {
	tests := []struct {
		cpu, wall time.Duration
		n         int
		want      float64
	}{
		{30 * time.Second, time.Minute, 100, 0.3},
		{15 * time.Second, 30 * time.Second, 10, 3},
		{time.Second, 0, 10, 0},
		{time.Second, time.Second, 0, 0},
	}
	for _, tt := range tests {
		if got := cpuPerMinPerRouter(tt.cpu, tt.wall, tt.n); got < tt.want-1e-9 || got > tt.want+1e-9 {
			t.Errorf("cpuPerMinPerRouter(%s, %s, %d) = %v, want %v", tt.cpu, tt.wall, tt.n, got, tt.want)
		}
	}
	if _, err := cpuTime(); err != nil {
		t.Fatal(err)
	}
}

func TestParseRSS(t *testing.T) {
	tests := []struct {
		in   string
		want uint64
		ok   bool
	}{
		{"Name:\tx\nVmPeak:\t  9 kB\nVmRSS:\t  1234 kB\n", 1234 * 1024, true},
		{"VmRSS: 12 MB\n", 0, false},
		{"VmRSS: x kB\n", 0, false},
		{"Name: x\n", 0, false},
	}
	for _, tt := range tests {
		got, err := parseRSS(strings.NewReader(tt.in))
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parseRSS(%q) = %d, %v; want %d, ok %v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}
