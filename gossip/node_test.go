package gossip

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"go.uber.org/goleak"

	"weavemesh.dev/weave/peer"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// kvState is a test CRDT: a map from key to the value with the highest
// version. Entries encode as [klen][key][version u64][vlen][value].
type kvState struct {
	mu sync.Mutex // guards m
	m  map[string]kvEntry
}

type kvEntry struct {
	ver uint64
	val string
}

func newKV() *kvState { return &kvState{m: make(map[string]kvEntry)} }

func appendKV(b []byte, k string, e kvEntry) []byte {
	b = append(b, byte(len(k)))
	b = append(b, k...)
	b = binary.BigEndian.AppendUint64(b, e.ver)
	b = binary.AppendUvarint(b, uint64(len(e.val)))
	return append(b, e.val...)
}

func decodeKV(b []byte) (string, kvEntry, []byte, error) {
	if len(b) < 1 || len(b) < 1+int(b[0])+8 {
		return "", kvEntry{}, nil, errors.New("kv: truncated")
	}
	k := string(b[1 : 1+b[0]])
	b = b[1+b[0]:]
	ver := binary.BigEndian.Uint64(b)
	b = b[8:]
	n, used := binary.Uvarint(b)
	if used <= 0 || uint64(len(b)-used) < n {
		return "", kvEntry{}, nil, errors.New("kv: truncated value")
	}
	b = b[used:]
	return k, kvEntry{ver: ver, val: string(b[:n])}, b[n:], nil
}

// set changes the local state and returns the delta to broadcast.
func (s *kvState) set(k string, ver uint64, val string) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[k] = kvEntry{ver, val}
	return appendKV(nil, k, kvEntry{ver, val})
}

func (s *kvState) get(k string) kvEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[k]
}

func (s *kvState) merge(k string, e kvEntry) bool {
	if cur, ok := s.m[k]; ok && cur.ver >= e.ver {
		return false
	}
	s.m[k] = e
	return true
}

func (s *kvState) FullState() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b []byte
	for k, e := range s.m {
		b = appendKV(b, k, e)
	}
	return b
}

func (s *kvState) MergeFull(data []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(data) > 0 {
		k, e, rest, err := decodeKV(data)
		if err != nil {
			return err
		}
		s.merge(k, e)
		data = rest
	}
	return nil
}

func (s *kvState) MergeDelta(data []byte) (bool, error) {
	k, e, rest, err := decodeKV(data)
	if err != nil {
		return false, err
	}
	if len(rest) != 0 {
		return false, errors.New("kv: trailing bytes")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.merge(k, e), nil
}

// Ports handed out in this process, so parallel tests never share one.
var (
	portsMu sync.Mutex
	ports   = map[int]bool{}
)

// freePort returns a loopback port free for both TCP and UDP.
func freePort(t *testing.T) int {
	t.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(port))
		l.Close()
		if err != nil {
			continue
		}
		u.Close()
		if ports[port] {
			continue
		}
		ports[port] = true
		return port
	}
	t.Fatal("no free tcp+udp port on 127.0.0.1")
	return 0
}

// testPeer is a Node with a kv channel and a log recorder.
type testPeer struct {
	*Node
	kv   *kvState
	ch   *Channel
	logs *recorder
	cfg  Config
}

var nameSeq struct {
	sync.Mutex
	n uint64
}

func nextName() peer.Name {
	nameSeq.Lock()
	defer nameSeq.Unlock()
	nameSeq.n++
	return peer.Name(0x02_00_00_00_00_00 | uint64(os.Getpid()&0xffff)<<16 | nameSeq.n)
}

// testConfig returns a config for a loopback peer with quick timings.
func testConfig(t *testing.T, nick string) Config {
	return Config{
		Name:           nextName(),
		Nickname:       nick,
		BindAddr:       "127.0.0.1",
		Port:           freePort(t),
		DataPort:       freePort(t),
		ProtoMin:       1,
		ProtoMax:       2,
		Version:        "test-1",
		DataDir:        t.TempDir(),
		RejoinInterval: 100 * time.Millisecond,
		Tune:           QuickTimings,
	}
}

