package sleeve

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"testing"
	"time"

	"weavemesh.dev/weave/mesh/macs"
	"weavemesh.dev/weave/mesh/routes"
	"weavemesh.dev/weave/peer"
	"weavemesh.dev/weave/sleeve/secure"
	"weavemesh.dev/weave/sleeve/sleevetest"
	"weavemesh.dev/weave/sleeve/wire"
)

// testMesh runs engines over a sleevetest.Net and plays the router's part: it
// recomputes every peer's routes from the engines' link state.
type testMesh struct {
	t     *testing.T
	net   *sleevetest.Net
	clock *sleevetest.Clock // every engine's, and every session manager's
	nodes []*testNode
}

type testNode struct {
	name   peer.Name
	addr   netip.AddrPort
	dev    *sleevetest.Device
	conn   *sleevetest.Conn
	e      *Engine
	routes *routes.Table
	macs   *macs.Table
	// q1dev and q1conn are a second queue when the mesh has one: its
	// socket sends from another port of the node's address.
	q1dev  *sleevetest.Device
	q1conn *sleevetest.Conn
}

func newTestMesh(t *testing.T, n int, gro bool) *testMesh {
	return newTestMeshPSK(t, gro, make([]byte, n))
}

// newTestMeshPSK makes one node per psk byte; nodes with a non-zero psk
// seal their traffic with it.
func newTestMeshPSK(t *testing.T, gro bool, psks []byte) *testMesh {
	return newTestMeshQueues(t, gro, psks, false)
}

// newTestMeshQueues is newTestMeshPSK, with a second queue on every node
// when twoQueues.
func newTestMeshQueues(t *testing.T, gro bool, psks []byte, twoQueues bool) *testMesh {
	n := len(psks)
	m := &testMesh{t: t, net: sleevetest.NewNet(), clock: sleevetest.NewClock(time.Unix(1_800_000_000, 0))}
	m.net.SetGRO(gro)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	var infos []PeerInfo
	for i := 1; i <= n; i++ {
		nd := &testNode{name: peer.Name(i), addr: netip.MustParseAddrPort(fmt.Sprintf("192.0.2.%d:6784", i)), dev: sleevetest.NewDevice()}
		nd.conn = m.net.Conn(nd.addr)
		nd.routes = routes.NewTable(nd.name)
		nd.macs = macs.New(0, nil)
		var sec *secure.Manager
		if psks[i-1] != 0 {
			var err error
			if sec, err = secure.NewManager(secure.Config{Self: nd.name, PSK: [32]byte{psks[i-1]}, Now: m.clock.Now}); err != nil {
				t.Fatal(err)
			}
		}
		var queues []Queue
		if twoQueues {
			nd.q1dev = sleevetest.NewDevice()
			nd.q1conn = m.net.Conn(netip.AddrPortFrom(nd.addr.Addr(), nd.addr.Port()+1))
			queues = []Queue{{Device: nd.q1dev, Conn: nd.q1conn}}
		}
		e, err := New(Options{
			Self: nd.name, Device: nd.dev, Conn: nd.conn, Queues: queues, Mesh: tables{nd.macs, nd.routes},
			OverlayMTU: 1376, PathMTU: func(netip.Addr) int { return 1472 }, Secure: sec, Logger: log,
			HeartbeatInterval: meshBeat, Clock: m.clock,
		})
		if err != nil {
			t.Fatal(err)
		}
		nd.e = e
		m.nodes = append(m.nodes, nd)
		infos = append(infos, PeerInfo{Name: nd.name, Addr: nd.addr})
	}
	for _, nd := range m.nodes {
		nd.e.SetPeers(infos)
		nd.e.Start()
	}
	t.Cleanup(func() {
		for _, nd := range m.nodes {
			nd.e.Close()
		}
	})
	return m
}

