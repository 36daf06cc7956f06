package router

import (
	"sync/atomic"

	"weavemesh.dev/weave/gossip"
	"weavemesh.dev/weave/peer"
	"weavemesh.dev/weave/sleeve"
)

// Why an established connection ended: a label of
// weave_connection_terminations_total, few by design.
const (
	TerminationPeerLeft  = "peer_left"         // the peer left the mesh (stopped or reset)
	TerminationPeerDead  = "peer_dead"         // gossip declared the peer failed
	TerminationRefused   = "refused"           // the peer is alive but no longer usable (protocol, metadata)
	TerminationHeartbeat = "heartbeat_timeout" // the peer is alive but its heartbeats stopped
)

var terminationReasons = [...]string{TerminationPeerLeft, TerminationPeerDead, TerminationRefused, TerminationHeartbeat}

// terminations counts established connections that ended, by reason.
// note runs on the loop goroutine only; Counts may be read from any.
type terminations struct {
	up map[peer.Name]bool // links up at the last note
	n  [len(terminationReasons)]atomic.Uint64
}

// note compares the links up now with those up at the last call and
// counts each that went, with the reason the membership gives.
func (t *terminations) note(members []gossip.Member, links []sleeve.Link) {
	up := make(map[peer.Name]bool, len(links))
	for _, l := range links {
		if l.State == sleeve.LinkUp {
			up[l.Peer] = true
		}
	}
	for p := range t.up {
		if up[p] {
			continue
		}
		i := 1 // not a member any more: gossip forgot a failed one
		for _, m := range members {
			if m.Name != p {
				continue
			}
			switch {
			case m.State == gossip.Left:
				i = 0
			case m.State == gossip.Dead:
				i = 1
			case !usable(m):
				i = 2
			default:
				i = 3
			}
		}
		t.n[i].Add(1)
	}
	t.up = up
}

// Counts are the terminations since start, by reason, every reason
// present.
func (t *terminations) Counts() map[string]uint64 {
	out := make(map[string]uint64, len(terminationReasons))
	for i, r := range terminationReasons {
		out[r] = t.n[i].Load()
	}
	return out
}