// startPeer creates, registers and starts a peer; Shutdown runs at cleanup.
func startPeer(t *testing.T, cfg Config, join ...string) *testPeer {
	t.Helper()
	p := newPeer(t, cfg)
	if err := p.Start(context.Background(), join); err != nil {
		t.Fatal(err)
	}
	return p
}

func newPeer(t *testing.T, cfg Config) *testPeer {
	t.Helper()
	p := &testPeer{kv: newKV(), logs: &recorder{}, cfg: cfg}
	cfg.Logger = slog.New(p.logs)
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	p.Node = n
	t.Cleanup(func() {
		if err := n.Shutdown(); err != nil {
			t.Error(err)
		}
	})
	p.ch, err = n.Register("kv", p.kv)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func (p *testPeer) addr() string { return p.Local().GossipAddr.String() }

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// stateOf returns what p believes about name, or -1 if it does not list it.
func stateOf(p *testPeer, name peer.Name) MemberState {
	for _, m := range p.Members() {
		if m.Name == name {
			return m.State
		}
	}
	return MemberState(255)
}

func aliveCount(p *testPeer) int {
	n := 0
	for _, m := range p.Members() {
		if m.State == Alive {
			n++
		}
	}
	return n
}

// mesh starts n peers, all joining the first.
func mesh(t *testing.T, n int, tune func(*Config)) []*testPeer {
	t.Helper()
	var peers []*testPeer
	for i := range n {
		cfg := testConfig(t, fmt.Sprintf("peer-%d", i))
		if tune != nil {
			tune(&cfg)
		}
		var join []string
		if i > 0 {
			join = []string{peers[0].addr()}
		}
		peers = append(peers, startPeer(t, cfg, join...))
	}
	for _, p := range peers {
		waitFor(t, 10*time.Second, p.cfg.Nickname+" to see the whole mesh", func() bool { return aliveCount(p) == n })
	}
	return peers
}

func TestMeshFormsWithMetadata(t *testing.T) {
	t.Parallel()
	seed := startPeer(t, testConfig(t, "seed"))
	select {
	case <-seed.Changes(): // its own arrival
	default:
	}
	peers := []*testPeer{seed}
	for i := range 3 {
		peers = append(peers, startPeer(t, testConfig(t, fmt.Sprintf("p%d", i)), seed.addr()))
	}
	select {
	case <-seed.Changes():
	case <-time.After(10 * time.Second):
		t.Fatal("Changes did not fire when peers joined")
	}
	for _, p := range peers {
		waitFor(t, 10*time.Second, "full mesh", func() bool { return aliveCount(p) == len(peers) })
	}
	for _, p := range peers {
		ms := p.Members()
		for _, want := range peers {
			i := slices.IndexFunc(ms, func(m Member) bool { return m.Name == want.cfg.Name })
			if i < 0 {
				t.Fatalf("%s does not list %s", p.cfg.Nickname, want.cfg.Nickname)
			}
			m := ms[i]
			if m.Nickname != want.cfg.Nickname || m.Version != "test-1" || m.ProtoMin != 1 || m.ProtoMax != 2 ||
				m.GossipAddr.String() != fmt.Sprintf("127.0.0.1:%d", want.cfg.Port) ||
				m.DataAddr.String() != fmt.Sprintf("127.0.0.1:%d", want.cfg.DataPort) ||
				m.State != Alive || m.Since.IsZero() || m.MetaErr != nil {
				t.Fatalf("%s sees %s as %+v", p.cfg.Nickname, want.cfg.Nickname, m)
			}
		}
	}
	if l := seed.Local(); l.Name != seed.cfg.Name || l.Nickname != "seed" || l.State != Alive {
		t.Fatalf("Local() = %+v", l)
	}
	// Members learned through gossip are remembered for rejoining.
	waitFor(t, 5*time.Second, "learned peers", func() bool {
		return slices.Contains(peers[3].KnownPeers(), peers[1].addr())
	})
}

func TestDeltasConvergeByBroadcast(t *testing.T) {
	t.Parallel()
	peers := mesh(t, 4, func(c *Config) {
		c.Tune = func(mc *memberlist.Config) {
			QuickTimings(mc)
			mc.PushPullInterval = 0 // deltas only
			// Without push-pull to repair a miss, dissemination is only
			// very likely: send each delta more often than in production
			// so the test does not flake.
			mc.RetransmitMult = 6
		}
	})
	src := peers[1]
	if err := src.ch.Broadcast("a", src.kv.set("a", 1, "one")); err != nil {
		t.Fatal(err)
	}
	// A delta as large as one packet carries must arrive too.
	big := strings.Repeat("x", src.ch.MaxDelta("big")-len(appendKV(nil, "big", kvEntry{1, ""}))-1)
	delta := src.kv.set("big", 1, big)
	if len(delta) != src.ch.MaxDelta("big") {
		t.Fatalf("test delta is %d bytes, want %d", len(delta), src.ch.MaxDelta("big"))
	}
	if err := src.ch.Broadcast("big", delta); err != nil {
		t.Fatal(err)
	}
	for _, p := range peers {
		waitFor(t, 10*time.Second, p.cfg.Nickname+" to get the deltas", func() bool {
			return p.kv.get("a").val == "one" && p.kv.get("big").val == big
		})
	}
	var relayed uint64
	for _, p := range peers {
		relayed += p.Stats().BroadcastsRelayed
	}
	if relayed == 0 {
		t.Error("no peer passed news on")
	}
	if s := src.Stats(); s.BroadcastsQueued != 2 || s.BroadcastsSent == 0 {
		t.Errorf("source stats %+v", s)
	}
	// Every peer received the big delta at least once, frame included.
	for _, p := range peers {
		if p == src {
			continue
		}
		if s := p.Stats(); s.Bytes.BroadcastReceived < uint64(len(delta)) {
			t.Errorf("%s counted %d broadcast bytes received, want at least the %d of the big delta", p.cfg.Nickname, s.Bytes.BroadcastReceived, len(delta))
		}
	}
	if s := src.Stats(); s.Bytes.BroadcastSent < uint64(len(delta)) {
		t.Errorf("source counted %d broadcast bytes sent, want at least %d", s.Bytes.BroadcastSent, len(delta))
	}
}

func TestStateConvergesByPushPull(t *testing.T) {
	t.Parallel()
	peers := mesh(t, 3, nil)
	// Changed without any broadcast: only periodic push-pull spreads it.
	peers[0].kv.set("x", 7, "seven")
	peers[2].kv.set("y", 3, "three")
	for _, p := range peers {
		waitFor(t, 10*time.Second, p.cfg.Nickname+" to get full state", func() bool {
			return p.kv.get("x").val == "seven" && p.kv.get("y").val == "three"
		})
	}
	// A late joiner has the full state as soon as Start returns: the join
	// itself is a push-pull.
	late := startPeer(t, testConfig(t, "late"), peers[1].addr())
	if late.kv.get("x").val != "seven" || late.kv.get("y").val != "three" {
		t.Fatalf("late joiner state after Start: %v", late.kv.m)
	}
	if late.Stats().PushPullReceived == 0 {
		t.Fatal("late joiner counted no push-pull")
	}
	if s := late.Stats(); s.Bytes.PushPullReceived == 0 || s.Bytes.PushPullSent == 0 {
		t.Fatalf("late joiner push-pull bytes %+v", s.Bytes)
	}
}

func TestBroadcastLimitsAndInvalidation(t *testing.T) {
	t.Parallel()
	plain := newPeer(t, testConfig(t, "plain"))
	cfg := testConfig(t, "secure")
	cfg.SecretKey = bytes.Repeat([]byte{1}, 32)
	cfg.Label = "mesh-x"
	secure := newPeer(t, cfg)

	for _, p := range []*testPeer{plain, secure} {
		max := p.ch.MaxDelta("key")
		if max < 1000 || max > 1400 {
			t.Fatalf("MaxDelta %d is implausible for a 1400-byte packet", max)
		}
		err := p.ch.Broadcast("key", make([]byte, max+1))
		if err == nil || !strings.Contains(err.Error(), "does not fit one gossip packet") ||
			!strings.Contains(err.Error(), strconv.Itoa(max)) {
			t.Fatalf("oversized broadcast: %v", err)
		}
		if err := p.ch.Broadcast("key", make([]byte, max)); err != nil {
			t.Fatalf("broadcast of MaxDelta bytes: %v", err)
		}
		if err := p.ch.Broadcast(strings.Repeat("k", 256), nil); err == nil {
			t.Fatal("256-byte key accepted")
		}
	}
	if secure.ch.MaxDelta("k") >= plain.ch.MaxDelta("k") {
		t.Fatal("encryption and label overhead not accounted for")
	}

	p := plain
	p.queue.Reset()
	for _, b := range []struct{ key, val string }{{"k", "v1"}, {"j", "x"}, {"k", "v2"}, {"", "u1"}, {"", "u2"}} {
		if err := p.ch.Broadcast(b.key, []byte(b.val)); err != nil {
			t.Fatal(err)
		}
	}
	if n := p.queue.NumQueued(); n != 4 {
		t.Fatalf("%d queued, want 4 (v1 replaced by v2)", n)
	}
	var got []string
	for _, m := range p.queue.GetBroadcasts(3, 10000) {
		f, err := decodeFrame(m)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, string(f.key)+"="+string(f.payload))
	}
	slices.Sort(got)
	if want := []string{"=u1", "=u2", "j=x", "k=v2"}; !slices.Equal(got, want) {
		t.Fatalf("queued %v, want %v", got, want)
	}

	// Relayed deltas replace older ones from their own origin only.
	p.queue.Reset()
	other := peer.Name(0x02bbbbbbbbbb)
	d := (*delegate)(p.Node)
	if err := p.ch.Broadcast("k", appendKV(nil, "k", kvEntry{1, "mine"})); err != nil {
		t.Fatal(err)
	}
	d.NotifyMsg(appendDelta(nil, "kv", other, 5, "k", appendKV(nil, "o", kvEntry{5, "theirs"})))
	d.NotifyMsg(appendDelta(nil, "kv", other, 6, "k", appendKV(nil, "o", kvEntry{6, "theirs"})))
	d.NotifyMsg(appendDelta(nil, "kv", other, 4, "k", appendKV(nil, "o", kvEntry{4, "stale"})))
	if n := p.queue.NumQueued(); n != 2 {
		t.Fatalf("%d queued, want 2: this peer's k and the other's newest k", n)
	}
	got = got[:0]
	for _, m := range p.queue.GetBroadcasts(3, 10000) {
		f, _ := decodeFrame(m)
		got = append(got, fmt.Sprintf("%s/%d", f.from, f.seq%1000))
	}
	if !slices.Contains(got, other.String()+"/6") {
		t.Fatalf("queued %v lacks the newest relayed delta", got)
	}
	if s := p.Stats(); s.BroadcastsRelayed != 2 || s.BroadcastsReceived != 3 {
		t.Fatalf("stats %+v", s)
	}
}