func (m *testMesh) recompute() {
	down := map[peer.Name][]peer.Name{}
	var names []peer.Name
	for _, nd := range m.nodes {
		down[nd.name] = nd.e.Down()
		names = append(names, nd.name)
	}
	for _, nd := range m.nodes {
		nd.routes.Set(routes.Compute(routes.Graph{Self: nd.name, Peers: names, Down: down}))
	}
}

// The test engines' heartbeat interval (link timeout 4 of them), and the
// health tick that the mesh's clock moves by in each step.
const (
	meshBeat = time.Second
	meshTick = meshBeat / ticksPerBeat
)

// step advances the mesh's clock by one health tick, waits until every
// engine has handled it and the network has carried, and the engines
// handled, every datagram that followed, then recomputes the routes as
// the router does on a link change.
func (m *testMesh) step() {
	m.t.Helper()
	m.clock.Advance(meshTick)
	if !m.net.WaitIdle(10 * time.Second) {
		m.t.Fatal("the network did not go idle after a tick")
	}
	m.recompute()
}

// waitFor steps the mesh until cond holds, failing after a minute of mesh
// time; the routes are current when it returns. Nothing here waits for
// real time to pass: links come up, go down and find their path MTU
// because the clock moved.
func (m *testMesh) waitFor(what string, cond func() bool) {
	m.t.Helper()
	const limit = time.Minute
	for elapsed := time.Duration(0); !cond(); elapsed += meshTick {
		if elapsed >= limit {
			m.t.Fatalf("no %s after %v of mesh time", what, limit)
		}
		m.step()
	}
	m.recompute()
}

func (m *testMesh) linkState(a, b int) LinkState {
	for _, l := range m.nodes[a].e.Links() {
		if l.Peer == m.nodes[b].name {
			return l.State
		}
	}
	return LinkConnecting
}

func (m *testMesh) allUp() bool {
	for i := range m.nodes {
		for j := range m.nodes {
			if i != j && m.linkState(i, j) != LinkUp {
				return false
			}
		}
	}
	return true
}

func mac(i byte) []byte { return []byte{0x02, 0, 0, 0, 0, i} }

var bcast = []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// ethFrame builds a virtio header and an Ethernet frame.
func ethFrame(dst, src []byte, etherType uint16, payload []byte) []byte {
	f := make([]byte, wire.VnetHdrLen, wire.VnetHdrLen+14+len(payload))
	f = append(f, dst...)
	f = append(f, src...)
	f = binary.BigEndian.AppendUint16(f, etherType)
	return append(f, payload...)
}

func hasPayload(p []byte) func([]byte) bool {
	return func(f []byte) bool { return bytes.HasSuffix(f, p) }
}

