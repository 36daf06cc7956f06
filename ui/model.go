package ui

import (
	"cmp"
	"slices"
	"time"

	"weavemesh.dev/weave/api"
	"weavemesh.dev/weave/feature"
)

// SchemaVersion is the version of mesh.json's layout; it changes only
// when a field changes meaning or goes away.
const SchemaVersion = 1

// DatapathUnknown is the datapath of an edge between two other peers:
// gossip says whether their direct path is up, not what carries it.
const DatapathUnknown = "unknown"

// Edge states besides the connection states of api.Connection.
const (
	stateEstablished = "established"
	stateRelayed     = "relayed"
	stateFailed      = "failed"
)

// DefaultMaxRemotePeers bounds the peers whose pairs are all listed: a
// full mesh of n peers has n(n-1)/2 edges, so above it only the pairs
// whose direct path is down are listed, which stay few.
const DefaultMaxRemotePeers = 40

// Mesh is mesh.json: one router's picture of the mesh (docs/metrics.md).
type Mesh struct {
	Version int       `json:"version"`
	Self    string    `json:"self"`
	Time    time.Time `json:"time"`
	// IntervalMillis is how often the page polls, and the shortest time
	// rates are measured over.
	IntervalMillis int    `json:"interval_ms"`
	Peers          []Peer `json:"peers"`
	Edges          []Edge `json:"edges"`
	// RemoteEdgesOmitted is set when there are too many peers to list
	// every pair of other peers: then only the pairs whose direct path is
	// down are among the edges, the others are direct.
	RemoteEdgesOmitted bool       `json:"remote_edges_omitted,omitempty"`
	Datapaths          []Datapath `json:"datapaths"`
	// Errors say which part of the picture could not be read.
	Errors []string `json:"errors,omitempty"`
}

// Peer is one member of the mesh.
type Peer struct {
	Name     string `json:"name"`
	Nickname string `json:"nickname"`
	State    string `json:"state"` // alive, suspect, dead, left
	Address  string `json:"address,omitempty"`
	Version  string `json:"version,omitempty"`
	Self     bool   `json:"self,omitempty"`
}

// Edge is the path between two peers. Local edges are this router's own
// connections, measured here; the others come from gossip.
type Edge struct {
	From  string `json:"from"`
	To    string `json:"to"`
	State string `json:"state"` // established, relayed, connecting, failed
	// Datapath is sleeve or fastdp on local edges, unknown on the others.
	Datapath  string  `json:"datapath"`
	Via       string  `json:"via,omitempty"`    // relayed: the next hop
	Reason    string  `json:"reason,omitempty"` // failed, or why the sleeve
	Local     bool    `json:"local"`
	Encrypted bool    `json:"encrypted,omitempty"`
	RTTMillis float64 `json:"rtt_ms,omitempty"`
	MTU       int     `json:"mtu,omitempty"`
	// Traffic is set on local edges only: no router knows the traffic
	// between two others.
	Traffic *Traffic `json:"traffic,omitempty"`
}

// Traffic is what a path carried: totals since the router started, and
// bytes per second over the last interval of at least Interval (absent
// until two samples were taken).
type Traffic struct {
	TxFrames uint64   `json:"tx_frames"`
	RxFrames uint64   `json:"rx_frames"`
	TxBytes  uint64   `json:"tx_bytes"`
	RxBytes  uint64   `json:"rx_bytes"`
	TxBps    *float64 `json:"tx_bytes_per_second,omitempty"`
	RxBps    *float64 `json:"rx_bytes_per_second,omitempty"`
	// Partial is set when some of the path's frames are not counted:
	// on a fastdp edge the kernel carries the unicast frames, and only
	// the sleeve's (broadcasts, floods) are in the counts.
	Partial bool `json:"partial,omitempty"`
}

// Datapath is one datapath's totals on this host.
type Datapath struct {
	Name    string  `json:"name"`
	Traffic Traffic `json:"traffic"`
}

// input is what a Mesh is built from.
type input struct {
	self      string
	now       time.Time
	peers     []api.Peer
	conns     []api.Connection
	datapaths []feature.DatapathStats
	// maxRemote is the largest number of other live peers whose every
	// pair is listed.
	maxRemote int
}