func TestSendAndOnMessage(t *testing.T) {
	t.Parallel()
	peers := mesh(t, 2, nil)
	a, b := peers[0], peers[1]
	type msg struct {
		from peer.Name
		body []byte
	}
	got := make(chan msg, 4)
	b.ch.OnMessage(func(from peer.Name, m []byte) { got <- msg{from, m} })
	big := bytes.Repeat([]byte("0123456789"), 20000) // far beyond one packet
	for _, body := range [][]byte{[]byte("hello"), big} {
		if err := a.ch.Send(b.cfg.Name, body); err != nil {
			t.Fatal(err)
		}
		select {
		case m := <-got:
			if m.from != a.cfg.Name || !bytes.Equal(m.body, body) {
				t.Fatalf("got %d bytes from %s", len(m.body), m.from)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("message not delivered")
		}
	}
	if err := a.ch.Send(a.cfg.Name, nil); err == nil {
		t.Fatal("send to self accepted")
	}
	if err := a.ch.Send(0x02ffffffffff, nil); err == nil || !strings.Contains(err.Error(), "no such member") {
		t.Fatalf("send to stranger: %v", err)
	}
	// No handler on a: counted, not crashed.
	if err := b.ch.Send(a.cfg.Name, []byte("x")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "unhandled message counted", func() bool { return a.Stats().UnicastUnhandled == 1 })
	if s := b.Stats(); s.UnicastReceived != 2 || a.Stats().UnicastSent != 2 {
		t.Fatalf("stats b=%+v a=%+v", s, a.Stats())
	}
	// The two bodies plus a small frame header each, both ways alike.
	body := uint64(len("hello") + len(big))
	sent, recv := a.Stats().Bytes.UnicastSent, b.Stats().Bytes.UnicastReceived
	if sent != recv || sent < body || sent > body+2*64 {
		t.Fatalf("unicast bytes sent %d, received %d; want equal, %d plus framing", sent, recv, body)
	}
}

func TestLeaveKillAndRestart(t *testing.T) {
	t.Parallel()
	peers := mesh(t, 3, nil)
	a, b, c := peers[0], peers[1], peers[2]

	if err := c.Leave(2 * time.Second); err != nil {
		t.Fatal(err)
	}
	for _, p := range []*testPeer{a, b} {
		waitFor(t, 5*time.Second, p.cfg.Nickname+" to see the peer left", func() bool { return stateOf(p, c.cfg.Name) == Left })
	}
	if s := c.Local().State; s != Left {
		t.Fatalf("leaving peer sees itself %s", s)
	}
	if err := c.Connect([]string{a.addr()}); err == nil {
		t.Fatal("Connect after Leave accepted")
	}
	if err := c.Shutdown(); err != nil {
		t.Fatal(err)
	}

	// Kill b: no leave message.
	if err := b.Shutdown(); err != nil {
		t.Fatal(err)
	}
	if err := b.Shutdown(); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}
	waitFor(t, 10*time.Second, "the killed peer to be declared dead", func() bool {
		s := stateOf(a, b.cfg.Name)
		return s == Dead || s == Suspect
	})

	// Restart b with the same name, address and data dir and no peers
	// given: it rejoins through the remembered ones.
	if !slices.Contains(b.KnownPeers(), a.addr()) {
		t.Fatalf("killed peer remembered %v, not %s", b.KnownPeers(), a.addr())
	}
	b2 := startPeer(t, b.cfg)
	waitFor(t, 10*time.Second, "the restarted peer to rejoin", func() bool {
		return stateOf(a, b.cfg.Name) == Alive && stateOf(b2, a.cfg.Name) == Alive
	})
}

