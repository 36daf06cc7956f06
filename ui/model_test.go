package ui

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"weavemesh.dev/weave/api"
	"weavemesh.dev/weave/feature"
)

// diff is empty when want and got are equal, else both as JSON.
func diff(want, got any) string {
	if reflect.DeepEqual(want, got) {
		return ""
	}
	w, _ := json.MarshalIndent(want, "", "  ")
	g, _ := json.MarshalIndent(got, "", "  ")
	return fmt.Sprintf("want %s\ngot  %s", w, g)
}

func alivePeer(name, nick string, unreachable ...string) api.Peer {
	return api.Peer{Name: name, Nickname: nick, State: "alive", Unreachable: unreachable}
}

func TestBuild(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	selfPeer := api.Peer{Name: "a", Nickname: "host1", State: "alive", Self: true}
	for _, tc := range []struct {
		name      string
		in        input
		wantPeers []Peer
		wantEdges []Edge
		omitted   bool
	}{{
		name:      "alone",
		in:        input{self: "a", peers: []api.Peer{selfPeer}},
		wantPeers: []Peer{{Name: "a", Nickname: "host1", State: "alive", Self: true}},
		wantEdges: []Edge{},
	}, {
		name: "three peers, full mesh: own connections measured, the third pair from gossip",
		in: input{self: "a",
			peers: []api.Peer{alivePeer("c", "host3"), selfPeer, alivePeer("b", "host2")},
			conns: []api.Connection{
				{Peer: "b", Nickname: "host2", State: "established", Datapath: "fastdp", Encrypted: true, RTTMillis: 0.5, MTU: 1376, TxBytes: 100, RxBytes: 200, TxFrames: 1, RxFrames: 2},
				{Peer: "c", Nickname: "host3", State: "established", Datapath: "sleeve", DatapathReason: "the peer offers no fastdp", TxBytes: 7},
			}},
		wantPeers: []Peer{{Name: "a", Nickname: "host1", State: "alive", Self: true}, {Name: "b", Nickname: "host2", State: "alive"}, {Name: "c", Nickname: "host3", State: "alive"}},
		wantEdges: []Edge{
			{From: "a", To: "b", State: "established", Datapath: "fastdp", Local: true, Encrypted: true, RTTMillis: 0.5, MTU: 1376,
				Traffic: &Traffic{TxBytes: 100, RxBytes: 200, TxFrames: 1, RxFrames: 2, Partial: true}},
			{From: "a", To: "c", State: "established", Datapath: "sleeve", Reason: "the peer offers no fastdp", Local: true, Traffic: &Traffic{TxBytes: 7}},
			{From: "b", To: "c", State: "established", Datapath: DatapathUnknown},
		},
	}, {
		name: "a cut between two others is relayed through a peer that reaches both",
		in: input{self: "a",
			peers: []api.Peer{selfPeer, alivePeer("b", "", "c"), alivePeer("c", ""), alivePeer("d", "")},
			conns: []api.Connection{
				{Peer: "b", State: "established", Datapath: "sleeve"},
				{Peer: "c", State: "established", Datapath: "sleeve"},
				{Peer: "d", State: "established", Datapath: "sleeve"},
			}},
		wantEdges: []Edge{
			{From: "a", To: "b", State: "established", Datapath: "sleeve", Local: true, Traffic: &Traffic{}},
			{From: "a", To: "c", State: "established", Datapath: "sleeve", Local: true, Traffic: &Traffic{}},
			{From: "a", To: "d", State: "established", Datapath: "sleeve", Local: true, Traffic: &Traffic{}},
			{From: "b", To: "c", State: "relayed", Datapath: DatapathUnknown, Via: "a", Reason: "no direct path, as gossip reports"},
			{From: "b", To: "d", State: "established", Datapath: DatapathUnknown},
			{From: "c", To: "d", State: "established", Datapath: DatapathUnknown},
		},
	}, {
		name: "an own relayed connection keeps its next hop; a pair no peer reaches both of fails",
		in: input{self: "a",
			peers: []api.Peer{{Name: "a", State: "alive", Self: true, Unreachable: []string{"c"}}, alivePeer("b", "", "c"), alivePeer("c", "", "a", "b")},
			conns: []api.Connection{
				{Peer: "b", State: "established", Datapath: "sleeve"},
				{Peer: "c", State: "failed", Datapath: "sleeve", Reason: "no heartbeat from 10.0.0.3:6784, and no other peer can relay"},
			}},
		wantEdges: []Edge{
			{From: "a", To: "b", State: "established", Datapath: "sleeve", Local: true, Traffic: &Traffic{}},
			{From: "a", To: "c", State: "failed", Datapath: "sleeve", Reason: "no heartbeat from 10.0.0.3:6784, and no other peer can relay", Local: true, Traffic: &Traffic{}},
			{From: "b", To: "c", State: "failed", Datapath: DatapathUnknown, Reason: "no direct path, as gossip reports"},
		},
	}, {
		name: "dead peers are drawn without edges; a connection to a peer gossip has not told of adds it",
		in: input{self: "a",
			peers: []api.Peer{selfPeer, {Name: "b", Nickname: "gone", State: "dead"}, alivePeer("c", "host3")},
			conns: []api.Connection{{Peer: "c", State: "relayed", Via: "x", Datapath: "sleeve"}, {Peer: "x", Nickname: "late", State: "connecting", Datapath: "sleeve"}}},
		wantPeers: []Peer{{Name: "a", Nickname: "host1", State: "alive", Self: true}, {Name: "b", Nickname: "gone", State: "dead"},
			{Name: "c", Nickname: "host3", State: "alive"}, {Name: "x", Nickname: "late", State: "alive"}},
		wantEdges: []Edge{
			{From: "a", To: "c", State: "relayed", Via: "x", Datapath: "sleeve", Local: true, Traffic: &Traffic{}},
			{From: "a", To: "x", State: "connecting", Datapath: "sleeve", Local: true, Traffic: &Traffic{}},
		},
	}, {
		name: "too many peers: only the broken pairs between others",
		in: input{self: "a", maxRemote: 2,
			peers: []api.Peer{selfPeer, alivePeer("b", ""), alivePeer("c", "", "d"), alivePeer("d", "")}},
		omitted: true,
		wantEdges: []Edge{
			{From: "c", To: "d", State: "relayed", Via: "a", Datapath: DatapathUnknown, Reason: "no direct path, as gossip reports"},
		},
	}, {
		name:      "no view of the mesh at all still names this peer",
		in:        input{self: "a"},
		wantPeers: []Peer{{Name: "a", State: "alive", Self: true}},
		wantEdges: []Edge{},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			tc.in.now = now
			if tc.in.maxRemote == 0 {
				tc.in.maxRemote = DefaultMaxRemotePeers
			}
			m := build(tc.in)
			if m.Version != SchemaVersion || m.Self != "a" || !m.Time.Equal(now) {
				t.Errorf("header: version %d self %q time %v", m.Version, m.Self, m.Time)
			}
			if tc.wantPeers != nil {
				if d := diff(tc.wantPeers, m.Peers); d != "" {
					t.Errorf("peers :\n%s", d)
				}
			}
			if d := diff(tc.wantEdges, m.Edges); d != "" {
				t.Errorf("edges :\n%s", d)
			}
			if m.RemoteEdgesOmitted != tc.omitted {
				t.Errorf("remote_edges_omitted %v, want %v", m.RemoteEdgesOmitted, tc.omitted)
			}
		})
	}
}

