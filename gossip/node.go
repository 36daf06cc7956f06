// Package gossip owns mesh membership over memberlist: who the peers are
// and how to reach them (node metadata), replicated state that other
// packages register as channels (deltas spread by gossip broadcasts, full
// state by push-pull), reliable unicast between peers, the known-peers
// file with the loop that rejoins remembered peers, and the mesh's secret
// key and label. There is no central store: every peer holds the state and
// converges with the others.
package gossip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-sockaddr"
	"github.com/hashicorp/memberlist"

	"weavemesh.dev/weave/peer"
)

// memberlist packet framing overheads (memberlist net.go and security.go),
// used to size the largest broadcast that fits one packet.
const (
	compoundHeaderOverhead = 2
	compoundOverhead       = 2
	userMsgOverhead        = 1
	encryptOverhead        = 45 // the larger of memberlist's two encryption versions
)

// Node is this peer's membership of the mesh.
type Node struct {
	cfg      Config
	log      *slog.Logger
	logLimit *limiter
	ml       *memberlist.Memberlist // set once in New
	queue    *memberlist.TransmitLimitedQueue
	maxFrame int // largest framed broadcast that fits one packet
	meta     atomic.Pointer[[]byte]
	known    *knownPeers
	changes  chan struct{}
	alive    atomic.Int64 // members in state Alive, self included
	// aliveHash is the sum of mix over the names of those members, kept
	// with alive so that anti-entropy's digests do not walk the table.
	aliveHash atomic.Uint64
	stats     counters
	channels  atomic.Pointer[channelSet]
	// seq numbers this peer's deltas. It starts at the clock so that a
	// restarted peer's deltas are newer than its previous run's.
	seq   atomic.Uint64
	relay *relaySeen
	aeState
	aeInterval time.Duration // anti-entropy round; not positive: off
	deadGossip time.Duration // how long a failed peer is not rejoined

	// cbMu fences delegate callbacks against Shutdown: callbacks hold it
	// for reading, Shutdown takes it for writing once closed is set, so no
	// State or handler runs after Shutdown returns.
	cbMu   sync.RWMutex
	closed atomic.Bool

	mu      sync.RWMutex // guards members
	members map[peer.Name]*memberEntry
	order   []*memberEntry // the entries of members, sorted by name
	// tableVersion counts changes of members, made with mu held for
	// writing; view is the sorted copy Members shares, rebuilt when the
	// version moved; viewGen numbers the views built.
	tableVersion atomic.Uint64
	view         atomic.Pointer[memberView]
	viewGen      atomic.Uint64

	lifeMu  sync.Mutex // guards started, left, shut, cancel; held across Leave
	started bool
	left    atomic.Bool
	shut    bool
	cancel  context.CancelFunc
	wg      sync.WaitGroup // the rejoin loop and Connect calls in flight
}

