// Package routes owns path computation over the mesh: the next hop towards
// every peer (direct when the link is up, else through relays on a shortest
// path) and, for each flooding source, the spanning tree a flooded frame
// follows so that every peer receives exactly one copy.
//
// Every peer computes the same trees from the same gossiped topology: a
// breadth-first search from the source, visiting peers in name order, so a
// peer's parent is the first peer, in that order, that reaches it.
package routes

import (
	"maps"
	"slices"
	"sync"
	"sync/atomic"

	"weavemesh.dev/weave/peer"
)

// Graph is the input to a computation: the live peers (self included) and,
// for each peer, the peers it reports it cannot reach directly. A link is
// usable when neither end reports it down.
type Graph struct {
	Self  peer.Name
	Peers []peer.Name
	Down  map[peer.Name][]peer.Name
}

// Routes is one immutable computation. Flooding trees are computed on first
// use and cached.
type Routes struct {
	self  peer.Name
	peers []peer.Name       // sorted
	index map[peer.Name]int // peer -> position in peers
	bad   map[uint64]struct{}
	next  []int32 // next hop index per peer index; -1 unreachable, self for self

	// trees caches FloodChildren: source -> []peer.Name. A sync.Map, not
	// a mutex, because the datapath reads it for every flooded frame from
	// several goroutines and writes happen once per source.
	trees sync.Map
}

// Compute builds the routes for g.
func Compute(g Graph) *Routes {
	return compute(g.Self, sortedPeers(g), g.Down)
}

// sortedPeers returns g's peers with self, sorted, without duplicates.
func sortedPeers(g Graph) []peer.Name {
	peers := slices.Clone(g.Peers)
	if !slices.Contains(peers, g.Self) {
		peers = append(peers, g.Self)
	}
	slices.Sort(peers)
	return slices.Compact(peers)
}

// badLinks returns the unusable links among the peers of index, both
// directions of each.
func badLinks(index map[peer.Name]int, down map[peer.Name][]peer.Name) map[uint64]struct{} {
	bad := make(map[uint64]struct{})
	for p, downs := range down {
		i, ok := index[p]
		if !ok {
			continue
		}
		for _, d := range downs {
			if j, ok := index[d]; ok {
				bad[key(i, j)] = struct{}{}
				bad[key(j, i)] = struct{}{}
			}
		}
	}
	return bad
}

// compute builds the routes over peers, sorted and holding self.
func compute(selfName peer.Name, peers []peer.Name, down map[peer.Name][]peer.Name) *Routes {
	r := &Routes{
		self:  selfName,
		peers: peers,
		index: make(map[peer.Name]int, len(peers)),
	}
	for i, p := range peers {
		r.index[p] = i
	}
	r.bad = badLinks(r.index, down)
	parent := r.bfs(r.index[selfName])
	r.next = make([]int32, len(peers))
	self := int32(r.index[selfName])
	for i := range peers {
		r.next[i] = -1
	}
	r.next[self] = self
	// Resolve each peer's first hop by walking up to self; memoised.
	var resolve func(i int32) int32
	resolve = func(i int32) int32 {
		if r.next[i] != -1 {
			return r.next[i]
		}
		p := parent[i]
		switch {
		case p < 0:
			return -1
		case p == self:
			r.next[i] = i
		default:
			r.next[i] = resolve(p)
		}
		return r.next[i]
	}
	for i := range peers {
		resolve(int32(i))
	}
	return r
}

func key(i, j int) uint64 { return uint64(i)<<32 | uint64(j) }

func (r *Routes) adjacent(i, j int) bool {
	if i == j {
		return false
	}
	if len(r.bad) == 0 {
		return true
	}
	_, down := r.bad[key(i, j)]
	return !down
}

// bfs returns the parent index of every peer in the tree rooted at root
// (-1 for the root and for unreachable peers).
//
// It takes O(peers + down links), not O(peers²): a mesh is nearly
// complete, so instead of trying every peer from every visited one, each
// visit scans only the peers not reached yet. A look at a peer either
// reaches it (once per peer in all) or finds a down link (at most once
// per link end and visit). The unvisited list stays in name order, so
// parents are the same as the plain search's: the first peer, in queue
// order, that reaches each one.
func (r *Routes) bfs(root int) []int32 {
	n := len(r.peers)
	parent := make([]int32, n)
	for i := range parent {
		parent[i] = -1
	}
	unvisited := make([]int32, 0, n)
	for i := range n {
		if i != root {
			unvisited = append(unvisited, int32(i))
		}
	}
	queue := make([]int32, 1, n)
	queue[0] = int32(root)
	for h := 0; h < len(queue) && len(unvisited) > 0; h++ {
		u := queue[h]
		left := unvisited[:0]
		for _, v := range unvisited {
			if r.adjacent(int(u), int(v)) {
				parent[v] = u
				queue = append(queue, v)
			} else {
				left = append(left, v)
			}
		}
		unvisited = left
	}
	return parent
}

// NextHop returns the neighbour to send to for dst: dst itself when the
// direct link is usable, otherwise the first relay on a shortest path.
func (r *Routes) NextHop(dst peer.Name) (peer.Name, bool) {
	i, ok := r.index[dst]
	if !ok || dst == r.self {
		return peer.None, false
	}
	h := r.next[i]
	if h < 0 {
		return peer.None, false
	}
	return r.peers[h], true
}

// FloodChildren returns the neighbours to which self forwards a frame
// flooded by src: its children in src's tree. The slice is shared; do not
// modify it. The first call for a source computes the tree, in time linear
// in peers and down links and holding no lock; later calls read the cache
// without allocating.
func (r *Routes) FloodChildren(src peer.Name) []peer.Name {
	if c, ok := r.trees.Load(src); ok {
		return c.([]peer.Name)
	}
	var children []peer.Name
	if root, ok := r.index[src]; ok {
		self := int32(r.index[r.self])
		for i, p := range r.bfs(root) {
			if p == self {
				children = append(children, r.peers[i])
			}
		}
	}
	// Two goroutines may compute the same tree at once; both get the one
	// stored first.
	c, _ := r.trees.LoadOrStore(src, children)
	return c.([]peer.Name)
}

// Peers returns the peers this computation covers, sorted.
func (r *Routes) Peers() []peer.Name { return r.peers }

// Table holds the current Routes for lock-free reads on the datapath.
type Table struct {
	cur atomic.Pointer[Routes]
}

// NewTable returns a table whose routes know only self.
func NewTable(self peer.Name) *Table {
	t := &Table{}
	t.cur.Store(Compute(Graph{Self: self}))
	return t
}

// Set replaces the current routes.
func (t *Table) Set(r *Routes) { t.cur.Store(r) }

// Update recomputes the routes from g only when g differs from the graph
// the current routes were computed from, in its peers or in its usable
// links, and reports whether it did. Comparing takes O(peers + down links)
// where recomputing takes more and throws the cached flood trees away, so
// the router calls Update on every refresh and routes change only with
// the topology. Update is for a single writer.
func (t *Table) Update(g Graph) bool {
	cur := t.Get()
	peers := sortedPeers(g)
	if cur.self == g.Self && slices.Equal(cur.peers, peers) && maps.Equal(cur.bad, badLinks(cur.index, g.Down)) {
		return false
	}
	t.Set(compute(g.Self, peers, g.Down))
	return true
}

// Get returns the current routes.
func (t *Table) Get() *Routes { return t.cur.Load() }