// build makes the picture. It never fails: what could not be read is
// missing, and the caller adds the reason to Errors.
func build(in input) Mesh {
	m := Mesh{Version: SchemaVersion, Self: in.self, Time: in.now.UTC(), Peers: []Peer{}, Edges: []Edge{}, Datapaths: []Datapath{}}
	known := map[string]bool{}
	alive := map[string]bool{}
	down := map[[2]string]bool{}
	for _, p := range in.peers {
		if known[p.Name] {
			continue
		}
		known[p.Name] = true
		m.Peers = append(m.Peers, Peer{Name: p.Name, Nickname: p.Nickname, State: p.State, Address: p.Address, Version: p.Version, Self: p.Self || p.Name == in.self})
		if p.State == "alive" || p.State == "suspect" {
			alive[p.Name] = true
		}
		for _, u := range p.Unreachable {
			down[pair(p.Name, u)] = true
		}
	}
	if !known[in.self] && in.self != "" {
		known[in.self] = true
		m.Peers = append(m.Peers, Peer{Name: in.self, State: "alive", Self: true})
	}
	for _, c := range in.conns {
		if !known[c.Peer] {
			known[c.Peer] = true
			m.Peers = append(m.Peers, Peer{Name: c.Peer, Nickname: c.Nickname, State: "alive"})
		}
		m.Edges = append(m.Edges, Edge{
			From: in.self, To: c.Peer, State: c.State, Datapath: c.Datapath, Via: c.Via,
			Reason: cmp.Or(c.Reason, c.DatapathReason), Local: true, Encrypted: c.Encrypted,
			RTTMillis: c.RTTMillis, MTU: c.MTU,
			Traffic: &Traffic{
				TxFrames: c.TxFrames, RxFrames: c.RxFrames, TxBytes: c.TxBytes, RxBytes: c.RxBytes,
				Partial: c.Datapath != "sleeve",
			},
		})
	}
	m.Edges = append(m.Edges, remoteEdges(in.self, alive, down, in.maxRemote, &m.RemoteEdgesOmitted)...)
	slices.SortFunc(m.Peers, func(a, b Peer) int {
		if a.Self != b.Self {
			if a.Self {
				return -1
			}
			return 1
		}
		return cmp.Compare(a.Name, b.Name)
	})
	for _, d := range in.datapaths {
		m.Datapaths = append(m.Datapaths, Datapath{Name: d.Name, Traffic: Traffic{
			TxFrames: d.TxFrames, RxFrames: d.RxFrames, TxBytes: d.TxBytes, RxBytes: d.RxBytes,
		}})
	}
	return m
}

// remoteEdges are the paths between pairs of other live peers. gossip
// carries, for each peer, the peers it cannot reach directly; every other
// pair is direct, as the routers connect to all peers. A pair that is down
// is relayed when some peer reaches both directly, else failed.
func remoteEdges(self string, alive map[string]bool, down map[[2]string]bool, maxRemote int, omitted *bool) []Edge {
	var others []string
	for n := range alive {
		if n != self {
			others = append(others, n)
		}
	}
	slices.Sort(others)
	relay := func(a, b string) string {
		for _, k := range append([]string{self}, others...) {
			if k != a && k != b && (alive[k] || k == self) && !down[pair(a, k)] && !down[pair(b, k)] {
				return k
			}
		}
		return ""
	}
	edge := func(a, b string) Edge {
		e := Edge{From: a, To: b, State: stateEstablished, Datapath: DatapathUnknown}
		if down[pair(a, b)] {
			e.State = stateFailed
			e.Reason = "no direct path, as gossip reports"
			if via := relay(a, b); via != "" {
				e.State, e.Via = stateRelayed, via
			}
		}
		return e
	}
	var out []Edge
	if len(others) <= maxRemote {
		for i, a := range others {
			for _, b := range others[i+1:] {
				out = append(out, edge(a, b))
			}
		}
		return out
	}
	*omitted = true
	for p := range down {
		if p[0] != self && p[1] != self && alive[p[0]] && alive[p[1]] {
			out = append(out, edge(p[0], p[1]))
		}
	}
	slices.SortFunc(out, func(a, b Edge) int { return cmp.Or(cmp.Compare(a.From, b.From), cmp.Compare(a.To, b.To)) })
	return out
}

// pair is the unordered pair {a, b}.
func pair(a, b string) [2]string {
	if a > b {
		a, b = b, a
	}
	return [2]string{a, b}
}
