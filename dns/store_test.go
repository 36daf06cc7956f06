package dns

import (
	"net/netip"
	"reflect"
	"sync"
	"testing"
	"time"

	"weavemesh.dev/weave/peer"
)

// fakeMesh connects Stores in memory. Broadcasts are delivered when
// deliver is called (or dropped), unicasts at once, so tests choose what
// reaches whom.
type fakeMesh struct {
	t      *testing.T
	mu     sync.Mutex
	stores map[peer.Name]*Store
	status map[peer.Name]PeerStatus
	queued []queuedDelta
	sent   []queuedUnicast // SendAsync's queue, drained by pushPull
	now    time.Time
}

type queuedUnicast struct {
	from, to peer.Name
	msg      []byte
}

type queuedDelta struct {
	from peer.Name
	msg  []byte
}

func newFakeMesh(t *testing.T) *fakeMesh {
	return &fakeMesh{t: t, stores: map[peer.Name]*Store{}, status: map[peer.Name]PeerStatus{},
		now: time.Unix(1_700_000_000, 0)}
}

func (m *fakeMesh) clock() time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.now
}

func (m *fakeMesh) advance(d time.Duration) {
	m.mu.Lock()
	m.now = m.now.Add(d)
	m.mu.Unlock()
}

func (m *fakeMesh) peers() []PeerStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []PeerStatus
	for _, p := range m.status {
		out = append(out, p)
	}
	return out
}

// add makes a store for name, alive; it replaces one of the same name (a
// restart).
func (m *fakeMesh) add(name peer.Name) *Store {
	m.t.Helper()
	s, err := NewStore(StoreOptions{Self: name, Peers: m.peers, Now: m.clock})
	if err != nil {
		m.t.Fatal(err)
	}
	s.SetTransport(&fakeTransport{m: m, self: name})
	m.mu.Lock()
	m.stores[name] = s
	m.status[name] = PeerStatus{Name: name, Alive: true}
	m.mu.Unlock()
	for _, o := range m.all() {
		o.Refresh()
	}
	return s
}

func (m *fakeMesh) all() []*Store {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*Store
	for _, s := range m.stores {
		out = append(out, s)
	}
	return out
}

func (m *fakeMesh) setAlive(name peer.Name, alive bool) {
	m.mu.Lock()
	m.status[name] = PeerStatus{Name: name, Alive: alive, Since: m.now}
	m.mu.Unlock()
}

func (m *fakeMesh) forget(name peer.Name) {
	m.mu.Lock()
	delete(m.status, name)
	m.mu.Unlock()
}

// deliver hands every queued broadcast to every other store, repeatedly,
// as gossip relays news, until nothing is queued.
func (m *fakeMesh) deliver() {
	for {
		m.mu.Lock()
		q := m.queued
		m.queued = nil
		m.mu.Unlock()
		if len(q) == 0 {
			return
		}
		for _, d := range q {
			for _, s := range m.all() {
				if s.self != d.from {
					if _, err := s.MergeDelta(d.msg); err != nil {
						m.t.Fatal(err)
					}
				}
			}
		}
	}
}

// drop discards queued broadcasts: they were lost.
func (m *fakeMesh) drop() {
	m.mu.Lock()
	m.queued = nil
	m.mu.Unlock()
}

// pushPull runs a push-pull exchange between a and b, with the pulls and
// snapshots it triggers.
func (m *fakeMesh) pushPull(a, b *Store) {
	m.t.Helper()
	sa, sb := a.FullState(), b.FullState()
	if err := b.MergeFull(sa); err != nil {
		m.t.Fatal(err)
	}
	if err := a.MergeFull(sb); err != nil {
		m.t.Fatal(err)
	}
	// Drain unicast queues until quiet: pulls produce snapshots.
	for i := 0; i < 10; i++ {
		m.mu.Lock()
		q := m.sent
		m.sent = nil
		m.mu.Unlock()
		if len(q) == 0 {
			return
		}
		for _, u := range q {
			m.mu.Lock()
			to := m.stores[u.to]
			m.mu.Unlock()
			if to != nil {
				to.HandleMessage(u.from, u.msg)
			}
		}
	}
}

