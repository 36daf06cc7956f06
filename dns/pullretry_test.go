package dns

import "testing"

// takeSent empties the mesh's unicast queue and returns what was in it.
func (m *fakeMesh) takeSent() []queuedUnicast {
	m.mu.Lock()
	defer m.mu.Unlock()
	q := m.sent
	m.sent = nil
	return q
}

// drainSent delivers unicasts, and those they trigger, until none is left.
func (m *fakeMesh) drainSent() {
	for q := m.takeSent(); len(q) > 0; q = m.takeSent() {
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

// A pull that gets no snapshot (the peer asked still took this one for
// dead, as happens right after a restart) is sent again by Refresh after
// PullRetry, up to pullTries times in all, and only while the peer asked
// is alive; an answered pull is not repeated.
func TestStorePullRetried(t *testing.T) {
	for _, tc := range []struct {
		name      string
		refused   int  // pulls the peer asked ignores
		senderDie bool // the peer asked dies before the retry
		retries   int  // pulls Refresh sends again
		repaired  bool
	}{
		{name: "answered at once", refused: 0, retries: 0, repaired: true},
		{name: "refused once, then answered", refused: 1, retries: 1, repaired: true},
		{name: "refused twice, then answered", refused: 2, retries: 2, repaired: true},
		{name: "always refused: gives up", refused: 10, retries: pullTries - 1, repaired: false},
		{name: "peer asked died", refused: 1, senderDie: true, retries: 0, repaired: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newFakeMesh(t)
			a, b := m.add(pA), m.add(pB)
			if err := a.SetEndpoint("ep1", web, addrs("10.32.1.5")); err != nil {
				t.Fatal(err)
			}
			m.drop() // b never hears the broadcast
			if err := b.MergeFull(a.FullState()); err != nil {
				t.Fatal(err)
			}
			if tc.senderDie {
				m.setAlive(pA, false)
			}
			retries := 0
			for round := 0; round <= pullTries+2; round++ {
				if round > 0 {
					if q := m.takeSent(); len(q) > 0 {
						// Only the first b.Refresh after each wait may send.
						m.mu.Lock()
						m.sent = q
						m.mu.Unlock()
						retries += len(q)
					}
				}
				if round < tc.refused {
					m.takeSent() // a ignores the pull
				} else {
					m.drainSent()
				}
				m.advance(PullRetry)
				b.Refresh()
				b.Refresh() // a second call within PullRetry sends nothing more
			}
			if retries != tc.retries {
				t.Errorf("%d pulls sent again, want %d", retries, tc.retries)
			}
			if tc.repaired {
				wantLookup(t, b, web, "10.32.1.5")
			} else {
				wantLookup(t, b, web)
			}
		})
	}
}
