package gossip

import (
	"context"
	"fmt"
	"hash/fnv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

func TestAEDigestsRoundTrip(t *testing.T) {
	tests := []aeSummary{
		{},
		{flags: aeReply, alive: 500, members: 1<<63 + 5, channels: []aeDigest{
			{channel: []byte("topology"), digest: 42}, {channel: []byte("dns"), digest: 1<<64 - 1}}},
	}
	for _, s := range tests {
		b := appendAEDigests(nil, s)
		if b[0] != aeDigests {
			t.Fatalf("type byte %d", b[0])
		}
		got, err := decodeAEDigests(b[1:])
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(got.flags, got.alive, got.members, len(got.channels)) != fmt.Sprint(s.flags, s.alive, s.members, len(s.channels)) {
			t.Errorf("round trip: got %+v, want %+v", got, s)
		}
		for i := range s.channels {
			if string(got.channels[i].channel) != string(s.channels[i].channel) || got.channels[i].digest != s.channels[i].digest {
				t.Errorf("channel %d: got %+v, want %+v", i, got.channels[i], s.channels[i])
			}
		}
		for cut := 0; cut < len(b)-1; cut++ {
			if _, err := decodeAEDigests(b[1 : 1+cut]); err == nil {
				t.Errorf("truncated to %d bytes: no error", cut)
			}
		}
		if _, err := decodeAEDigests(append(b[1:], 0)); err == nil {
			t.Error("trailing byte: no error")
		}
	}
}

func FuzzDecodeAEDigests(f *testing.F) {
	f.Add(appendAEDigests(nil, aeSummary{alive: 3, channels: []aeDigest{{channel: []byte("kv"), digest: 9}}})[1:])
	f.Add([]byte{0, 0x80})
	f.Add([]byte{0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 255})
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := decodeAEDigests(b)
		if err != nil {
			return
		}
		again, err := decodeAEDigests(appendAEDigests(nil, s)[1:])
		if err != nil || len(again.channels) != len(s.channels) || again.alive != s.alive {
			t.Fatalf("re-encoded digests do not decode the same: %v", err)
		}
	})
}

// digestKV is a kvState that is a Digester.
type digestKV struct{ *kvState }

func (d digestKV) Digest() uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	var sum uint64
	for k, e := range d.m {
		h := fnv.New64a()
		h.Write([]byte(k))
		sum += Mix64(h.Sum64() ^ Mix64(e.ver))
	}
	return sum
}

// Changes made without a broadcast reach every peer by anti-entropy
// long before the next push-pull.
func TestAntiEntropyRepairsWithoutPushPull(t *testing.T) {
	t.Parallel()
	noPushPull := func(c *memberlist.Config) {
		QuickTimings(c)
		c.PushPullInterval = time.Hour
	}
	var peers []*testPeer
	var states []digestKV
	for i := range 3 {
		cfg := testConfig(t, fmt.Sprintf("ae-%d", i))
		cfg.Tune = noPushPull
		cfg.AntiEntropyInterval = 50 * time.Millisecond
		p := newPeer(t, cfg)
		st := digestKV{newKV()}
		if _, err := p.Register("dkv", st); err != nil {
			t.Fatal(err)
		}
		var join []string
		if i > 0 {
			join = []string{peers[0].addr()}
		}
		if err := p.Start(context.Background(), join); err != nil {
			t.Fatal(err)
		}
		peers, states = append(peers, p), append(states, st)
	}
	for _, p := range peers {
		waitFor(t, 10*time.Second, p.cfg.Nickname+" to see the whole mesh", func() bool { return aliveCount(p) == 3 })
	}
	states[0].set("x", 7, "seven")
	states[2].set("y", 3, "three")
	for i, st := range states {
		waitFor(t, 10*time.Second, fmt.Sprintf("peer %d to get both keys", i), func() bool {
			return st.get("x").val == "seven" && st.get("y").val == "three"
		})
	}
	var sent, got uint64
	for _, p := range peers {
		s := p.Stats()
		sent, got = sent+s.AEStatesSent, got+s.AEStatesReceived
		if s.AEDigestsSent == 0 {
			t.Errorf("%s sent no digests", p.cfg.Nickname)
		}
	}
	if sent == 0 || got == 0 {
		t.Errorf("states sent %d, received %d; want some of each", sent, got)
	}
	// The plain channel, not a Digester, is left to push-pull.
	peers[0].kv.set("z", 1, "one")
	time.Sleep(300 * time.Millisecond)
	if peers[1].kv.get("z").val != "" {
		t.Error("a channel without digests was repaired by anti-entropy")
	}
}

func TestRegisterRefusesTheAntiEntropyChannel(t *testing.T) {
	n, err := New(testConfig(t, "reserved"))
	if err != nil {
		t.Fatal(err)
	}
	defer n.Shutdown()
	if _, err := n.Register(aeChannel, newKV()); err == nil || !strings.Contains(err.Error(), "reserved") {
		t.Errorf("Register(%q) = %v, want it refused as reserved", aeChannel, err)
	}
}