func TestBuildDatapaths(t *testing.T) {
	m := build(input{self: "a", datapaths: []feature.DatapathStats{
		{Name: "sleeve", TxFrames: 1, RxFrames: 2, TxBytes: 3, RxBytes: 4},
		{Name: "fastdp", TxBytes: 5},
	}})
	want := []Datapath{
		{Name: "sleeve", Traffic: Traffic{TxFrames: 1, RxFrames: 2, TxBytes: 3, RxBytes: 4}},
		{Name: "fastdp", Traffic: Traffic{TxBytes: 5}},
	}
	if d := diff(want, m.Datapaths); d != "" {
		t.Errorf("datapaths :\n%s", d)
	}
}

// TestBuildLargeMesh: 500 peers, a handful of broken pairs: the picture
// lists this router's connections and the broken pairs, not 125,000 edges.
func TestBuildLargeMesh(t *testing.T) {
	in := input{self: "p000", maxRemote: DefaultMaxRemotePeers}
	for i := range 500 {
		p := alivePeer(fmt.Sprintf("p%03d", i), "")
		if i > 0 && i <= 5 {
			p.Unreachable = []string{fmt.Sprintf("p%03d", i+100)}
		}
		p.Self = i == 0
		in.peers = append(in.peers, p)
		if i > 0 {
			in.conns = append(in.conns, api.Connection{Peer: p.Name, State: "established", Datapath: "sleeve"})
		}
	}
	m := build(in)
	if !m.RemoteEdgesOmitted || len(m.Edges) != 499+5 || len(m.Peers) != 500 {
		t.Fatalf("omitted %v, %d edges, %d peers; want true, %d, 500", m.RemoteEdgesOmitted, len(m.Edges), len(m.Peers), 499+5)
	}
	for _, e := range m.Edges[499:] {
		if e.State != "relayed" || e.Via != "p000" {
			t.Errorf("broken pair %s-%s: %s via %q, want relayed via p000", e.From, e.To, e.State, e.Via)
		}
	}
}