// New validates cfg, binds the gossip port and starts memberlist, alone:
// it joins nobody until Start.
func New(cfg Config) (*Node, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("gossip: create data dir: %w", err)
	}
	n := &Node{
		cfg:      cfg,
		log:      cfg.Logger,
		logLimit: newLimiter(10 * time.Second),
		known:    newKnownPeers(cfg.DataDir, cfg.LearnedPeerTTL, cfg.Port),
		changes:  make(chan struct{}, 1),
		members:  make(map[peer.Name]*memberEntry),
		relay:    newRelaySeen(),
	}
	n.seq.Store(uint64(time.Now().UnixNano()))
	n.channels.Store(&channelSet{byName: map[string]*Channel{}})
	warnings, err := n.known.load()
	if err != nil {
		return nil, fmt.Errorf("gossip: %w", err)
	}
	for _, w := range warnings {
		n.log.Warn("ignoring a bad line in the known-peers file", "file", n.known.path, "err", w)
	}
	n.setMeta(false)

	mc := cfg.memberlistConfig(n)
	n.aeInterval = n.aeEvery(mc)
	// At most one rejoin round skips a peer for it, so a partition that
	// outlasts memberlist's gossip to the dead still heals within a round
	// more than before.
	n.deadGossip = min(mc.GossipToTheDeadTime, cfg.RejoinInterval)
	n.aeAsync = newAsyncSender(aeQueueLen, n.aeSend, n.aeFailed)
	n.maxFrame = mc.UDPBufferSize - compoundHeaderOverhead - compoundOverhead - userMsgOverhead
	if mc.Label != "" {
		n.maxFrame -= 2 + len(mc.Label)
	}
	if len(mc.SecretKey) > 0 {
		n.maxFrame -= encryptOverhead
	}
	n.queue = &memberlist.TransmitLimitedQueue{
		NumNodes:       func() int { return max(1, int(n.alive.Load())) },
		RetransmitMult: mc.RetransmitMult,
	}
	if cfg.AdvertiseAddr == "" && net.ParseIP(cfg.BindAddr).IsUnspecified() {
		// memberlist advertises a private address unless told one, and
		// fails without one only after it opened its sockets; on a host
		// with public addresses only, say at once which flag to give.
		if ip, err := sockaddr.GetPrivateIP(); err == nil && ip == "" {
			return nil, fmt.Errorf("gossip: this host has no private IPv4 address to advertise to other peers: give the address they should reach it at with --advertise-addr%s", advertiseHint())
		}
	}
	t, err := NewTransport(TransportConfig{BindAddr: cfg.BindAddr, Port: cfg.Port, BytesSent: cfg.BytesSent, Logger: n.log})
	if err != nil {
		return nil, fmt.Errorf("gossip: start on %s port %d (tcp+udp; is another router using it?): %w",
			cfg.BindAddr, cfg.Port, err)
	}
	mc.Transport = t
	ml, err := memberlist.Create(mc)
	if err != nil {
		t.Shutdown()
		return nil, fmt.Errorf("gossip: start memberlist on %s port %d: %w", cfg.BindAddr, cfg.Port, err)
	}
	n.ml = ml
	return n, nil
}

// setMeta publishes this peer's metadata.
func (n *Node) setMeta(leaving bool) {
	b := appendMeta(nil, meta{
		leaving:  leaving,
		protoMin: n.cfg.ProtoMin,
		protoMax: n.cfg.ProtoMax,
		dataPort: uint16(n.cfg.DataPort),
		nickname: n.cfg.Nickname,
		version:  n.cfg.Version,
		fastdp:   n.cfg.Fastdp,
	})
	n.meta.Store(&b)
}

// Register adds replicated state under a channel name, the same on every
// peer. Register all channels before Start.
func (n *Node) Register(name string, s State) (*Channel, error) {
	if err := checkChannelName(name); err != nil {
		return nil, fmt.Errorf("gossip: register: %w", err)
	}
	if name == aeChannel {
		return nil, fmt.Errorf("gossip: register channel %q: the name is reserved for anti-entropy", name)
	}
	if s == nil {
		return nil, fmt.Errorf("gossip: register channel %q: State is nil", name)
	}
	n.lifeMu.Lock()
	defer n.lifeMu.Unlock()
	if n.started || n.shut {
		return nil, fmt.Errorf("gossip: register channel %q: register before Start", name)
	}
	old := n.channels.Load()
	if _, dup := old.byName[name]; dup {
		return nil, fmt.Errorf("gossip: register channel %q: already registered", name)
	}
	c := &Channel{n: n, name: name, state: s}
	c.async = newAsyncSender(asyncQueueLen, c.Send, c.asyncFailed)
	set := &channelSet{byName: make(map[string]*Channel, len(old.byName)+1), list: append(old.list[:len(old.list):len(old.list)], c)}
	for k, v := range old.byName {
		set.byName[k] = v
	}
	set.byName[name] = c
	n.channels.Store(set)
	return c, nil
}

// Start joins the given peers (host or host:port, default port
// Config.Port) and the remembered ones, remembers the given ones, and runs
// the rejoin loop until Shutdown. It succeeds when nobody answers: the
// first peer of a mesh has nobody to join, and the loop keeps trying. ctx
// bounds the initial join attempts only.
func (n *Node) Start(ctx context.Context, peers []string) error {
	addrs, err := n.normalize(peers)
	if err != nil {
		return fmt.Errorf("gossip: start: %w", err)
	}
	n.lifeMu.Lock()
	if n.shut {
		n.lifeMu.Unlock()
		return errors.New("gossip: start: node is shut down")
	}
	if n.started {
		n.lifeMu.Unlock()
		return errors.New("gossip: start: already started")
	}
	n.started = true
	loopCtx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	n.wg.Add(1) // for the loop; Shutdown now waits for the initial round too
	n.lifeMu.Unlock()

	n.known.name(addrs)
	if err := n.known.save(); err != nil {
		n.log.Warn("cannot remember peers; they will be forgotten at restart", "err", err)
	}
	// The initial round ends early on ctx or Shutdown, whichever first.
	roundCtx, cancelRound := context.WithCancel(ctx)
	stop := context.AfterFunc(loopCtx, cancelRound)
	n.round(roundCtx)
	stop()
	cancelRound()
	go n.loop(loopCtx, n.cfg.Clock.NewTicker(n.cfg.RejoinInterval))
	if n.aeInterval > 0 {
		n.wg.Add(1)
		go n.aeLoop(loopCtx, n.aeInterval)
	}
	return nil
}

