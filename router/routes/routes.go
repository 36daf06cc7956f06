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
	via   []int32 // first relay on the path (the next hop) or -1 when direct

	mu    sync.Mutex // guards trees
	trees map[peer.Name][]peer.Name
}

// Compute builds the routes for g.
func Compute(g Graph) *Routes {
	peers := slices.Clone(g.Peers)
	if !slices.Contains(peers, g.Self) {
		peers = append(peers, g.Self)
	}
	slices.Sort(peers)
	peers = slices.Compact(peers)
	r := &Routes{
		self:  g.Self,
		peers: peers,
		index: make(map[peer.Name]int, len(peers)),
		bad:   make(map[uint64]struct{}),
		trees: make(map[peer.Name][]peer.Name),
	}
	for i, p := range peers {
		r.index[p] = i
	}
	for p, downs := range g.Down {
		i, ok := r.index[p]
		if !ok {
			continue
		}
		for _, d := range downs {
			if j, ok := r.index[d]; ok {
				r.bad[key(i, j)] = struct{}{}
				r.bad[key(j, i)] = struct{}{}
			}
		}
	}
	parent := r.bfs(r.index[g.Self])
	r.next = make([]int32, len(peers))
	self := int32(r.index[g.Self])
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
func (r *Routes) bfs(root int) []int32 {
	n := len(r.peers)
	parent := make([]int32, n)
	seen := make([]bool, n)
	for i := range parent {
		parent[i] = -1
	}
	queue := make([]int, 0, n)
	queue = append(queue, root)
	seen[root] = true
	for len(queue) > 0 {
		u := queue[0]
		queue = queue[1:]
		for v := 0; v < n; v++ {
			if !seen[v] && r.adjacent(u, v) {
				seen[v] = true
				parent[v] = int32(u)
				queue = append(queue, v)
			}
		}
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
// modify it.
func (r *Routes) FloodChildren(src peer.Name) []peer.Name {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c, ok := r.trees[src]; ok {
		return c
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
	r.trees[src] = children
	return children
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

// Get returns the current routes.
func (t *Table) Get() *Routes { return t.cur.Load() }