type fakeTransport struct {
	m    *fakeMesh
	self peer.Name
}

func (f *fakeTransport) Broadcast(key string, delta []byte) error {
	f.m.mu.Lock()
	f.m.queued = append(f.m.queued, queuedDelta{from: f.self, msg: delta})
	f.m.mu.Unlock()
	return nil
}

func (f *fakeTransport) SendAsync(to peer.Name, msg []byte) bool {
	f.m.mu.Lock()
	f.m.sent = append(f.m.sent, queuedUnicast{from: f.self, to: to, msg: msg})
	f.m.mu.Unlock()
	return true
}

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

func lookup(s *Store, name string) []string {
	var out []string
	for _, a := range s.Lookup(name) {
		out = append(out, a.String())
	}
	return out
}

func wantLookup(t *testing.T, s *Store, name string, want ...string) {
	t.Helper()
	if got := lookup(s, name); !reflect.DeepEqual(got, want) {
		t.Errorf("%s: lookup %s = %v, want %v", s.self, name, got, want)
	}
}

const web = "web.weave.local."

func TestStoreLocal(t *testing.T) {
	m := newFakeMesh(t)
	a := m.add(pA)
	if err := a.SetEndpoint("ep1", web, addrs("10.32.1.5", "fd00::5")); err != nil {
		t.Fatal(err)
	}
	wantLookup(t, a, web, "10.32.1.5", "fd00::5")
	if n, err := a.Add(web, addrs("10.32.1.5", "10.32.1.6")); err != nil || n != 2 {
		t.Fatalf("Add: %d %v", n, err)
	}
	// The same address from an endpoint and by hand answers once.
	wantLookup(t, a, web, "10.32.1.5", "10.32.1.6", "fd00::5")
	if got := a.Names(netip.MustParseAddr("10.32.1.6")); !reflect.DeepEqual(got, []string{web}) {
		t.Errorf("names: %v", got)
	}
	if n, _ := a.Add(web, addrs("10.32.1.6")); n != 0 {
		t.Errorf("adding again added %d", n)
	}
	// The endpoint's records change to a new name.
	if err := a.SetEndpoint("ep1", "w2.weave.local.", addrs("10.32.1.5")); err != nil {
		t.Fatal(err)
	}
	wantLookup(t, a, web, "10.32.1.5", "10.32.1.6")
	wantLookup(t, a, "w2.weave.local.", "10.32.1.5")
	if eps := a.OwnEndpoints(); !reflect.DeepEqual(eps, []string{"ep1"}) {
		t.Errorf("endpoints: %v", eps)
	}
	if man := a.Manual(); !reflect.DeepEqual(man, map[string][]netip.Addr{web: addrs("10.32.1.5", "10.32.1.6")}) {
		t.Errorf("manual: %v", man)
	}
	// Remove without addresses removes every address of the name.
	if n, _ := a.Remove(web, nil); n != 2 {
		t.Errorf("removed %d", n)
	}
	if n, _ := a.Remove(web, nil); n != 0 {
		t.Errorf("removed again %d", n)
	}
	wantLookup(t, a, web)
	a.RemoveEndpoint("ep1")
	if _, ok := a.AppendAddrs(nil, "w2.weave.local."); ok {
		t.Error("w2 still exists")
	}
	if _, ok := a.AppendAddrs(nil, "weave.local."); ok {
		t.Error("parent exists with no names below")
	}
	// Errors.
	if err := a.SetEndpoint("ep", "Web.weave.local.", addrs("10.0.0.1")); err == nil {
		t.Error("non-canonical name accepted")
	}
	if _, err := a.Add(web, nil); err == nil {
		t.Error("Add without addresses accepted")
	}
}

func TestStoreParents(t *testing.T) {
	m := newFakeMesh(t)
	a := m.add(pA)
	if _, err := a.Add("db.prod.weave.local.", addrs("10.32.0.9")); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"prod.weave.local.", "weave.local."} {
		if as, ok := a.AppendAddrs(nil, n); !ok || len(as) != 0 {
			t.Errorf("%s: %v %v; want an existing name without addresses", n, as, ok)
		}
	}
	if _, ok := a.AppendAddrs(nil, "x.prod.weave.local."); ok {
		t.Error("unknown name exists")
	}
}

