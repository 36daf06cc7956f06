package gossip

import (
	"testing"
	"time"

	"weavemesh.dev/weave/peer"
)

func TestRelaySeen(t *testing.T) {
	r := newRelaySeen()
	ch1, ch2 := &Channel{name: "a"}, &Channel{name: "b"}
	p, q := peer.Name(0x020000000001), peer.Name(0x020000000002)
	now := time.Now()
	steps := []struct {
		name   string
		ch     *Channel
		origin peer.Name
		seq    uint64
		key    string
		want   bool
	}{
		{"first", ch1, p, 10, "k", true},
		{"duplicate", ch1, p, 10, "k", false},
		{"older", ch1, p, 9, "k", false},
		{"newer", ch1, p, 11, "k", true},
		{"other key", ch1, p, 5, "j", true},
		{"other origin", ch1, q, 5, "k", true},
		{"other channel", ch2, p, 5, "k", true},
		{"unkeyed", ch1, p, 20, "", true},
		{"unkeyed duplicate", ch1, p, 20, "", false},
		{"unkeyed older is still new", ch1, p, 19, "", true},
	}
	for _, s := range steps {
		if got := r.firstSight(s.ch, s.origin, s.seq, []byte(s.key), now); got != s.want {
			t.Fatalf("%s: got %v, want %v", s.name, got, s.want)
		}
	}
	r.expire(now.Add(seenTTL + time.Second))
	if len(r.entries) != 0 {
		t.Fatalf("%d entries survive expiry", len(r.entries))
	}
	for i := range maxSeen + 10 {
		r.firstSight(ch1, p, uint64(i), nil, now)
	}
	if len(r.entries) > maxSeen {
		t.Fatalf("%d entries kept", len(r.entries))
	}
}

func TestRelaySeenDoesNotAllocate(t *testing.T) {
	r := newRelaySeen()
	ch := &Channel{name: "a"}
	key := []byte("some-key")
	now := time.Now()
	r.firstSight(ch, 0x020000000001, 1, key, now)
	if n := testing.AllocsPerRun(100, func() { r.firstSight(ch, 0x020000000001, 1, key, now) }); n != 0 {
		t.Fatalf("firstSight allocates %v times", n)
	}
}
