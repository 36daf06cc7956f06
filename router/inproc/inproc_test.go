package inproc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"weavemesh.dev/weave/api"
	"weavemesh.dev/weave/gossip"
	"weavemesh.dev/weave/peer"
)

// poll waits up to d for ok, checking every 20ms.
func poll(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func startMesh(t *testing.T, n int) *Mesh {
	t.Helper()
	m, err := New(Options{Dir: t.TempDir(), Size: n, Tune: gossip.QuickTimings, CountBytes: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := 0; i < n; i++ {
		var join []int
		if i > 0 {
			join = []int{0}
		}
		if _, err := m.Start(ctx, i, join...); err != nil {
			t.Fatal(err)
		}
	}
	return m
}

func names(m *Mesh, idx []int) []peer.Name {
	out := make([]peer.Name, len(idx))
	for k, i := range idx {
		out[k] = m.Name(i)
	}
	return out
}

func TestMeshConvergesAndReplicates(t *testing.T) {
	const n = 5
	m := startMesh(t, n)
	all := names(m, m.Running())
	poll(t, 20*time.Second, "every router sees every router", func() bool {
		for _, i := range m.Running() {
			if !Sees(m.Router(i), all) {
				return false
			}
		}
		return true
	})

	var st api.Status
	if err := Call(m.Router(2), http.MethodGet, "/status", nil, &st); err != nil {
		t.Fatal(err)
	}
	if st.Peers != n || st.Datapaths["none"] != n-1 {
		t.Errorf("status: peers %d, datapaths %v; want %d peers, all on datapath none", st.Peers, st.Datapaths, n)
	}
	err := Call(m.Router(2), http.MethodPost, "/attach", api.AttachRequest{Netns: "/proc/1/ns/net"}, nil)
	var se *api.StatusError
	if !errors.As(err, &se) || se.Code != http.StatusConflict {
		t.Errorf("attach without a data plane: %v, want a 409", err)
	}

	// A record added on one router is answered by every other, over the
	// API and over DNS itself.
	ip := netip.MustParseAddr("10.32.7.7")
	if err := AddDNS(m.Router(1), "web", ip); err != nil {
		t.Fatal(err)
	}
	poll(t, 10*time.Second, "every router knows web", func() bool {
		for _, i := range m.Running() {
			got, err := LookupDNS(m.Router(i), "web")
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Contains(got, ip.String()) {
				return false
			}
		}
		return true
	})
	c := &mdns.Client{Timeout: 2 * time.Second}
	q := new(mdns.Msg)
	q.SetQuestion("web.weave.local.", mdns.TypeA)
	resp, _, err := c.Exchange(q, m.DNSAddr(4).String())
	if err != nil {
		t.Fatalf("DNS query to router 4: %v", err)
	}
	if len(resp.Answer) != 1 || !resp.Answer[0].(*mdns.A).A.Equal(net.IP(ip.AsSlice())) {
		t.Errorf("DNS answer of router 4: %v, want web -> %s", resp.Answer, ip)
	}

	// An allocation is gossiped: every router learns the count.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p, err := Allocate(ctx, m.Router(3), "ep1")
	if err != nil {
		t.Fatal(err)
	}
	if !netip.MustParsePrefix("10.32.0.0/12").Contains(p.Addr()) {
		t.Errorf("allocated %s outside the default range", p)
	}
	poll(t, 10*time.Second, "every router counts router 3's allocation", func() bool {
		for _, i := range m.Running() {
			got, err := Allocated(ctx, m.Router(i), m.Name(3))
			if err != nil {
				t.Fatal(err)
			}
			if got != 1 {
				return false
			}
		}
		return true
	})

	// A link that goes down on one router shows in every topology.
	m.Router(0).SetLinksDown([]peer.Name{m.Name(1)})
	poll(t, 10*time.Second, "every router sees router 0's link to 1 down", func() bool {
		for _, i := range m.Running() {
			e, ok := m.Router(i).Topology().Entry(m.Name(0))
			if !ok || !slices.Equal(e.Down, []peer.Name{m.Name(1)}) {
				return false
			}
		}
		return true
	})

	for i := 0; i < n; i++ {
		if m.BytesSent(i) == 0 {
			t.Errorf("router %d sent no gossip bytes", i)
		}
	}

	// A killed router is declared dead; a stopped one is gone too (left,
	// or dead where its leaving flag was not heard in time).
	m.Kill(4)
	m.Stop(3)
	var last string
	defer func() {
		if t.Failed() {
			t.Log(last)
		}
	}()
	poll(t, 20*time.Second, "routers 3 and 4 gone everywhere", func() bool {
		for _, i := range m.Running() {
			st := map[peer.Name]gossip.MemberState{}
			for _, mb := range m.Router(i).Gossip().Members() {
				st[mb.Name] = mb.State
			}
			if st[m.Name(4)] != gossip.Dead || (st[m.Name(3)] != gossip.Left && st[m.Name(3)] != gossip.Dead) {
				last = fmt.Sprintf("router %d sees 3 %s, 4 %s", i, st[m.Name(3)], st[m.Name(4)])
				return false
			}
		}
		return true
	})
}

func TestMeshRestartKeepsIdentity(t *testing.T) {
	m := startMesh(t, 3)
	m.Kill(2)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	r, err := m.Start(ctx, 2, 0)
	if err != nil {
		t.Fatal(err)
	}
	if r.Name() != m.Name(2) {
		t.Errorf("restarted router is %s, want %s", r.Name(), m.Name(2))
	}
	if _, err := m.Start(ctx, 2, 0); err == nil {
		t.Error("starting a running router again succeeded")
	}
	all := names(m, m.Running())
	poll(t, 20*time.Second, "the restarted router is back everywhere", func() bool {
		for _, i := range m.Running() {
			if !Sees(m.Router(i), all) {
				return false
			}
		}
		return true
	})
}

func TestNameIndexRoundTrip(t *testing.T) {
	m, err := New(Options{Dir: t.TempDir(), Size: 600, Net: 200})
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{0, 1, 249, 250, 599} {
		if got, ok := m.Index(m.Name(i)); !ok || got != i {
			t.Errorf("Index(Name(%d)) = %d, %v", i, got, ok)
		}
	}
	if _, ok := m.Index(peer.Name(0x0a0000000001)); ok {
		t.Error("a foreign name has an index")
	}
	if a := m.Addr(250); a != netip.MustParseAddr("127.200.1.1") {
		t.Errorf("Addr(250) = %s", a)
	}
	for _, o := range []Options{{Size: 1}, {Dir: "x"}, {Dir: "x", Size: MaxSize + 1}, {Dir: "x", Size: 1, Port: 65535}, {Dir: "x", Size: 2, Seeds: 3}} {
		if _, err := New(o); err == nil {
			t.Errorf("New(%+v) succeeded", o)
		}
	}
}
