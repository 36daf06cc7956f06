package gossip

import (
	"log/slog"
	"net"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"weavemesh.dev/weave/mesh/mix"
	"weavemesh.dev/weave/peer"
)

// steppingClock reads a time the test sets, forwards or back.
type steppingClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *steppingClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *steppingClock) NewTicker(time.Duration) Ticker { panic("not used") }

func (c *steppingClock) set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}

// tableNode is a Node with a member table only, fed events by hand.
func tableNode(t *testing.T, c Clock, retention time.Duration) *Node {
	t.Helper()
	n := &Node{
		cfg:      Config{Name: 1, Clock: c, DeadRetention: retention},
		log:      slog.New(slog.DiscardHandler),
		logLimit: newLimiter(time.Second),
		known:    newKnownPeers(t.TempDir(), time.Hour, DefaultPort),
		changes:  make(chan struct{}, 1),
		members:  map[peer.Name]*memberEntry{},
	}
	n.channels.Store(&channelSet{byName: map[string]*Channel{}})
	return n
}

func mlNode(name peer.Name, ip byte) *memberlist.Node {
	meta := appendMeta(nil, meta{protoMin: 1, protoMax: 1, dataPort: 6784, nickname: "n" + name.String()[15:]})
	return &memberlist.Node{Name: name.String(), Addr: net.IPv4(127, 0, 0, ip), Port: DefaultPort, Meta: meta}
}

func names(ms []Member) []peer.Name {
	out := make([]peer.Name, len(ms))
	for i, m := range ms {
		out[i] = m.Name
	}
	return out
}

// The member list is shared until it changes: a steady mesh's rounds do
// not copy it, and its generation tells callers when to redo their work.
func TestMemberViewSharedUntilChange(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := &steppingClock{now: start}
	n := tableNode(t, c, time.Minute)
	ev := (*events)(n)
	ev.NotifyJoin(mlNode(3, 3))
	ev.NotifyJoin(mlNode(1, 1))
	ev.NotifyJoin(mlNode(2, 2))

	type step struct {
		name      string
		do        func()
		want      []peer.Name
		wantNewGn bool
	}
	steps := []step{
		{"first read", func() {}, []peer.Name{1, 2, 3}, true},
		{"nothing changed", func() {}, []peer.Name{1, 2, 3}, false},
		{"time passes, all alive", func() { c.set(start.Add(10 * time.Minute)) }, []peer.Name{1, 2, 3}, false},
		{"a member fails", func() { ev.NotifyLeave(mlNode(2, 2)) }, []peer.Name{1, 2, 3}, true},
		{"within retention", func() { c.set(start.Add(10*time.Minute + 59*time.Second)) }, []peer.Name{1, 2, 3}, false},
		{"retention passed, not pruned yet", func() { c.set(start.Add(11*time.Minute + time.Second)) }, []peer.Name{1, 3}, true},
		{"clock steps back", func() { c.set(start.Add(10*time.Minute + 30*time.Second)) }, []peer.Name{1, 2, 3}, true},
		{"a member joins", func() { c.set(start.Add(12 * time.Minute)); ev.NotifyJoin(mlNode(4, 4)) }, []peer.Name{1, 3, 4}, true},
		{"pruned", func() { n.pruneMembers(c.Now()) }, []peer.Name{1, 3, 4}, true},
	}
	var prev []Member
	var prevGen uint64
	for _, s := range steps {
		s.do()
		ms, gen := n.MemberView()
		if got := names(ms); !slices.Equal(got, s.want) {
			t.Fatalf("%s: members %v, want %v", s.name, got, s.want)
		}
		if newGen := gen != prevGen; newGen != s.wantNewGn {
			t.Fatalf("%s: generation %d after %d: new %v, want %v", s.name, gen, prevGen, newGen, s.wantNewGn)
		}
		if !s.wantNewGn && len(ms) > 0 && &ms[0] != &prev[0] {
			t.Fatalf("%s: the list was copied though nothing changed", s.name)
		}
		if got := names(n.Members()); !slices.Equal(got, s.want) {
			t.Fatalf("%s: Members %v, want %v", s.name, got, s.want)
		}
		prev, prevGen = ms, gen
	}
}

// A steady read allocates nothing.
func TestMembersSteadyAllocatesNothing(t *testing.T) {
	c := &steppingClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	n := tableNode(t, c, time.Minute)
	for i := byte(1); i <= 50; i++ {
		(*events)(n).NotifyJoin(mlNode(peer.Name(i), i))
	}
	n.Members()
	if a := testing.AllocsPerRun(100, func() { n.Members() }); a != 0 {
		t.Fatalf("Members allocates %v times per call on a steady table", a)
	}
}

// Readers share the list while events change the table.
func TestMembersConcurrentWithEvents(t *testing.T) {
	c := &steppingClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	n := tableNode(t, c, time.Minute)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := 0; i < 200; i++ {
			ip := byte(1 + i%100)
			(*events)(n).NotifyJoin(mlNode(peer.Name(ip), ip))
			if i%3 == 0 {
				(*events)(n).NotifyLeave(mlNode(peer.Name(ip), ip))
			}
		}
	}()
	go func() {
		defer wg.Done()
		for i := 0; i < 200; i++ {
			ms := n.Members()
			for k := 1; k < len(ms); k++ {
				if ms[k-1].Name >= ms[k].Name {
					t.Errorf("members not sorted: %v", names(ms))
					return
				}
			}
		}
	}()
	wg.Wait()
	ms := n.Members()
	if len(ms) != 100 {
		t.Fatalf("%d members after the events, want 100", len(ms))
	}
	// The digests' alive count and hash, kept as events come, match the
	// table.
	var alive, hash uint64
	for _, m := range ms {
		if m.State == Alive {
			alive++
			hash += mix.Mix64(uint64(m.Name))
		}
	}
	if s := n.summary(0); s.alive != alive || s.members != hash {
		t.Fatalf("digests say %d alive, hash %x; the table has %d, hash %x", s.alive, s.members, alive, hash)
	}
	for range 20 {
		m, ok := n.randomMember()
		if !ok || m.State != Alive || m.Name == n.cfg.Name {
			t.Fatalf("random member %v, %v: want an alive other", m, ok)
		}
	}
}

// A member declared dead is left out of rejoin rounds for a while only:
// memberlist still gossips to it, and a live one refutes on its own.
func TestRecentlyFailed(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := &steppingClock{now: start}
	n := tableNode(t, c, time.Hour)
	ev := (*events)(n)
	ev.NotifyJoin(mlNode(1, 1))
	ev.NotifyJoin(mlNode(2, 2))
	ev.NotifyLeave(mlNode(2, 2)) // failed, no leaving metadata
	addr := net.JoinHostPort("127.0.0.2", strconv.Itoa(DefaultPort))
	cases := []struct {
		at   time.Duration
		want bool
	}{{0, true}, {9 * time.Second, true}, {10 * time.Second, false}, {time.Minute, false}}
	for _, tc := range cases {
		if got := n.recentlyFailed(start.Add(tc.at), 10*time.Second)[addr]; got != tc.want {
			t.Errorf("%s after the failure: skipped %v, want %v", tc.at, got, tc.want)
		}
	}
	if n.recentlyFailed(start, 10*time.Second)[net.JoinHostPort("127.0.0.1", strconv.Itoa(DefaultPort))] {
		t.Error("an alive member is listed as failed")
	}
}