// Connect joins peers now and remembers them; the rejoin loop keeps
// joining them whenever they are not members. It returns an error when
// none of them could be joined; they stay remembered all the same.
func (n *Node) Connect(peers []string) error {
	addrs, err := n.normalize(peers)
	if err != nil {
		return fmt.Errorf("gossip: connect: %w", err)
	}
	if err := n.begin("connect"); err != nil {
		return err
	}
	defer n.wg.Done()
	n.known.name(addrs)
	if err := n.known.save(); err != nil {
		return fmt.Errorf("gossip: connect: %w", err)
	}
	joined, errs := n.joinAll(context.Background(), addrs)
	if joined == 0 && len(errs) > 0 {
		return fmt.Errorf("gossip: connect: could not join any of %v (remembered; retrying every %s): %w",
			addrs, n.cfg.RejoinInterval, errors.Join(errs...))
	}
	return nil
}

// Forget stops (re)joining peers and removes them from the known-peers
// file. A forgotten address is not learned from gossip again until
// Connect names it.
func (n *Node) Forget(peers []string) error {
	addrs, err := n.normalize(peers)
	if err != nil {
		return fmt.Errorf("gossip: forget: %w", err)
	}
	n.known.forget(addrs)
	if err := n.known.save(); err != nil {
		return fmt.Errorf("gossip: forget: %w", err)
	}
	return nil
}

// KnownPeers returns the remembered peer addresses, sorted.
func (n *Node) KnownPeers() []string { return n.known.list() }

// Changes signals, coalesced, that membership or member metadata changed;
// call Members to see the new state.
func (n *Node) Changes() <-chan struct{} { return n.changes }

// Leave tells the mesh this peer is leaving on purpose, so others list it
// as Left rather than Dead, and stops the rejoin loop from joining again.
// It waits up to timeout (5s if not positive) for the news to go out.
// Call Shutdown after.
func (n *Node) Leave(timeout time.Duration) error {
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	n.lifeMu.Lock()
	defer n.lifeMu.Unlock()
	if n.shut {
		return errors.New("gossip: leave: node is shut down")
	}
	if n.left.Swap(true) {
		return nil
	}
	deadline := time.Now().Add(timeout)
	// Metadata first: the leaving flag tells others that the departure
	// which follows is on purpose.
	n.setMeta(true)
	n.mu.Lock()
	if e, ok := n.members[n.cfg.Name]; ok {
		e.leaving = true
	}
	n.mu.Unlock()
	if err := n.ml.UpdateNode(timeout / 2); err != nil {
		n.log.Debug("leaving: metadata update not fully sent", "err", err)
	}
	if err := n.ml.Leave(max(time.Until(deadline), time.Millisecond)); err != nil {
		return fmt.Errorf("gossip: leave: %w", err)
	}
	return nil
}

// Shutdown stops memberlist and the rejoin loop and waits for them, with
// no leave message: others notice the silence and declare this peer dead.
// Call Leave first for a clean stop. Shutdown is idempotent.
func (n *Node) Shutdown() error {
	n.lifeMu.Lock()
	if n.shut {
		n.lifeMu.Unlock()
		return nil
	}
	n.shut = true
	if n.cancel != nil {
		n.cancel()
	}
	n.lifeMu.Unlock()

	n.wg.Wait()
	n.closed.Store(true)
	// Before memberlist goes: a queued send in flight finishes (or fails
	// fast now that closed is set) and nothing is sent after.
	for _, c := range n.channels.Load().list {
		c.async.stop()
	}
	n.aeAsync.stop()
	err := n.ml.Shutdown()
	n.cbMu.Lock() // wait for callbacks in flight
	n.cbMu.Unlock()
	if serr := n.known.save(); serr != nil {
		err = errors.Join(err, serr)
	}
	if err != nil {
		return fmt.Errorf("gossip: shutdown: %w", err)
	}
	return nil
}

