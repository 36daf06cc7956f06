package main

import (
	"slices"
	"strings"
	"testing"

	"weavemesh.dev/weave/router"
)

func TestSleeveFlags(t *testing.T) {
	for _, tc := range []struct {
		pipelines int
		args      []string
		err       bool
	}{
		{0, nil, false},
		{1, []string{"--sleeve-pipelines=1"}, false},
		{4, []string{"--sleeve-pipelines=4"}, false},
		{-1, nil, true},
		{router.MaxSleevePipelines + 1, nil, true},
	} {
		var cfg router.Config
		f := sleeveFlags{pipelines: tc.pipelines}
		err := f.apply(&cfg)
		if (err != nil) != tc.err {
			t.Errorf("--sleeve-pipelines %d: error %v, want error %v", tc.pipelines, err, tc.err)
			continue
		}
		if got := sleeveArgs(cfg); !tc.err && !slices.Equal(got, tc.args) {
			t.Errorf("--sleeve-pipelines %d: child args %q, want %q", tc.pipelines, got, tc.args)
		}
	}
}

func TestFormatDrops(t *testing.T) {
	for _, tc := range []struct {
		drops map[string]uint64
		want  string
	}{
		{nil, ""},
		{map[string]uint64{"replay": 0}, ""},
		{map[string]uint64{"rcvbuf": 12, "queue_full": 3, "replay": 0, "auth_failed": 1},
			"Drops: 16 (1 auth_failed, 3 queue_full, 12 rcvbuf)\n"},
	} {
		var b strings.Builder
		formatDrops(&b, tc.drops)
		if b.String() != tc.want {
			t.Errorf("formatDrops(%v) = %q, want %q", tc.drops, b.String(), tc.want)
		}
	}
}
