package main

import (
	"context"
	"encoding/json"
	"os"
	"strconv"
	"testing"
	"time"

	"weavemesh.dev/weave/gossip"
)

// TestSmallMesh runs the whole benchmark on a small mesh with quick
// gossip timings, as CI can afford (about 20 s), and checks that every
// figure was measured and the mesh behaved. WEAVE_SCALE_PEERS runs it at
// another size with the default timings instead.
func TestSmallMesh(t *testing.T) {
	p := Params{
		Peers: 20, Dilate: 1, JoinEvery: 20 * time.Millisecond, Trials: 3,
		Quiet: time.Second, Steady: 3 * time.Second, Timeout: 30 * time.Second,
		Seed: 1, Dir: t.TempDir(), Tune: gossip.QuickTimings,
	}
	if s := os.Getenv("WEAVE_SCALE_PEERS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatalf("WEAVE_SCALE_PEERS=%q: %v", s, err)
		}
		p.Peers, p.Tune, p.Timeout, p.Steady = n, nil, 2*time.Minute, 30*time.Second
	} else if testing.Short() {
		t.Skip("runs a 20-router mesh")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	res, err := run(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := json.Marshal(res)
	t.Logf("%s", out)
	if len(res.TimedOut) > 0 {
		t.Errorf("did not settle: %v", res.TimedOut)
	}
	if res.FalseDead != 0 {
		t.Errorf("false_dead %d, want 0", res.FalseDead)
	}
	for name, v := range map[string]float64{
		"converge_s": res.ConvergeS, "change_p99_s": res.ChangeP99S, "all_changes_s": res.AllChangesS,
		"dead_removed_s": res.DeadRemovedS, "rss_mb_per_router": res.RSSMBPerRouter,
		"cpu_s_per_min_per_router": res.CPUSPerMinPerRouter, "gossip_bytes_per_s_per_router": res.GossipBytesPerSPerRouter,
	} {
		if v <= 0 {
			t.Errorf("%s = %v: not measured", name, v)
		}
	}
	for _, kind := range []string{"topology", "ipam", "dns"} {
		if res.ChangeP99ByKind[kind] <= 0 {
			t.Errorf("change_p99_s_by_kind[%s] = %v: not measured", kind, res.ChangeP99ByKind[kind])
		}
	}
}

func TestFlags(t *testing.T) {
	for _, args := range [][]string{{"-peers", "1"}, {"-dilate", "0"}, {"-tune", "x"}, {"extra"}} {
		if err := mainErr(args, new(discard), new(discard)); err == nil {
			t.Errorf("scale %q succeeded", args)
		}
	}
}

type discard struct{}

func (*discard) Write(b []byte) (int, error) { return len(b), nil }