// begin admits an operation that needs a started node still in the mesh,
// counting it in wg so Shutdown waits for it; call wg.Done when finished.
func (n *Node) begin(op string) error {
	n.lifeMu.Lock()
	defer n.lifeMu.Unlock()
	switch {
	case n.shut:
		return fmt.Errorf("gossip: %s: node is shut down", op)
	case !n.started:
		return fmt.Errorf("gossip: %s: call Start first", op)
	case n.left.Load():
		return fmt.Errorf("gossip: %s: this peer has left the mesh", op)
	}
	n.wg.Add(1)
	return nil
}

func (n *Node) normalize(peers []string) ([]string, error) {
	out := make([]string, 0, len(peers))
	for _, p := range peers {
		a, err := normalizeAddr(p, n.cfg.Port)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}

// loop runs a rejoin round on every tick of t (every RejoinInterval)
// until ctx ends. Start makes t before it returns, so a fake clock
// advanced after Start reaches the loop.
func (n *Node) loop(ctx context.Context, t Ticker) {
	defer n.wg.Done()
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		}
		n.round(ctx)
	}
}

// round does the periodic housekeeping: forgets stale members and learned
// addresses, joins remembered addresses that are not alive members (after
// a restart or a healed partition), and saves the known peers.
func (n *Node) round(ctx context.Context) {
	n.stats.rejoinRounds.Add(1)
	now := n.cfg.Clock.Now()
	n.pruneMembers(now)
	n.relay.expire(now)
	alive := n.aliveAddrs()
	for addr, name := range alive {
		if name != n.cfg.Name {
			n.known.learn(addr, now)
		}
	}
	n.known.expire(now)
	if !n.left.Load() && ctx.Err() == nil {
		var todo []string
		failed := n.recentlyFailed(now, n.deadGossip)
		for _, a := range n.known.due(now) {
			if _, ok := alive[a]; !ok && !n.isSelf(a) && !failed[a] {
				todo = append(todo, a)
			}
		}
		if len(todo) > maxRejoinsPerRound {
			// One push-pull with a member of the other side merges a
			// healed partition; joining every address not alive would
			// have each of hundreds of peers push-pull with every peer
			// that failed, each round. The rest wait for later rounds.
			rand.Shuffle(len(todo), func(i, j int) { todo[i], todo[j] = todo[j], todo[i] })
			todo = todo[:maxRejoinsPerRound]
		}
		if len(todo) > 0 {
			n.joinAll(ctx, todo)
		}
	}
	if err := n.known.save(); err != nil {
		if ok, _ := n.logLimit.allow("save known"); ok {
			n.log.Warn("cannot save known peers", "err", err)
		}
	}
}

// isSelf reports whether addr is this peer's own gossip address.
func (n *Node) isSelf(addr string) bool {
	if addr == n.Local().GossipAddr.String() {
		return true
	}
	return addr == net.JoinHostPort(n.cfg.BindAddr, strconv.Itoa(n.cfg.Port))
}

// join joins one address unless it turns out to be an alive member.
func (n *Node) join(ctx context.Context, addr string) error {
	if n.isMemberHost(ctx, addr) {
		n.known.result(addr, true, n.cfg.Clock.Now(), n.cfg.RejoinInterval)
		return nil
	}
	n.stats.joinAttempts.Add(1)
	_, err := n.ml.Join([]string{addr})
	if err != nil {
		n.stats.joinFailures.Add(1)
		err = fmt.Errorf("join %s: %w", addr, err)
	}
	if !n.known.has(addr) {
		return err // forgotten meanwhile
	}
	// A peer that stays down is reported once, not every round.
	prevFails := n.known.result(addr, err == nil, n.cfg.Clock.Now(), n.cfg.RejoinInterval)
	switch {
	case err != nil && prevFails == 0 && hintFor(err.Error()) != "":
		n.log.Warn("peer "+addr+": "+hintFor(err.Error())+"; will keep trying", "err", err)
	case err != nil && prevFails == 0:
		n.log.Warn("peer "+addr+": cannot join; will keep trying", "err", err)
	case err != nil:
		n.log.Debug("cannot join peer", "addr", addr, "failures", prevFails+1, "err", err)
	case prevFails > 0:
		n.log.Info("joined peer after failures", "addr", addr, "failures", prevFails)
	default:
		n.log.Debug("joined peer", "addr", addr)
	}
	return err
}

