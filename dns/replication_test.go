package dns

import (
	"reflect"
	"sync"
	"testing"
	"time"

	"weavemesh.dev/weave/peer"
)

// recordingTransport keeps the pulls a Store sends and delivers nothing.
type recordingTransport struct {
	mu    sync.Mutex
	pulls []sentPull
}

type sentPull struct {
	to     peer.Name
	owners []peer.Name
}

func (r *recordingTransport) Broadcast(string, []byte) error { return nil }

func (r *recordingTransport) SendAsync(to peer.Name, msg []byte) bool {
	owners, err := decodePull(msg)
	if err != nil {
		panic("not a pull: " + err.Error())
	}
	r.mu.Lock()
	r.pulls = append(r.pulls, sentPull{to: to, owners: owners})
	r.mu.Unlock()
	return true
}

// take returns and forgets the pulls sent so far.
func (r *recordingTransport) take() []sentPull {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.pulls
	r.pulls = nil
	return p
}

// A store that has not had a complete exchange asks an alive peer for the
// records of every listed owner, again with backoff while nobody answers,
// and stops once a snapshot arrives or a push-pull finds nothing to pull.
func TestStoreCatchUp(t *testing.T) {
	pD := peer.Name(0x0a0000000004)
	all := []peer.Name{pA, pB, pC, pD}
	type step struct {
		at   time.Duration // since the start
		want []sentPull    // the pulls Refresh sends then
		then func(s *Store)
	}
	snapshotFromB := func(s *Store) {
		s.HandleMessage(pB, encodeSnapshots([]snapshot{{owner: pB, recs: []wireRecord{}}}))
	}
	for _, tc := range []struct {
		name  string
		peers []PeerStatus
		setup func(t *testing.T, s *Store) // before the first step
		steps []step
	}{{
		name:  "alone",
		peers: []PeerStatus{{Name: pA, Alive: true}},
		steps: []step{{0, nil, nil}, {time.Minute, nil, nil}},
	}, {
		name:  "nobody alive",
		peers: []PeerStatus{{Name: pA, Alive: true}, {Name: pB}},
		steps: []step{{0, nil, nil}, {time.Minute, nil, nil}},
	}, {
		name: "backoff and rotation while nobody answers",
		peers: []PeerStatus{{Name: pA, Alive: true}, {Name: pB, Alive: true},
			{Name: pC, Alive: true}, {Name: pD, Since: time.Unix(1_700_000_000, 0)}},
		steps: []step{
			{0, []sentPull{{pB, all}}, nil},
			{500 * time.Millisecond, nil, nil},
			{time.Second, []sentPull{{pC, all}}, nil},
			{2900 * time.Millisecond, nil, nil},
			{3 * time.Second, []sentPull{{pB, all}}, nil},
			{7 * time.Second, []sentPull{{pC, all}}, nil},
			{15 * time.Second, []sentPull{{pB, all}}, nil},
			{31 * time.Second, []sentPull{{pC, all}}, nil},
			{60 * time.Second, nil, nil},
			{61 * time.Second, []sentPull{{pB, all}}, nil}, // at most catchUpMax apart
		},
	}, {
		name:  "a snapshot ends it",
		peers: []PeerStatus{{Name: pA, Alive: true}, {Name: pB, Alive: true}},
		steps: []step{{0, []sentPull{{pB, []peer.Name{pA, pB}}}, snapshotFromB}, {time.Second, nil, nil}, {time.Minute, nil, nil}},
	}, {
		name:  "a push-pull with nothing to pull ends it",
		peers: []PeerStatus{{Name: pA, Alive: true}, {Name: pB, Alive: true}},
		setup: func(t *testing.T, s *Store) {
			if err := s.MergeFull(encodeDigests(pB, nil)); err != nil {
				t.Fatal(err)
			}
		},
		steps: []step{{0, nil, nil}, {time.Minute, nil, nil}},
	}, {
		name:  "a push-pull's pull defers the ask",
		peers: []PeerStatus{{Name: pA, Alive: true}, {Name: pB, Alive: true}},
		setup: func(t *testing.T, s *Store) {
			if err := s.MergeFull(encodeDigests(pB, []digest{{owner: pB, hash: 1}})); err != nil {
				t.Fatal(err)
			}
		},
		steps: []step{{0, nil, nil}, {499 * time.Millisecond, nil, nil}, {500 * time.Millisecond, []sentPull{{pB, []peer.Name{pA, pB}}}, nil}},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Unix(1_700_000_000, 0)
			now := start
			s, err := NewStore(StoreOptions{Self: pA, Peers: func() []PeerStatus { return tc.peers }, Now: func() time.Time { return now }})
			if err != nil {
				t.Fatal(err)
			}
			tr := &recordingTransport{}
			s.SetTransport(tr)
			if tc.setup != nil {
				tc.setup(t, s)
			}
			tr.take()
			for _, st := range tc.steps {
				now = start.Add(st.at)
				s.Refresh()
				if got := tr.take(); !reflect.DeepEqual(got, st.want) {
					t.Errorf("at %v: pulls %v, want %v", st.at, got, st.want)
				}
				if st.then != nil {
					st.then(s)
				}
			}
		})
	}
}

// A snapshot answering a pull of an owner the membership has forgotten
// since is not merged: it would bring the owner back.
func TestStoreSnapshotOfForgottenOwner(t *testing.T) {
	m := newFakeMesh(t)
	b := m.add(pB)
	m.add(pC)
	m.forget(pA)
	b.Refresh()
	rec := wireRecord{key: recKey{name: web, addr: addrs("10.32.1.5")[0]}, version: 1}
	b.HandleMessage(pC, encodeSnapshots([]snapshot{{owner: pA, recs: []wireRecord{rec}}}))
	if recs := b.Records(); len(recs) != 0 {
		t.Errorf("a forgotten owner's records merged: %+v", recs)
	}
	// A listed owner's are.
	m.setAlive(pA, true)
	b.Refresh()
	b.HandleMessage(pC, encodeSnapshots([]snapshot{{owner: pA, recs: []wireRecord{rec}}}))
	wantLookup(t, b, web, "10.32.1.5")
}
