package main

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"weavemesh.dev/weave/router"
)

func TestParseAttachItems(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		want []string
		err  string
	}{
		{nil, []string{}, ""},
		{[]string{"net:default"}, []string{"net:default"}, ""},
		{[]string{"net:10.32.4.7/24", "10.32.1.5/12"}, []string{"net:10.32.4.0/24", "10.32.1.5/12"}, ""},
		{[]string{"net:10.32.4.0"}, nil, "want net:CIDR"},
		{[]string{"net:fd00::/64"}, nil, "want net:CIDR"},
		{[]string{"10.32.1.5"}, nil, "net:default"},
	} {
		got, err := parseAttachItems(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%v: error %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("%v: got %v %v, want %v", tc.in, got, err, tc.want)
		}
	}
}

func TestIPAllocFlags(t *testing.T) {
	for _, tc := range []struct {
		name  string
		args  []string
		peers []string
		check func(router.Config) bool
		child []string
		err   string
	}{
		{name: "defaults stay zero", check: func(c router.Config) bool {
			return !c.IPAllocRange.IsValid() && c.IPAllocReclaimAfter == 0 && c.IPAllocInit == ""
		}},
		{name: "everything", args: []string{"--ipalloc-range=10.40.0.0/16", "--ipalloc-default-subnet=10.40.1.0/24",
			"--ipalloc-init=seed=00:00:00:00:00:01", "--ipalloc-reclaim-after=5s", "--ipalloc-allow-overlap"},
			check: func(c router.Config) bool {
				return c.IPAllocRange.String() == "10.40.0.0/16" && c.IPAllocDefaultSubnet.String() == "10.40.1.0/24" &&
					c.IPAllocReclaimAfter == 5*time.Second && c.IPAllocOverlapOK
			},
			child: []string{"--ipalloc-range=10.40.0.0/16", "--ipalloc-default-subnet=10.40.1.0/24",
				"--ipalloc-init=seed=00:00:00:00:00:01", "--ipalloc-reclaim-after=5s", "--ipalloc-allow-overlap"}},
		{name: "reclaim off", args: []string{"--ipalloc-reclaim-after=0"},
			check: func(c router.Config) bool { return c.IPAllocReclaimAfter < 0 },
			child: []string{"--ipalloc-reclaim-after=0s"}},
		{name: "bad range", args: []string{"--ipalloc-range=10.40.0.0"}, err: "--ipalloc-range"},
		{name: "bad init", args: []string{"--ipalloc-init=everyone"}, err: "--ipalloc-init"},
		{name: "negative reclaim", args: []string{"--ipalloc-reclaim-after=-1s"}, err: "must not be negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var f ipallocFlags
			fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
			f.register(fs)
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			cfg := router.Config{Peers: tc.peers}
			err := f.apply(&cfg)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || !tc.check(cfg) {
				t.Fatalf("config %+v, %v", cfg, err)
			}
			if got := ipallocArgs(cfg); !slices.Equal(got, tc.child) {
				t.Errorf("child args %q, want %q", got, tc.child)
			}
		})
	}
}
