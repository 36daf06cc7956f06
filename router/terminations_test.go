package router

import (
	"net/netip"
	"testing"

	"weavemesh.dev/weave/gossip"
	"weavemesh.dev/weave/peer"
	"weavemesh.dev/weave/sleeve"
)

func TestTerminations(t *testing.T) {
	a, b, c, d := peer.Name(1), peer.Name(2), peer.Name(3), peer.Name(4)
	data := netip.MustParseAddrPort("10.0.0.1:6784")
	alive := func(n peer.Name) gossip.Member {
		return gossip.Member{Name: n, State: gossip.Alive, DataAddr: data, ProtoMin: protoMin, ProtoMax: protoMax}
	}
	up := func(ns ...peer.Name) []sleeve.Link {
		var out []sleeve.Link
		for _, n := range ns {
			out = append(out, sleeve.Link{Peer: n, State: sleeve.LinkUp})
		}
		return out
	}
	var tr terminations
	tr.note([]gossip.Member{alive(a), alive(b), alive(c), alive(d)}, up(a, b, c, d))
	left, dead, refused := alive(a), alive(b), alive(c)
	left.State, dead.State, refused.ProtoMin, refused.ProtoMax = gossip.Left, gossip.Dead, protoMax+1, protoMax+1
	// d is alive and usable, its link down: a heartbeat timeout.
	tr.note([]gossip.Member{left, dead, refused, alive(d)}, append(up(), sleeve.Link{Peer: d, State: sleeve.LinkDown}))
	want := map[string]uint64{TerminationPeerLeft: 1, TerminationPeerDead: 1, TerminationRefused: 1, TerminationHeartbeat: 1}
	if got := tr.Counts(); len(got) != len(want) || got[TerminationPeerLeft] != 1 || got[TerminationPeerDead] != 1 || got[TerminationRefused] != 1 || got[TerminationHeartbeat] != 1 {
		t.Fatalf("counts %v, want %v", got, want)
	}
	// Links that come back and go again count again; ones never up do not.
	tr.note([]gossip.Member{alive(d)}, up(d))
	tr.note(nil, nil)
	if got := tr.Counts()[TerminationPeerDead]; got != 2 {
		t.Errorf("peer_dead %d, want 2 (d vanished from membership)", got)
	}
}