func TestFloodAndUnicast(t *testing.T) {
	m := newTestMesh(t, 3, false)
	m.waitFor("links up", m.allUp)
	a, b, c := m.nodes[0], m.nodes[1], m.nodes[2]

	a.dev.In <- ethFrame(bcast, mac(1), 0x0806, []byte("who-has"))
	for _, nd := range []*testNode{b, c} {
		f := expectFrame(t, nd.dev, "broadcast", hasPayload([]byte("who-has")))
		if !bytes.Equal(f, ethFrame(bcast, mac(1), 0x0806, []byte("who-has"))) {
			t.Fatalf("frame changed in transit: %x", f)
		}
	}
	noFrame(t, a.dev, "broadcast echoed to its source", 100*time.Millisecond, hasPayload([]byte("who-has")))
	noFrame(t, b.dev, "duplicate broadcast", 100*time.Millisecond, hasPayload([]byte("who-has")))

	// B answers A: A's MAC was learned, so only A gets it.
	b.dev.In <- ethFrame(mac(1), mac(2), 0x0806, []byte("is-at"))
	expectFrame(t, a.dev, "unicast reply", hasPayload([]byte("is-at")))
	noFrame(t, c.dev, "unicast leaked to a third peer", 200*time.Millisecond, hasPayload([]byte("is-at")))
	if owner, ok := a.macs.Lookup(macs.AddrFrom(mac(2)), m.clock.Now().Unix()); !ok || owner != b.name {
		t.Fatalf("A learned mac 2 -> %v %v", owner, ok)
	}

	// Each link counts the Ethernet bytes it carried: B sent the 19-byte
	// reply to A only, and A received it from B.
	reply := uint64(len(ethFrame(mac(1), mac(2), 0x0806, []byte("is-at"))) - wire.VnetHdrLen)
	link := func(n *testNode, to peer.Name) Link {
		for _, l := range n.e.Links() {
			if l.Peer == to {
				return l
			}
		}
		t.Fatalf("%s has no link to %s", n.name, to)
		return Link{}
	}
	if l := link(b, a.name); l.TxFrames != 1 || l.TxBytes != reply {
		t.Errorf("B->A link sent %d frames, %d bytes; want 1, %d", l.TxFrames, l.TxBytes, reply)
	}
	if l := link(b, c.name); l.TxBytes != 0 {
		t.Errorf("B->C link sent %d bytes; want 0", l.TxBytes)
	}
	if l := link(a, b.name); l.RxFrames != 1 || l.RxBytes != reply {
		t.Errorf("A's link from B received %d frames, %d bytes; want 1, %d", l.RxFrames, l.RxBytes, reply)
	}
}