func TestForgetStopsRejoining(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, "lonely")
	clock := newManualClock(time.Unix(1_800_000_000, 0))
	cfg.Clock = clock
	absent := fmt.Sprintf("127.0.0.1:%d", freePort(t)) // nobody listens
	p := startPeer(t, cfg, absent)
	if !slices.Contains(p.KnownPeers(), absent) {
		t.Fatalf("known peers %v lack %s", p.KnownPeers(), absent)
	}
	// Start's round failed once; backoff (half an interval) lets the
	// next round try again. Each advance returns after its round.
	clock.advance(cfg.RejoinInterval)
	if s := p.Stats(); s.RejoinRounds != 2 || s.JoinFailures != 2 {
		t.Fatalf("after one interval: %d rounds, %d join failures; want 2 and 2", s.RejoinRounds, s.JoinFailures)
	}
	if _, ok := p.logs.find("peer "+absent+": cannot join", "will keep trying"); !ok {
		t.Fatalf("join failure not logged clearly:\n%s", p.logs.all())
	}
	if err := p.Forget([]string{absent}); err != nil {
		t.Fatal(err)
	}
	if slices.Contains(p.KnownPeers(), absent) {
		t.Fatal("forgotten peer still known")
	}
	attempts := p.Stats().JoinAttempts
	r := p.Stats().RejoinRounds
	// Backoff is at most 8 rounds; 20 rounds would include a retry.
	clock.advance(20 * cfg.RejoinInterval)
	if got := p.Stats().RejoinRounds; got != r+20 {
		t.Fatalf("%d rounds in 20 intervals", got-r)
	}
	if got := p.Stats().JoinAttempts; got != attempts {
		t.Fatalf("%d join attempts after Forget", got-attempts)
	}
	data, err := os.ReadFile(filepath.Join(cfg.DataDir, KnownPeersFile))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(data), absent) {
		t.Fatalf("known-peers file still lists %s:\n%s", absent, data)
	}
}

