package main

import (
	"slices"
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