func TestRater(t *testing.T) {
	t0 := time.Unix(1000, 0)
	r := newRater(time.Second)
	type step struct {
		at   time.Duration
		cur  map[string][2]uint64
		want map[string][2]float64
	}
	for i, s := range []step{
		{0, map[string][2]uint64{"x": {100, 0}}, map[string][2]float64{}},
		// Too soon to measure: still nothing.
		{500 * time.Millisecond, map[string][2]uint64{"x": {200, 0}}, map[string][2]float64{}},
		{2 * time.Second, map[string][2]uint64{"x": {2100, 50}, "y": {5, 5}}, map[string][2]float64{"x": {1000, 25}}},
		// Between measurements the last rates stand, for those still there.
		{2500 * time.Millisecond, map[string][2]uint64{"x": {9999, 9999}}, map[string][2]float64{"x": {1000, 25}}},
		// A counter that went backwards has no rate until the next.
		{3 * time.Second, map[string][2]uint64{"x": {10, 10}, "y": {1005, 6}}, map[string][2]float64{"y": {1000, 1}}},
		{4 * time.Second, map[string][2]uint64{"x": {10, 10}}, map[string][2]float64{"x": {0, 0}}},
		// The clock went back: start again.
		{time.Second, map[string][2]uint64{"x": {10, 10}}, map[string][2]float64{}},
	} {
		got := r.update(t0.Add(s.at), s.cur)
		if d := diff(s.want, got); d != "" {
			t.Errorf("step %d at %v :\n%s", i, s.at, d)
		}
	}
}

// FuzzBuild: whatever names, nicknames and unreachable lists gossip
// carries, the picture is built, every edge joins two of its peers, and
// its JSON carries no raw markup.
func FuzzBuild(f *testing.F) {
	f.Add("a", "b", "c", "<b>x</b>", "b", byte(3))
	f.Add("", "", "", "", "", byte(0))
	f.Add("a", "a", "a", "\x00\"'&", "a", byte(1))
	f.Fuzz(func(t *testing.T, self, p1, p2, nick, down string, maxRemote byte) {
		in := input{self: self, maxRemote: int(maxRemote % 4),
			peers: []api.Peer{
				{Name: self, Nickname: nick, State: "alive", Self: true},
				{Name: p1, Nickname: nick, State: "alive", Unreachable: []string{down, p2}},
				{Name: p2, Nickname: nick, State: "suspect", Unreachable: []string{p1}},
			},
			conns: []api.Connection{{Peer: p1, Nickname: nick, State: "relayed", Via: p2, Datapath: "sleeve"}},
		}
		m := build(in)
		names := map[string]bool{}
		for _, p := range m.Peers {
			names[p.Name] = true
		}
		for _, e := range m.Edges {
			if !names[e.From] || !names[e.To] {
				t.Errorf("edge %q - %q joins a peer not in the picture", e.From, e.To)
			}
		}
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if strings.ContainsAny(string(b), "<>") {
			t.Errorf("raw markup in %s", b)
		}
	})
}
