package routes

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	"weavemesh.dev/weave/peer"
)

const (
	A peer.Name = iota + 1
	B
	C
	D
	E
)

func TestNextHop(t *testing.T) {
	tests := []struct {
		name string
		self peer.Name
		down map[peer.Name][]peer.Name
		dst  peer.Name
		want peer.Name // None = unreachable
	}{
		{"full mesh direct", A, nil, C, C},
		{"cut relays via lowest", B, map[peer.Name][]peer.Name{B: {C}}, C, A},
		{"cut reported by far end only", B, map[peer.Name][]peer.Name{C: {B}}, C, A},
		{"two hops", A, map[peer.Name][]peer.Name{A: {C, D, E}, B: {D, E}, C: {E}}, E, B},
		{"isolated", A, map[peer.Name][]peer.Name{E: {A, B, C, D}}, E, peer.None},
		{"self", A, nil, A, peer.None},
		{"unknown", A, nil, 99, peer.None},
	}
	for _, tt := range tests {
		r := Compute(Graph{Self: tt.self, Peers: []peer.Name{A, B, C, D, E}, Down: tt.down})
		got, ok := r.NextHop(tt.dst)
		if got != tt.want || ok != (tt.want != peer.None) {
			t.Errorf("%s: NextHop(%v) = %v %v, want %v", tt.name, tt.dst, got, ok, tt.want)
		}
	}
}

// Every peer computing the flood tree of every source from the same graph
// must deliver exactly one copy to every reachable peer.
func TestFloodExactlyOnce(t *testing.T) {
	peers := []peer.Name{A, B, C, D, E}
	downs := []map[peer.Name][]peer.Name{
		nil,
		{B: {C}},
		{A: {C, D, E}, B: {D, E}, C: {E}},
		{A: {B}, C: {D}, E: {A}},
	}
	for di, down := range downs {
		views := map[peer.Name]*Routes{}
		for _, p := range peers {
			views[p] = Compute(Graph{Self: p, Peers: peers, Down: down})
		}
		for _, src := range peers {
			got := map[peer.Name]int{}
			queue := []peer.Name{src}
			for len(queue) > 0 {
				u := queue[0]
				queue = queue[1:]
				for _, c := range views[u].FloodChildren(src) {
					if !views[u].adjacent(views[u].index[u], views[u].index[c]) {
						t.Fatalf("down %d src %v: %v floods to non-neighbour %v", di, src, u, c)
					}
					got[c]++
					queue = append(queue, c)
				}
			}
			for _, p := range peers {
				if p == src {
					continue
				}
				if got[p] != 1 {
					t.Errorf("down %d src %v: %v got %d copies", di, src, p, got[p])
				}
			}
		}
	}
}

func TestTableAndCache(t *testing.T) {
	tab := NewTable(A)
	if _, ok := tab.Get().NextHop(B); ok {
		t.Fatal("route to unknown peer")
	}
	tab.Set(Compute(Graph{Self: A, Peers: []peer.Name{A, B, C}}))
	c1 := tab.Get().FloodChildren(A)
	if !slices.Equal(c1, []peer.Name{B, C}) {
		t.Fatalf("children %v", c1)
	}
	if c2 := tab.Get().FloodChildren(A); &c1[0] != &c2[0] {
		t.Fatal("tree not cached")
	}
}

// bfsReference is the plain breadth-first search, trying every peer from
// every visited one, that the linear bfs must agree with.
func bfsReference(r *Routes, root int) []int32 {
	n := len(r.peers)
	parent := make([]int32, n)
	seen := make([]bool, n)
	for i := range parent {
		parent[i] = -1
	}
	queue := []int{root}
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

func TestBFSMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 200 {
		n := 1 + rng.IntN(40)
		var peers []peer.Name
		for i := 1; i <= n; i++ {
			peers = append(peers, peer.Name(i))
		}
		// From a full mesh to a sparse one.
		pDown := rng.Float64()
		down := map[peer.Name][]peer.Name{}
		for _, a := range peers {
			for _, b := range peers {
				if a < b && rng.Float64() < pDown {
					down[a] = append(down[a], b)
				}
			}
		}
		r := Compute(Graph{Self: peers[rng.IntN(n)], Peers: peers, Down: down})
		for root := range n {
			if got, want := r.bfs(root), bfsReference(r, root); !slices.Equal(got, want) {
				t.Fatalf("round %d root %d: parents %v, want %v", round, root, got, want)
			}
		}
	}
}