// tcpSuperFrame builds a TCP/IPv4 super-frame the way the TAP hands one
// over: virtio header with GSO TCPv4 and NEEDS_CSUM, the checksum field
// holding the pseudo-header sum.
func tcpSuperFrame(dst, src []byte, payload []byte, mss int) []byte {
	ip := make([]byte, 40, 40+len(payload))
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(40+len(payload)))
	binary.BigEndian.PutUint16(ip[4:], 0x1000)
	ip[6], ip[8], ip[9] = 0x40, 64, 6
	copy(ip[12:], []byte{10, 32, 0, 1, 10, 32, 0, 2})
	ipChecksum(ip)
	tcp := ip[20:]
	binary.BigEndian.PutUint16(tcp[0:], 40000)
	binary.BigEndian.PutUint16(tcp[2:], 5201)
	binary.BigEndian.PutUint32(tcp[4:], 0xfffff000)
	binary.BigEndian.PutUint32(tcp[8:], 1)
	tcp[12], tcp[13] = 5<<4, 0x18 // ACK PSH
	binary.BigEndian.PutUint16(tcp[14:], 512)
	var sum uint32 = 6 + uint32(20+len(payload))
	for i := 12; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(ip[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(tcp[16:], uint16(sum))
	f := ethFrame(dst, src, 0x0800, append(ip, payload...))
	f[0], f[1] = 1, 1                        // NEEDS_CSUM, GSO TCPv4
	binary.LittleEndian.PutUint16(f[2:], 54) // header length
	binary.LittleEndian.PutUint16(f[4:], uint16(mss))
	binary.LittleEndian.PutUint16(f[6:], 34) // checksum start
	binary.LittleEndian.PutUint16(f[8:], 16) // checksum offset
	return f
}

// tcpPayloads collects frames from d until their TCP payloads, put in
// sequence order, add up to n bytes, and returns the payload and the frames.
func tcpPayloads(t *testing.T, d *sleevetest.Device, n int) ([]byte, [][]byte) {
	t.Helper()
	bySeq := map[uint32][]byte{}
	var frames [][]byte
	got := 0
	for got < n {
		f := expectFrame(t, d, "TCP frames", func(f []byte) bool { return len(f) > 64 && f[wire.VnetHdrLen+14+9] == 6 })
		frames = append(frames, f)
		tcp := f[wire.VnetHdrLen+14+20:]
		p := tcp[int(tcp[12]>>4)*4:]
		bySeq[binary.BigEndian.Uint32(tcp[4:])] = p
		got += len(p)
	}
	var out []byte
	for seq := uint32(0xfffff000); len(out) < n; {
		p, ok := bySeq[seq]
		if !ok {
			t.Fatalf("no segment at seq %#x after %d bytes", seq, len(out))
		}
		out = append(out, p...)
		seq += uint32(len(p))
	}
	return out, frames
}

// A TCP super-frame from the offload path crosses as one datagram per
// segment. With GRO the receiver gets the whole train in one batch and
// writes back exactly the super-frame it was; without, the segments
// arrive in several batches, and their payloads still add up.
func TestSuperFrame(t *testing.T) {
	for _, gro := range []bool{false, true} {
		t.Run(fmt.Sprintf("gro=%v", gro), func(t *testing.T) {
			m := newTestMesh(t, 2, gro)
			m.waitFor("links up", m.allUp)
			a, b := m.nodes[0], m.nodes[1]
			b.dev.In <- ethFrame(mac(1), mac(2), 0x0800, []byte("hello"))
			expectFrame(t, a.dev, "learning frame", hasPayload([]byte("hello")))

			payload := make([]byte, 60000)
			for i := range payload {
				payload[i] = byte(i * 7)
			}
			f := tcpSuperFrame(mac(2), mac(1), payload, 1324)
			wireB := m.net.Capture(b.addr)
			a.dev.In <- f
			got, frames := tcpPayloads(t, b.dev, len(payload))
			if !bytes.Equal(got, payload) {
				t.Fatal("payload differs")
			}
			if gro && (len(frames) != 1 || !bytes.Equal(frames[0], f)) {
				t.Fatalf("with GRO: %d frames written; want the super-frame as sent", len(frames))
			}
			if a.e.Stats().CutOut == 0 {
				t.Fatal("frame was not cut")
			}
			if st := b.e.Stats(); gro && (st.Coalesced != 1 || st.Merged != 45) {
				t.Fatalf("receiver merged %d segments into %d super-frames; want 45 into 1", st.Merged, st.Coalesced)
			}
			// One datagram per segment, each within the path MTU.
			n := 0
			for len(wireB) > 0 {
				if d := <-wireB; len(d) > 1472 {
					t.Fatalf("%d-byte datagram", len(d))
				} else if d[1] == wire.TypeFrames && len(d) > 400 {
					n++
				}
			}
			if want := (len(payload) + 1323) / 1324; n != want {
				t.Fatalf("%d segment datagrams on the wire, want %d", n, want)
			}
		})
	}
}

func TestRelayWhenCut(t *testing.T) {
	m := newTestMesh(t, 3, false)
	m.waitFor("links up", m.allUp)
	a, b, c := m.nodes[0], m.nodes[1], m.nodes[2]
	// Learn MACs everywhere.
	for i, nd := range m.nodes {
		nd.dev.In <- ethFrame(bcast, mac(byte(i+1)), 0x0806, []byte{byte(i)})
	}
	for _, nd := range m.nodes {
		for i := 0; i < 2; i++ {
			expectFrame(t, nd.dev, "learning broadcast", func([]byte) bool { return true })
		}
	}
	m.net.SetCut(b.addr, c.addr, true)
	m.waitFor("B-C down", func() bool { return m.linkState(1, 2) == LinkDown && m.linkState(2, 1) == LinkDown })
	m.waitFor("A-B, A-C still up", func() bool {
		return m.linkState(0, 1) == LinkUp && m.linkState(0, 2) == LinkUp
	})
	b.dev.In <- ethFrame(mac(3), mac(2), 0x0800, []byte("via-a"))
	expectFrame(t, c.dev, "relayed frame", hasPayload([]byte("via-a")))
	if a.e.Stats().Relayed == 0 {
		t.Fatal("A relayed nothing")
	}
	// Broadcast from B still reaches C exactly once (tree through A).
	b.dev.In <- ethFrame(bcast, mac(2), 0x0806, []byte("bcast-cut"))
	expectFrame(t, c.dev, "broadcast through relay", hasPayload([]byte("bcast-cut")))
	noFrame(t, c.dev, "duplicate broadcast", 150*time.Millisecond, hasPayload([]byte("bcast-cut")))

	m.net.SetCut(b.addr, c.addr, false)
	// Both ends must see the link up: a route avoids a link either end
	// still lists as down.
	m.waitFor("B-C back up", func() bool { return m.linkState(1, 2) == LinkUp && m.linkState(2, 1) == LinkUp })
	before := a.e.Stats().Relayed
	b.dev.In <- ethFrame(mac(3), mac(2), 0x0800, []byte("direct"))
	expectFrame(t, c.dev, "direct frame", hasPayload([]byte("direct")))
	if after := a.e.Stats().Relayed; after != before {
		t.Fatalf("still relaying after heal: %d -> %d", before, after)
	}
}

func TestPathMTUDiscovery(t *testing.T) {
	m := newTestMesh(t, 2, false)
	m.net.SetMTU(m.nodes[0].addr, m.nodes[1].addr, 1200)
	m.waitFor("links up", m.allUp)
	m.waitFor("path MTU found", func() bool {
		l := m.nodes[0].e.Links()[0]
		return l.PMTU <= 1200 && l.PMTU > 1200-pmtuSlack-1
	})
	a, b := m.nodes[0], m.nodes[1]
	b.dev.In <- ethFrame(mac(1), mac(2), 0x0800, []byte("learn"))
	expectFrame(t, a.dev, "learning frame", hasPayload([]byte("learn")))
	// An IPv4 packet without DF, too big for the path, is cut into IP
	// fragments.
	ip := make([]byte, 1300)
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], 1300)
	ip[8], ip[9] = 64, 17
	copy(ip[12:], []byte{10, 32, 0, 1, 10, 32, 0, 2})
	copy(ip[1290:], "no-df-big!")
	ipChecksum(ip)
	a.dev.In <- ethFrame(mac(2), mac(1), 0x0800, ip)
	last := expectFrame(t, b.dev, "last fragment", hasPayload([]byte("no-df-big!")))
	if ff := binary.BigEndian.Uint16(last[wire.VnetHdrLen+14+6:]); ff&0x2000 != 0 || ff&0x1fff == 0 {
		t.Fatalf("last fragment has flags/offset %#04x", ff)
	}

	// With DF set the same packet is answered like a router would.
	ip[6] = 0x40
	copy(ip[1290:], "df-too-big")
	ipChecksum(ip)
	a.dev.In <- ethFrame(mac(2), mac(1), 0x0800, ip)
	icmp := expectFrame(t, a.dev, "ICMP fragmentation needed", func(f []byte) bool {
		return len(f) > wire.VnetHdrLen+14+28 && f[wire.VnetHdrLen+14+9] == 1
	})
	eth := icmp[wire.VnetHdrLen:]
	l3 := eth[14:]
	icmpHdr := l3[int(l3[0]&0xf)*4:]
	mtu := int(binary.BigEndian.Uint16(icmpHdr[6:]))
	if icmpHdr[0] != 3 || icmpHdr[1] != 4 || mtu != m.nodes[0].e.Links()[0].OverlayMTU || mtu >= 1300 {
		t.Fatalf("ICMP type %d code %d mtu %d, link overlay MTU %d", icmpHdr[0], icmpHdr[1], mtu, m.nodes[0].e.Links()[0].OverlayMTU)
	}
	if !bytes.Equal(eth[0:6], mac(1)) || !bytes.Equal(eth[6:12], mac(2)) {
		t.Fatalf("ICMP MACs %x -> %x", eth[6:12], eth[0:6])
	}
	noFrame(t, b.dev, "DF frame delivered despite the path MTU", 100*time.Millisecond, hasPayload([]byte("df-too-big")))
	if a.e.Stats().ICMPSent != 1 || a.e.Drops()["too_big"] != 1 {
		t.Fatalf("stats %+v", a.e.Stats())
	}

	// A TCP super-frame without DF whose segments do not fit the path is
	// cut into smaller segments instead.
	payload := bytes.Repeat([]byte("small-segments-"), 400)
	f := tcpSuperFrame(mac(2), mac(1), payload, 1324)
	ip4 := f[wire.VnetHdrLen+14:]
	ip4[6] = 0
	ipChecksum(ip4[:20])
	a.dev.In <- f
	if got, _ := tcpPayloads(t, b.dev, len(payload)); !bytes.Equal(got, payload) {
		t.Fatal("payload of the re-segmented super-frame differs")
	}
}