// isMemberHost resolves a host-name address and reports whether it names
// an alive member or this peer, so named peers given by host name are not
// re-joined every round.
func (n *Node) isMemberHost(ctx context.Context, addr string) bool {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return false // callers already compared IP addresses
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return false
	}
	alive := n.aliveAddrs()
	for _, ip := range ips {
		a := net.JoinHostPort(ip.Unmap().String(), port)
		if _, ok := alive[a]; ok || n.isSelf(a) {
			return true
		}
	}
	return false
}

// counters are the Node's statistics.
type counters struct {
	broadcastsQueued, broadcastsSent, broadcastsReceived, broadcastsRelayed atomic.Uint64
	unicastSent, unicastReceived, unicastUnhandled                          atomic.Uint64
	asyncDropped, asyncFailed                                               atomic.Uint64
	pushPullSent, pushPullReceived                                          atomic.Uint64
	decodeErrors, mergeErrors, unknownChannel                               atomic.Uint64
	joinAttempts, joinFailures, rejoinRounds                                atomic.Uint64
	bytes                                                                   byteCounters
	aeDigestsSent, aeStatesSent, aeStatesReceived, aePulls                  atomic.Uint64
}

// Stats are counters since New.
type Stats struct {
	BroadcastsQueued   uint64 // deltas queued by Broadcast
	BroadcastsSent     uint64 // delta transmissions (each delta goes out several times)
	BroadcastsReceived uint64
	BroadcastsRelayed  uint64 // received deltas that were news, passed on
	BroadcastsPending  int    // deltas waiting in the queue now
	UnicastSent        uint64
	UnicastReceived    uint64
	UnicastUnhandled   uint64 // received for a channel with no OnMessage handler
	AsyncDropped       uint64 // SendAsync messages dropped: queue full or node shut down
	AsyncFailed        uint64 // SendAsync messages whose send failed
	PushPullSent       uint64 // full states sent
	PushPullReceived   uint64 // full states received and decoded
	DecodeErrors       uint64 // malformed messages, push-pull states and metadata
	MergeErrors        uint64 // deltas or full states a State refused
	UnknownChannel     uint64 // messages and states for channels not registered here
	JoinAttempts       uint64
	JoinFailures       uint64
	RejoinRounds       uint64
	Bytes              ByteStats // of the messages above
	// Anti-entropy (gossip/antientropy.go): digest datagrams sent, full
	// states sent and received because digests differed, and membership
	// push-pulls run because a peer saw more members alive.
	AEDigestsSent    uint64
	AEStatesSent     uint64
	AEStatesReceived uint64
	AEPulls          uint64
}

// Stats returns the counters.
func (n *Node) Stats() Stats {
	c := &n.stats
	return Stats{
		BroadcastsQueued:   c.broadcastsQueued.Load(),
		BroadcastsSent:     c.broadcastsSent.Load(),
		BroadcastsReceived: c.broadcastsReceived.Load(),
		BroadcastsRelayed:  c.broadcastsRelayed.Load(),
		BroadcastsPending:  n.queue.NumQueued(),
		UnicastSent:        c.unicastSent.Load(),
		UnicastReceived:    c.unicastReceived.Load(),
		UnicastUnhandled:   c.unicastUnhandled.Load(),
		AsyncDropped:       c.asyncDropped.Load(),
		AsyncFailed:        c.asyncFailed.Load(),
		PushPullSent:       c.pushPullSent.Load(),
		PushPullReceived:   c.pushPullReceived.Load(),
		DecodeErrors:       c.decodeErrors.Load(),
		MergeErrors:        c.mergeErrors.Load(),
		UnknownChannel:     c.unknownChannel.Load(),
		JoinAttempts:       c.joinAttempts.Load(),
		JoinFailures:       c.joinFailures.Load(),
		RejoinRounds:       c.rejoinRounds.Load(),
		Bytes:              c.bytes.stats(),
		AEDigestsSent:      c.aeDigestsSent.Load(),
		AEStatesSent:       c.aeStatesSent.Load(),
		AEStatesReceived:   c.aeStatesReceived.Load(),
		AEPulls:            c.aePulls.Load(),
	}
}
