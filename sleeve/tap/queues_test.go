package tap

import (
	"net"
	"sync"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/vishvananda/netlink"
)

// TestQueues opens a two-queue TAP and sends UDP flows into it from a
// namespace: every frame of one flow is read from one queue, the flows
// use both queues, and writing to the second queue reaches the namespace.
func TestQueues(t *testing.T) {
	name, home := enterNewNS(t)
	d, err := Open(Options{Name: "wvt1", MTU: testMTU, Offload: true, Queues: 2})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	qs := d.Queues()
	if len(qs) != 2 {
		t.Fatalf("%d queues, want 2", len(qs))
	}
	peer := attachPeer(t, home, name+"b", "wvbr1", "wvt1", "wvv1", "10.99.0.1/24")
	far := &net.UDPAddr{IP: net.IPv4(10, 99, 0, 99).To4(), Port: 7777}
	const flows, per = 16, 8
	var socks []*net.UDPConn
	inNS(t, peer, home, func() {
		eth := mustLink(t, "eth0")
		if err := netlink.NeighAdd(&netlink.Neigh{LinkIndex: eth.Attrs().Index, State: netlink.NUD_PERMANENT,
			IP: far.IP, HardwareAddr: net.HardwareAddr{2, 0, 0, 0, 0, 0x99}}); err != nil {
			t.Fatalf("add neighbour: %v", err)
		}
		for range flows {
			s, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(10, 99, 0, 1)})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			socks = append(socks, s)
		}
	})

	type seen struct{ queue, dport, sport int }
	udp := make(chan seen, 4*flows*per)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	t.Cleanup(func() { close(stop); wg.Wait() })
	for qi, q := range qs {
		ch := startReader(t, q)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case f := <-ch:
					p := gopacket.NewPacket(f.eth, layers.LayerTypeEthernet, gopacket.Default)
					if u, ok := p.Layer(layers.LayerTypeUDP).(*layers.UDP); ok {
						select {
						case udp <- seen{qi, int(u.DstPort), int(u.SrcPort)}:
						default: // the test stopped listening
						}
					}
				case <-stop:
					return
				}
			}
		}()
	}
	// The path through the bridge is ready once a datagram makes it.
	warm := time.Now().Add(5 * time.Second)
	for ready := false; !ready; {
		if time.Now().After(warm) {
			t.Fatal("no datagram from the namespace reached the TAP within 5s")
		}
		if _, err := socks[0].WriteToUDP([]byte("warm"), &net.UDPAddr{IP: far.IP, Port: 7000}); err != nil {
			t.Fatal(err)
		}
		select {
		case s := <-udp:
			ready = s.dport == 7000
		case <-time.After(50 * time.Millisecond):
		}
	}
	for k := range per {
		for _, s := range socks {
			if _, err := s.WriteToUDP([]byte{byte(k)}, far); err != nil {
				t.Fatal(err)
			}
		}
	}
	var got []seen
	timeout := time.After(5 * time.Second)
	for len(got) < flows*per {
		select {
		case s := <-udp:
			if s.dport == 7777 {
				got = append(got, s)
			}
		case <-timeout:
			t.Fatalf("read %d frames, want %d", len(got), flows*per)
		}
	}
	queueOf := map[int]int{}
	used := map[int]bool{}
	for _, s := range got {
		if q, ok := queueOf[s.sport]; ok && q != s.queue {
			t.Fatalf("flow from port %d read from queues %d and %d", s.sport, q, s.queue)
		}
		queueOf[s.sport] = s.queue
		used[s.queue] = true
	}
	if len(used) != 2 {
		t.Fatalf("%d flows all on queue %v; want both queues used", flows, used)
	}

	// The second queue writes too.
	mac := net.HardwareAddr{2, 0, 0, 0, 0, 0x99}
	req := serialize(t,
		&layers.Ethernet{SrcMAC: mac, DstMAC: layers.EthernetBroadcast, EthernetType: layers.EthernetTypeARP},
		&layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
			Operation: layers.ARPRequest, SourceHwAddress: mac, SourceProtAddress: far.IP,
			DstHwAddress: make(net.HardwareAddr, 6), DstProtAddress: net.IPv4(10, 99, 0, 1).To4()})
	if n, err := qs[1].Write([][]byte{req}, 0); n != 1 || err != nil {
		t.Fatalf("Write on queue 1: %d, %v", n, err)
	}
}
