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
		cipher    string
		args      []string
		err       bool
	}{
		{0, "auto", nil, false},
		{1, "auto", []string{"--sleeve-pipelines=1"}, false},
		{4, "chacha20-poly1305", []string{"--sleeve-pipelines=4", "--sleeve-cipher=chacha20-poly1305"}, false},
		{0, "aes-256-gcm", []string{"--sleeve-cipher=aes-256-gcm"}, false},
		{0, "rc4", nil, true},
		{-1, "auto", nil, true},
		{router.MaxSleevePipelines + 1, "auto", nil, true},
	} {
		var cfg router.Config
		f := sleeveFlags{pipelines: tc.pipelines, cipher: tc.cipher}
		err := f.apply(&cfg)
		if (err != nil) != tc.err {
			t.Errorf("--sleeve-pipelines %d --sleeve-cipher %s: error %v, want error %v", tc.pipelines, tc.cipher, err, tc.err)
			continue
		}
		if got := sleeveArgs(cfg); !tc.err && !slices.Equal(got, tc.args) {
			t.Errorf("--sleeve-pipelines %d --sleeve-cipher %s: child args %q, want %q", tc.pipelines, tc.cipher, got, tc.args)
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