// A member that left stays listed for DeadRetention, by the node's clock,
// and the first rejoin round after that prunes it from the table.
func TestLeftMemberPrunedAfterRetention(t *testing.T) {
	t.Parallel()
	clock := newManualClock(time.Unix(1_800_000_000, 0))
	peers := mesh(t, 2, func(c *Config) {
		c.Clock, c.RejoinInterval, c.DeadRetention = clock, 10*time.Second, time.Minute
	})
	a, b := peers[0], peers[1]
	if err := b.Leave(2 * time.Second); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the peer to be seen leaving", func() bool { return stateOf(a, b.cfg.Name) == Left })
	// b left at the clock's start; rounds run every 10s of clock time.
	clock.advance(55 * time.Second)
	if s := stateOf(a, b.cfg.Name); s != Left {
		t.Fatalf("after 55s the peer that left is listed as %v", s)
	}
	clock.advance(20 * time.Second) // the round at 70s prunes it
	a.mu.RLock()
	_, kept := a.members[b.cfg.Name]
	a.mu.RUnlock()
	if kept || stateOf(a, b.cfg.Name) != MemberState(255) {
		t.Fatal("a peer that left was not pruned after DeadRetention")
	}
}

func TestSecretKeyAndLabel(t *testing.T) {
	t.Parallel()
	key1 := bytes.Repeat([]byte{1}, 16)
	peers := mesh(t, 2, func(c *Config) { c.SecretKey = key1; c.Label = "mesh-a" })
	a := peers[0]

	// Encrypted and labelled gossip still carries a full-packet delta.
	big := strings.Repeat("z", peers[1].ch.MaxDelta("k")-len(appendKV(nil, "k", kvEntry{2, ""}))-1)
	delta := peers[1].kv.set("k", 2, big)
	if len(delta) != peers[1].ch.MaxDelta("k") {
		t.Fatalf("test delta is %d bytes, want %d", len(delta), peers[1].ch.MaxDelta("k"))
	}
	if err := peers[1].ch.Broadcast("k", delta); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the delta over encrypted gossip", func() bool { return a.kv.get("k").val == big })

	tests := []struct {
		name  string
		key   []byte
		label string
		hint  string
	}{
		{"other key", bytes.Repeat([]byte{2}, 16), "mesh-a", "same password"},
		{"no key", nil, "mesh-a", "same password"},
		{"other label", key1, "mesh-b", "mesh name mismatch"},
	}
	for _, tt := range tests {
		cfg := testConfig(t, tt.name)
		cfg.SecretKey, cfg.Label = tt.key, tt.label
		stranger := startPeer(t, cfg, a.addr()) // Start succeeds; the join does not
		if s := stranger.Stats(); s.JoinFailures == 0 {
			t.Fatalf("%s: join did not fail: %+v", tt.name, s)
		}
		if _, ok := stranger.logs.find("peer "+a.addr()+": ", "will keep trying"); !ok {
			t.Fatalf("%s: joiner's log does not say why:\n%s", tt.name, stranger.logs.all())
		}
		waitFor(t, 5*time.Second, tt.name+": the mesh to log the refusal", func() bool {
			_, ok := a.logs.find(tt.hint)
			return ok
		})
		if n := len(stranger.Members()); n != 1 {
			t.Fatalf("%s: stranger lists %d members", tt.name, n)
		}
		if s := stateOf(a, cfg.Name); s != MemberState(255) {
			t.Fatalf("%s: mesh lists the stranger as %s", tt.name, s)
		}
		if err := stranger.Shutdown(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestForeignMembers(t *testing.T) {
	t.Parallel()
	a := startPeer(t, testConfig(t, "a"))
	// A member with a valid name but metadata this peer cannot read is
	// listed with MetaErr; one whose name is not a peer name is refused.
	raw := func(name string, meta []byte) {
		mc := memberlist.DefaultLocalConfig()
		QuickTimings(mc)
		mc.Name = name
		mc.BindAddr = "127.0.0.1"
		mc.BindPort = freePort(t)
		mc.AdvertisePort = mc.BindPort
		mc.LogOutput = nil
		mc.Logger = newMemberlistLogger(slog.New(slog.DiscardHandler), nil)
		mc.Delegate = rawMeta(meta)
		mc.DelegateProtocolVersion, mc.DelegateProtocolMin, mc.DelegateProtocolMax = 1, 1, 1
		ml, err := memberlist.Create(mc)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ml.Shutdown() })
		if _, err := ml.Join([]string{a.addr()}); err != nil {
			t.Fatal(err)
		}
	}
	odd := peer.Name(0x02aaaaaaaaaa)
	raw(odd.String(), []byte{1, 2, 3})
	raw("not-a-peer", nil)
	waitFor(t, 5*time.Second, "the odd member", func() bool { return stateOf(a, odd) == Alive })
	waitFor(t, 5*time.Second, "the foreign name refused", func() bool {
		_, ok := a.logs.find("refusing a gossip member", "not-a-peer")
		return ok
	})
	for _, m := range a.Members() {
		if m.Name == odd && (m.MetaErr == nil || m.DataAddr.IsValid()) {
			t.Fatalf("odd member listed as %+v", m)
		}
	}
	if n := len(a.Members()); n != 2 {
		t.Fatalf("%d members listed; the foreign name should be refused", n)
	}
	if a.Stats().DecodeErrors == 0 {
		t.Fatal("bad metadata not counted")
	}
	if _, ok := a.logs.find("metadata this peer cannot read"); !ok {
		t.Fatalf("bad metadata not logged:\n%s", a.logs.all())
	}
}

// rawMeta is a memberlist delegate advertising fixed metadata.
type rawMeta []byte

func (r rawMeta) NodeMeta(int) []byte           { return r }
func (rawMeta) NotifyMsg([]byte)                {}
func (rawMeta) GetBroadcasts(int, int) [][]byte { return nil }
func (rawMeta) LocalState(bool) []byte          { return nil }
func (rawMeta) MergeRemoteState([]byte, bool)   {}

func TestMalformedInputIsCounted(t *testing.T) {
	t.Parallel()
	p := newPeer(t, testConfig(t, "target"))
	d := (*delegate)(p.Node)
	d.NotifyMsg([]byte{99})
	d.NotifyMsg(appendDelta(nil, "kv", 0x02aaaaaaaaaa, 1, "k", []byte{1})) // kv refuses it
	d.NotifyMsg(appendDelta(nil, "newer-channel", 0x02aaaaaaaaaa, 1, "k", nil))
	d.MergeRemoteState([]byte{1, 5}, false)
	d.MergeRemoteState(appendPushPull(nil, []stateEntry{{channel: []byte("newer-channel"), state: []byte("x")}}), false)
	s := p.Stats()
	if s.DecodeErrors != 2 || s.MergeErrors != 1 || s.UnknownChannel != 2 {
		t.Fatalf("stats %+v", s)
	}
	if _, ok := p.logs.find("malformed gossip"); !ok {
		t.Fatalf("malformed input not logged:\n%s", p.logs.all())
	}
}

func TestLifecycleErrors(t *testing.T) {
	t.Parallel()
	p := newPeer(t, testConfig(t, "life"))
	if err := p.Connect([]string{"127.0.0.1:1"}); err == nil {
		t.Fatal("Connect before Start accepted")
	}
	if _, err := p.Register("kv", newKV()); err == nil {
		t.Fatal("duplicate channel accepted")
	}
	if _, err := p.Register("bad name", newKV()); err == nil {
		t.Fatal("channel name with a space accepted")
	}
	if err := p.Start(context.Background(), []string{"h:0"}); err == nil {
		t.Fatal("bad peer address accepted")
	}
	if err := p.Start(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	if err := p.Start(context.Background(), nil); err == nil {
		t.Fatal("second Start accepted")
	}
	if _, err := p.Register("late", newKV()); err == nil {
		t.Fatal("Register after Start accepted")
	}
	if err := p.Shutdown(); err != nil {
		t.Fatal(err)
	}
	if err := p.Leave(time.Second); err == nil {
		t.Fatal("Leave after Shutdown accepted")
	}
	if err := p.ch.Broadcast("k", nil); err == nil {
		t.Fatal("Broadcast after Shutdown accepted")
	}
	// The port is free again.
	again, err := New(p.cfg)
	if err != nil {
		t.Fatalf("port not released: %v", err)
	}
	if err := again.Shutdown(); err != nil {
		t.Fatal(err)
	}
}