func TestUpdateOnlyOnChange(t *testing.T) {
	tab := NewTable(A)
	g := Graph{Self: A, Peers: []peer.Name{A, B, C, D}, Down: map[peer.Name][]peer.Name{B: {C, D}}}
	if !tab.Update(g) {
		t.Fatal("first graph not computed")
	}
	r := tab.Get()
	same := []Graph{
		g,
		// Order and duplicates do not matter, nor does self being listed.
		{Self: A, Peers: []peer.Name{D, C, B, B}, Down: map[peer.Name][]peer.Name{B: {D, C}}},
		// A link reported down by both ends, or by the other end, is the
		// same unusable link.
		{Self: A, Peers: []peer.Name{A, B, C, D}, Down: map[peer.Name][]peer.Name{B: {C}, D: {B}}},
		// Down lists of peers not in the graph change nothing.
		{Self: A, Peers: []peer.Name{A, B, C, D}, Down: map[peer.Name][]peer.Name{B: {C, D, E}, E: {A}}},
	}
	for i, g := range same {
		if tab.Update(g) || tab.Get() != r {
			t.Errorf("graph %d: recomputed an unchanged graph", i)
		}
	}
	changed := []Graph{
		{Self: A, Peers: []peer.Name{A, B, C, D}, Down: map[peer.Name][]peer.Name{B: {C}}},
		{Self: A, Peers: []peer.Name{A, B, C, D, E}, Down: map[peer.Name][]peer.Name{B: {C}}},
		{Self: A, Peers: []peer.Name{A, B, C, D, E}},
		{Self: B, Peers: []peer.Name{A, B, C, D, E}},
	}
	for i, g := range changed {
		before := tab.Get()
		if !tab.Update(g) || tab.Get() == before {
			t.Errorf("graph %d: change not computed", i)
		}
		if want := Compute(g); !slices.Equal(tab.Get().peers, want.peers) || !maps.Equal(tab.Get().bad, want.bad) ||
			!slices.Equal(tab.Get().next, want.next) {
			t.Errorf("graph %d: Update and Compute disagree", i)
		}
	}
}

func TestLookupAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	var peers []peer.Name
	for i := 1; i <= 100; i++ {
		peers = append(peers, peer.Name(i))
	}
	tab := NewTable(1)
	tab.Update(Graph{Self: 1, Peers: peers, Down: map[peer.Name][]peer.Name{1: {2, 3}}})
	tab.Get().FloodChildren(50) // computes and caches the tree
	if n := testing.AllocsPerRun(100, func() {
		r := tab.Get()
		r.NextHop(2)
		r.NextHop(70)
		r.FloodChildren(50)
	}); n > 0 {
		t.Errorf("%.1f allocations per lookup", n)
	}
}

func BenchmarkFloodTree2000(b *testing.B) {
	var peers []peer.Name
	for i := 1; i <= 2000; i++ {
		peers = append(peers, peer.Name(i))
	}
	down := map[peer.Name][]peer.Name{1: {2, 3, 4}, 7: {100, 200}}
	r := Compute(Graph{Self: 1, Peers: peers, Down: down})
	b.ReportAllocs()
	for b.Loop() {
		r.bfs(1000)
	}
}

func BenchmarkCompute500(b *testing.B) {
	var peers []peer.Name
	for i := 1; i <= 500; i++ {
		peers = append(peers, peer.Name(i))
	}
	down := map[peer.Name][]peer.Name{1: {2, 3, 4}, 7: {100, 200}}
	for i := 0; i < b.N; i++ {
		r := Compute(Graph{Self: 1, Peers: peers, Down: down})
		r.FloodChildren(250)
	}
}

func ExampleRoutes_NextHop() {
	r := Compute(Graph{Self: B, Peers: []peer.Name{A, B, C}, Down: map[peer.Name][]peer.Name{B: {C}}})
	via, _ := r.NextHop(C)
	fmt.Println(via)
	// Output: 00:00:00:00:00:01
}
