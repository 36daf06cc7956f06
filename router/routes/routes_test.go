package routes

import (
	"fmt"
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
