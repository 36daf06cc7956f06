package router

import (
	"testing"
	"time"

	"weavemesh.dev/weave/netdev"
)

// A restarted router announces its re-adopted endpoints at each of
// announceAfter, once per delay however late its loop runs, and never
// when it re-adopted nothing.
func TestAnnouncerSchedule(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	one := []netdev.Endpoint{{Netns: "/var/run/netns/x", Iface: "ethwe"}}
	for _, tc := range []struct {
		name  string
		eps   []netdev.Endpoint
		ticks []time.Duration // loop runs, after t0
		want  []bool
	}{
		{"every second", one,
			[]time.Duration{0, 500 * time.Millisecond, time.Second, 2 * time.Second, 3 * time.Second, 4 * time.Second, 9 * time.Second, 10 * time.Second, 11 * time.Second, time.Hour},
			[]bool{false, false, true, false, false, true, false, true, false, false}},
		{"a late loop announces once", one,
			[]time.Duration{30 * time.Second, 31 * time.Second},
			[]bool{true, false}},
		{"nothing re-adopted", nil,
			[]time.Duration{time.Second, 4 * time.Second, 10 * time.Second},
			[]bool{false, false, false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newAnnouncer(tc.eps, t0)
			for i, d := range tc.ticks {
				if got := a.due(t0.Add(d)); got != tc.want[i] {
					t.Errorf("at +%v: due %v, want %v", d, got, tc.want[i])
				}
			}
		})
	}
}