func ipChecksum(ip []byte) {
	ip[10], ip[11] = 0, 0
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(ip[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(ip[10:], ^uint16(sum))
}

// Membership refreshes must not reset link state or sessions.
func TestSetPeersKeepsState(t *testing.T) {
	m := newTestMeshPSK(t, false, []byte{5, 5})
	m.waitFor("links up", m.allUp)
	a, b := m.nodes[0], m.nodes[1]
	sess := a.e.o.Secure.Current(b.name)
	for i := 0; i < 3; i++ {
		a.e.SetPeers([]PeerInfo{{Name: a.name, Addr: a.addr}, {Name: b.name, Addr: b.addr}})
	}
	if m.linkState(0, 1) != LinkUp || a.e.o.Secure.Current(b.name) != sess {
		t.Fatal("SetPeers reset the link")
	}
	a.e.SetPeers([]PeerInfo{{Name: a.name, Addr: a.addr}})
	if a.e.o.Secure.Current(b.name) != nil || len(a.e.Links()) != 0 {
		t.Fatal("a peer that left kept its link or session")
	}
}

func TestGarbageIsCountedNotFatal(t *testing.T) {
	m := newTestMesh(t, 2, false)
	m.waitFor("links up", m.allUp)
	a := m.nodes[0]
	src := m.nodes[1].addr
	valid := make([]byte, wire.HeaderLen)
	wire.PutHeader(valid, &wire.Header{Version: wire.Version, Type: wire.TypeFrames, TTL: 2, Src: 99, Dst: a.name})
	inputs := [][]byte{
		{1, 2, 3},
		bytes.Repeat([]byte{0xff}, 100),
		valid, // unknown peer 99
	}
	for _, in := range inputs {
		m.net.Deliver(a.addr, packet(in, src))
	}
	m.waitFor("drops counted", func() bool {
		d := a.e.Drops()
		return d["truncated"] >= 1 && d["bad_version"] >= 1
	})
	if !m.allUp() {
		t.Fatal("garbage broke a link")
	}
}

// A cut link stays up until LinkTimeout has passed without a heartbeat,
// and goes down then: the state machine runs on the engine's clock, so
// the test can count the ticks.
func TestLinkDownAfterTimeout(t *testing.T) {
	m := newTestMesh(t, 2, false)
	m.waitFor("links up", m.allUp)
	// The last heartbeat was heard at most a beat ago, so the link holds
	// for LinkTimeout (4 beats) less one beat, and is down one beat later.
	m.net.SetCut(m.nodes[0].addr, m.nodes[1].addr, true)
	for elapsed := time.Duration(0); elapsed < 3*meshBeat; elapsed += meshTick {
		m.step()
		if m.linkState(0, 1) != LinkUp || m.linkState(1, 0) != LinkUp {
			t.Fatalf("link down %v after the cut, before the timeout", elapsed+meshTick)
		}
	}
	for elapsed := time.Duration(0); m.linkState(0, 1) != LinkDown || m.linkState(1, 0) != LinkDown; elapsed += meshTick {
		if elapsed > meshBeat {
			t.Fatalf("link still up %v after the timeout", 3*meshBeat+elapsed)
		}
		m.step()
	}
}