func TestStoreGossip(t *testing.T) {
	m := newFakeMesh(t)
	a, b, c := m.add(pA), m.add(pB), m.add(pC)
	if err := a.SetEndpoint("ep1", web, addrs("10.32.1.5")); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Add(web, addrs("10.32.2.5")); err != nil {
		t.Fatal(err)
	}
	m.deliver()
	for _, s := range []*Store{a, b, c} {
		wantLookup(t, s, web, "10.32.1.5", "10.32.2.5")
	}
	a.RemoveEndpoint("ep1")
	m.deliver()
	for _, s := range []*Store{a, b, c} {
		wantLookup(t, s, web, "10.32.2.5")
	}
	// Records list owner and endpoint.
	recs := c.Records()
	if len(recs) != 1 || recs[0].Owner != pB || recs[0].Endpoint != "" || !recs[0].Visible {
		t.Errorf("records: %+v", recs)
	}
	// A delta that arrives twice, or late, is no news.
	if _, err := a.Add("late.weave.local.", addrs("10.32.9.9")); err != nil {
		t.Fatal(err)
	}
	m.mu.Lock()
	d := m.queued[0].msg
	m.mu.Unlock()
	m.deliver()
	if news, err := c.MergeDelta(d); err != nil || news {
		t.Errorf("duplicate delta: news %v, err %v", news, err)
	}
}

func TestStorePushPullRepairs(t *testing.T) {
	m := newFakeMesh(t)
	a, b := m.add(pA), m.add(pB)
	if err := a.SetEndpoint("ep1", web, addrs("10.32.1.5")); err != nil {
		t.Fatal(err)
	}
	m.drop() // b never hears
	wantLookup(t, b, web)
	if a.Digest() == b.Digest() {
		t.Error("anti-entropy digests equal while b misses a record")
	}
	m.pushPull(a, b)
	wantLookup(t, b, web, "10.32.1.5")
	if string(stripSender(a.FullState())) != string(stripSender(b.FullState())) {
		t.Error("digests differ after push-pull")
	}
	if a.Digest() != b.Digest() {
		t.Error("anti-entropy digests differ after push-pull")
	}
	// A removal b missed is repaired the same way.
	a.RemoveEndpoint("ep1")
	m.drop()
	m.pushPull(b, a)
	wantLookup(t, b, web)
}

// stripSender drops the sender from an encoded digest, leaving what two
// peers in agreement share.
func stripSender(b []byte) []byte { return b[8:] }

func TestStoreDeadPeer(t *testing.T) {
	m := newFakeMesh(t)
	a, b := m.add(pA), m.add(pB)
	if _, err := a.Add(web, addrs("10.32.1.5")); err != nil {
		t.Fatal(err)
	}
	m.deliver()
	wantLookup(t, b, web, "10.32.1.5")

	m.setAlive(pA, false)
	b.Refresh()
	wantLookup(t, b, web, "10.32.1.5") // within the grace period
	m.advance(DefaultGrace)
	b.Refresh()
	wantLookup(t, b, web)
	if recs := b.Records(); len(recs) != 1 || recs[0].Visible {
		t.Errorf("hidden records: %+v", recs)
	}
	// The peer comes back: its records with it.
	m.setAlive(pA, true)
	b.Refresh()
	wantLookup(t, b, web, "10.32.1.5")

	// A peer that leaves the member list for good is forgotten.
	m.setAlive(pA, false)
	m.forget(pA)
	b.Refresh()
	wantLookup(t, b, web)
	m.advance(DefaultForgetAfter)
	b.Refresh()
	if recs := b.Records(); len(recs) != 0 {
		t.Errorf("records of a forgotten peer: %+v", recs)
	}
	// A peer that still holds them does not bring them back.
	c := m.add(pC)
	c.mu.Lock()
	c.ownerLocked(pA, m.clock()).entries[recKey{name: web, addr: netip.MustParseAddr("10.32.1.5")}] = entry{version: 1}
	c.owners[pA].hash = 42
	c.mu.Unlock()
	m.pushPull(c, b)
	if recs := b.Records(); len(recs) != 0 {
		t.Errorf("a forgotten peer's records came back: %+v", recs)
	}
}

