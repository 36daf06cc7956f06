package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"weavemesh.dev/weave/test/harness"
)

// TestMeshPingAll: three hosts, full mesh, two containers each; every
// container reaches every other.
func TestMeshPingAll(t *testing.T) {
	m := startMesh(t, harness.Options{Hosts: 3}, 2)
	for _, h := range m.cl.Hosts {
		st, err := h.Status()
		if err != nil {
			t.Fatal(err)
		}
		if !st.Ready || st.Peers != 3 || st.Connections["established"] != 2 {
			t.Errorf("%s status: ready %v, %d peers, connections %v; want ready, 3 peers, 2 established",
				h.Name, st.Ready, st.Peers, st.Connections)
		}
	}
	pingAll(t, m.all(), pingTimeout)
}

// TestTCPTransferIntegrity: 20 MB from a container on host1 to one on host2
// arrive intact.
func TestTCPTransferIntegrity(t *testing.T) {
	m := startMesh(t, harness.Options{Hosts: 2}, 1)
	src, dst := m.ctrs[0][0], m.ctrs[1][0]
	ctx := ctxFor(t, 2*time.Minute)
	if err := ping(ctx, src, dst.IP()); err != nil {
		t.Fatal(err)
	}
	res, err := harness.Transfer(ctx, src.NS, dst.NS, dst.IP(), 5001, 20<<20)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("20 MB in %s (%.0f Mbit/s), sha256 %s", res.Duration.Round(time.Millisecond), res.ThroughputMb, res.RecvSHA256)
}

// TestBroadcastOncePerPeer: one ARP request and one UDP broadcast sent by a
// container on host1 arrive exactly once at every other container, on every
// host: no loops, no duplicates, no losses.
func TestBroadcastOncePerPeer(t *testing.T) {
	m := startMesh(t, harness.Options{Hosts: 3}, 2)
	tool, err := harness.BuildTool()
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxFor(t, 90*time.Second)
	sender := m.ctrs[0][0]
	// ARP caches filled by this ping are irrelevant: the ARP request below
	// asks for an address nobody has.
	pingAll(t, m.all(), pingTimeout)

	const (
		arpTarget = "10.32.250.250"
		arpMarker = "hex:0a20fafa" // the target address inside the ARP request
		udpMarker = "weave-bcast-marker"
		sentinel  = "weave-bcast-sentinel"
	)
	type counter struct {
		c *harness.Container
		p *harness.Proc
	}
	var counters []counter
	for _, c := range m.all() {
		if c == sender {
			continue
		}
		p, err := c.Start(filepath.Join(m.cl.Dir, c.Name+"-count.log"), tool, "count", "-iface", "ethwe",
			"-marker", arpMarker, "-marker", udpMarker, "-until", sentinel, "-timeout", "60s")
		if err != nil {
			t.Fatal(err)
		}
		if err := p.WaitLog(ctx, "ready"); err != nil {
			t.Fatal(err)
		}
		counters = append(counters, counter{c, p})
	}
	for _, argv := range [][]string{
		{tool, "arp", "-iface", "ethwe", "-target", arpTarget},
		{tool, "bcast", "-to", "10.47.255.255:9999", "-msg", udpMarker},
		// The sentinel goes the same way after the markers: once it has
		// arrived, so has every copy of them that the paths carry.
		{tool, "bcast", "-to", "10.47.255.255:9999", "-msg", sentinel},
	} {
		if out, err := sender.Exec(ctx, argv...); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
	}
	for _, k := range counters {
		if err := k.p.Wait(ctx); err != nil {
			t.Errorf("%s on %s: %v\n%s", k.c.Name, k.c.Host.Name, err, k.p.Log())
			continue
		}
		var res struct {
			Counts map[string]int `json:"counts"`
		}
		if err := k.p.LastJSON(&res); err != nil {
			t.Error(err)
			continue
		}
		if res.Counts[arpMarker] != 1 || res.Counts[udpMarker] != 1 {
			t.Errorf("%s on %s received ARP broadcast %d times, UDP broadcast %d times; want once each",
				k.c.Name, k.c.Host.Name, res.Counts[arpMarker], res.Counts[udpMarker])
		}
	}
}

// pingPattern returns ping's -p argument and the bytes it puts on the wire.
func pingPattern(i int) (string, []byte) {
	p := fmt.Sprintf("c0ffe%03x", i&0xfff)
	b := []byte{0xc0, 0xff, 0xe0 | byte(i>>8&0xf), byte(i)}
	return p, append(b, b...)
}

// relayedPackets pings dst from src with a recognisable payload and counts
// the underlay packets on via's eth0 that carry it.
func relayedPackets(ctx context.Context, via *harness.Host, src *harness.Container, dst string, seq int) (int, error) {
	capt, err := via.Capture(ctx, "eth0", "udp")
	if err != nil {
		return 0, err
	}
	pat, marker := pingPattern(seq)
	_, perr := src.Ping(ctx, dst, "-c", "3", "-i", "0.2", "-p", pat)
	ps, err := capt.Stop()
	if err != nil {
		return 0, err
	}
	if perr != nil {
		return ps.Containing(marker), fmt.Errorf("ping during capture: %w", perr)
	}
	return ps.Containing(marker), nil
}
