package dns

import (
	"context"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"weavemesh.dev/weave/gossip"
	"weavemesh.dev/weave/peer"
)

// gossipPeer is a Store replicated over a real gossip node on loopback.
type gossipPeer struct {
	node  *gossip.Node
	store *Store
	cfg   gossip.Config
}

// rarePushPull tunes memberlist for loopback but leaves full-state
// exchanges to joins, so only the join can bring records across.
func rarePushPull(c *memberlist.Config) {
	gossip.QuickTimings(c)
	c.PushPullInterval = time.Hour
}

var gossipNameSeq struct {
	sync.Mutex
	n uint64
}

func gossipTestConfig(t *testing.T, nick string) gossip.Config {
	gossipNameSeq.Lock()
	gossipNameSeq.n++
	name := peer.Name(0x06_00_00_00_00_00 | uint64(os.Getpid()&0xffff)<<16 | gossipNameSeq.n)
	gossipNameSeq.Unlock()
	return gossip.Config{Name: name, Nickname: nick, BindAddr: "127.0.0.1", Port: loopbackPort(t),
		DataPort: 1, ProtoMin: 1, ProtoMax: 1, DataDir: t.TempDir(),
		RejoinInterval: 100 * time.Millisecond, Tune: rarePushPull}
}

// loopbackPort returns a port free on loopback for both TCP and UDP.
func loopbackPort(t *testing.T) int {
	t.Helper()
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
		return port
	}
	t.Fatal("no free tcp+udp port on 127.0.0.1")
	return 0
}

// startGossipPeer runs a Store on a gossip node that joins join, with the
// housekeeping a router does (Refresh every 100 ms); stop ends both.
func startGossipPeer(t *testing.T, cfg gossip.Config, join ...string) (p *gossipPeer, stop func()) {
	t.Helper()
	n, err := gossip.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	peers := func() []PeerStatus {
		var out []PeerStatus
		for _, m := range n.Members() {
			out = append(out, PeerStatus{Name: m.Name, Alive: m.State == gossip.Alive || m.State == gossip.Suspect, Since: m.Since})
		}
		return out
	}
	s, err := NewStore(StoreOptions{Self: cfg.Name, Peers: peers})
	if err != nil {
		t.Fatal(err)
	}
	ch, err := n.Register("dns", s)
	if err != nil {
		t.Fatal(err)
	}
	ch.OnMessage(s.HandleMessage)
	s.SetTransport(ch)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tk := time.NewTicker(100 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tk.C:
				s.Refresh()
			}
		}
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			<-done
			s.Close()
			if err := n.Shutdown(); err != nil {
				t.Error(err)
			}
		})
	}
	t.Cleanup(stop)
	if err := n.Start(context.Background(), join); err != nil {
		t.Fatal(err)
	}
	return &gossipPeer{node: n, store: s, cfg: cfg}, stop
}

func (p *gossipPeer) addr() string { return p.node.Local().GossipAddr.String() }

func (p *gossipPeer) memberState(name peer.Name) (gossip.MemberState, bool) {
	for _, m := range p.node.Members() {
		if m.Name == name {
			return m.State, true
		}
	}
	return 0, false
}

// waitUntil polls cond every 10 ms, failing the test after d.
func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			t.Fatalf("%s: not after %v", what, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRecordsBackSoonAfterRestart restarts a peer (same name, address and
// data dir) and expects the other peer's records on it within a couple of
// seconds of the join, long before any periodic full-state exchange. The
// other peer may still list the restarted one as dead or as alive from its
// previous life; both cases are covered.
func TestRecordsBackSoonAfterRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped in -short: runs real gossip on loopback")
	}
	for _, tc := range []struct {
		name     string
		seenDead bool // the other peer declares the stopped one dead first
		// farRejoins: the other peer's rejoin loop may reach the restarted
		// one before its channel is registered; otherwise only the
		// restarted peer joins.
		farRejoins bool
	}{
		{"declared dead, restarted peer joins", true, false},
		{"declared dead, both rejoin", true, true},
		{"still alive", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			far := netip.MustParseAddr("10.32.0.7")
			near := netip.MustParseAddr("10.32.0.8")
			a, stopA := startGossipPeer(t, gossipTestConfig(t, "restarted"))
			bcfg := gossipTestConfig(t, "far")
			if !tc.farRejoins {
				bcfg.RejoinInterval = time.Hour
			}
			b, _ := startGossipPeer(t, bcfg, a.addr())
			if _, err := b.store.Add("far.weave.local.", []netip.Addr{far}); err != nil {
				t.Fatal(err)
			}
			if _, err := a.store.Add("near.weave.local.", []netip.Addr{near}); err != nil {
				t.Fatal(err)
			}
			waitUntil(t, 10*time.Second, "far's record on the first run", func() bool {
				return len(a.store.Lookup("far.weave.local.")) == 1
			})
			waitUntil(t, 10*time.Second, "near's record on far", func() bool {
				return len(b.store.Lookup("near.weave.local.")) == 1
			})

			stopA()
			if tc.seenDead {
				waitUntil(t, 10*time.Second, "the stopped peer declared dead", func() bool {
					s, ok := b.memberState(a.cfg.Name)
					return ok && s == gossip.Dead
				})
			}
			restarted := time.Now()
			a2, _ := startGossipPeer(t, a.cfg, b.addr())
			if _, err := a2.store.Add("near.weave.local.", []netip.Addr{near}); err != nil {
				t.Fatal(err)
			}
			waitUntil(t, 3*time.Second, "far's record on the restarted peer", func() bool {
				return len(a2.store.Lookup("far.weave.local.")) == 1
			})
			t.Logf("far's record came back %v after the restart", time.Since(restarted))
			waitUntil(t, 3*time.Second, "near's record on far after the restart", func() bool {
				return len(b.store.Lookup("near.weave.local.")) == 1
			})
		})
	}
}