func TestStoreUnknownOwnerHidden(t *testing.T) {
	m := newFakeMesh(t)
	a, b := m.add(pA), m.add(pB)
	if _, err := a.Add(web, addrs("10.32.1.5")); err != nil {
		t.Fatal(err)
	}
	m.forget(pA) // b never learnt of a as a member
	b.Refresh()
	m.deliver()
	wantLookup(t, b, web)
	m.setAlive(pA, true)
	b.Refresh()
	wantLookup(t, b, web, "10.32.1.5")
}

func TestStoreRestartGhosts(t *testing.T) {
	m := newFakeMesh(t)
	a, b := m.add(pA), m.add(pB)
	if err := a.SetEndpoint("ep1", web, addrs("10.32.1.5")); err != nil {
		t.Fatal(err)
	}
	if err := a.SetEndpoint("ep2", "gone.weave.local.", addrs("10.32.1.6")); err != nil {
		t.Fatal(err)
	}
	m.deliver()
	wantLookup(t, b, "gone.weave.local.", "10.32.1.6")

	// a restarts with only ep1 surviving.
	m.advance(time.Second)
	a2 := m.add(pA)
	if err := a2.SetEndpoint("ep1", web, addrs("10.32.1.5")); err != nil {
		t.Fatal(err)
	}
	m.deliver()
	m.pushPull(a2, b)
	m.deliver()
	wantLookup(t, b, web, "10.32.1.5")
	wantLookup(t, b, "gone.weave.local.")
	wantLookup(t, a2, "gone.weave.local.")
	// Delivering the old life's delta again changes nothing for long.
	m.pushPull(a2, b)
	m.deliver()
	wantLookup(t, b, "gone.weave.local.")
}

func TestStoreTombstoneExpiry(t *testing.T) {
	m := newFakeMesh(t)
	a, b, c := m.add(pA), m.add(pB), m.add(pC)
	if _, err := a.Add(web, addrs("10.32.1.5")); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Add("keep.weave.local.", addrs("10.32.1.7")); err != nil {
		t.Fatal(err)
	}
	m.deliver()
	// c is cut off and keeps the live record; a and b see it removed.
	if _, err := a.Remove(web, nil); err != nil {
		t.Fatal(err)
	}
	m.mu.Lock()
	q := m.queued
	m.queued = nil
	m.mu.Unlock()
	for _, d := range q {
		if _, err := b.MergeDelta(d.msg); err != nil {
			t.Fatal(err)
		}
	}
	wantLookup(t, b, web)
	wantLookup(t, c, web, "10.32.1.5")

	// The tombstone expires at a; b learns the new floor.
	m.advance(DefaultTombstoneTTL + time.Minute)
	a.Refresh()
	m.pushPull(a, b)
	for _, s := range []*Store{a, b} {
		s.mu.RLock()
		n := len(s.owners[pA].entries)
		s.mu.RUnlock()
		if n != 1 {
			t.Errorf("%s holds %d records of a, want 1 (the tombstone expired)", s.self, n)
		}
	}
	// c comes back with its stale copy: it must not resurrect the record.
	m.pushPull(c, b)
	m.pushPull(c, a)
	for _, s := range []*Store{a, b, c} {
		wantLookup(t, s, web)
		wantLookup(t, s, "keep.weave.local.", "10.32.1.7")
	}
}

func TestStoreOwnTombstoneAdopted(t *testing.T) {
	m := newFakeMesh(t)
	a, b := m.add(pA), m.add(pB)
	if _, err := a.Add(web, addrs("10.32.1.5")); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Remove(web, nil); err != nil {
		t.Fatal(err)
	}
	m.deliver()
	// a restarts without memory; b tells it about its old tombstone,
	// which a adopts and then expires like its own.
	a2 := m.add(pA)
	m.pushPull(a2, b)
	m.deliver()
	if stripped := string(stripSender(a2.FullState())); stripped != string(stripSender(b.FullState())) {
		t.Error("digests differ after push-pull")
	}
	m.advance(DefaultTombstoneTTL + time.Minute)
	a2.Refresh()
	m.pushPull(a2, b)
	for _, s := range []*Store{a2, b} {
		s.mu.RLock()
		n := len(s.owners[pA].entries)
		s.mu.RUnlock()
		if n != 0 {
			t.Errorf("%s holds %d records of a after expiry", s.self, n)
		}
	}
}

func TestStoreManualFile(t *testing.T) {
	path := t.TempDir() + "/" + ManualFile
	m, err := LoadManual(path)
	if err != nil || len(m) != 0 {
		t.Fatalf("missing file: %v %v", m, err)
	}
	want := map[string][]netip.Addr{web: addrs("10.32.1.5", "fd00::1"), "db.weave.local.": addrs("10.32.1.9")}
	if err := SaveManual(path, want); err != nil {
		t.Fatal(err)
	}
	got, err := LoadManual(path)
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("load: %v %v", got, err)
	}
}

func TestStoreOptions(t *testing.T) {
	if _, err := NewStore(StoreOptions{Peers: func() []PeerStatus { return nil }}); err == nil {
		t.Error("no Self accepted")
	}
	if _, err := NewStore(StoreOptions{Self: pA}); err == nil {
		t.Error("no Peers accepted")
	}
	s, err := NewStore(StoreOptions{Self: pA, Peers: func() []PeerStatus { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	s.Close()
}

// countingTransport counts what the Store sends and refuses every
// unicast, as a full SendAsync queue does.
type countingTransport struct {
	mu                sync.Mutex
	broadcasts, sends int
}

func (c *countingTransport) Broadcast(string, []byte) error {
	c.mu.Lock()
	c.broadcasts++
	c.mu.Unlock()
	return nil
}

func (c *countingTransport) SendAsync(peer.Name, []byte) bool {
	c.mu.Lock()
	c.sends++
	c.mu.Unlock()
	return false
}

func (c *countingTransport) counts() (int, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.broadcasts, c.sends
}

// A dropped pull costs nothing but the repair it carried, and after Close
// the Store sends nothing at all.
func TestStoreSendDroppedAndClosed(t *testing.T) {
	m := newFakeMesh(t)
	a, b := m.add(pA), m.add(pB)
	if _, err := a.Add(web, addrs("10.32.1.5")); err != nil {
		t.Fatal(err)
	}
	tr := &countingTransport{}
	b.SetTransport(tr)
	if err := b.MergeFull(a.FullState()); err != nil { // b lacks a's record: it pulls
		t.Fatal(err)
	}
	if _, sends := tr.counts(); sends != 1 {
		t.Fatalf("%d pulls sent, want 1", sends)
	}
	wantLookup(t, b, web) // dropped: nothing arrived
	b.Close()
	if err := b.MergeFull(a.FullState()); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Add("db.weave.local.", addrs("10.32.1.6")); err != nil {
		t.Fatal(err)
	}
	if bc, sends := tr.counts(); bc != 0 || sends != 1 {
		t.Errorf("after Close: %d broadcasts and %d sends, want 0 and 1", bc, sends)
	}
}

func TestIndexCounts(t *testing.T) {
	x := newIndex()
	k1 := recKey{name: web, addr: netip.MustParseAddr("10.0.0.1"), endpoint: "e1"}
	k2 := recKey{name: web, addr: netip.MustParseAddr("10.0.0.1"), endpoint: ""}
	x.add(k1)
	x.add(k2)
	if n := len(x.byName[web].addrs); n != 1 {
		t.Errorf("%d addresses", n)
	}
	x.remove(k1)
	if x.byName[web] == nil || len(x.byAddr[k1.addr]) != 1 {
		t.Error("removed while another record holds it")
	}
	x.remove(k2)
	if len(x.byName)+len(x.byAddr)+len(x.parents) != 0 {
		t.Errorf("index not empty: %+v", x)
	}
}
