package router

import (
	"encoding/binary"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"weavemesh.dev/weave/fastdp"
	"weavemesh.dev/weave/gossip"
	"weavemesh.dev/weave/peer"
	"weavemesh.dev/weave/sleeve"
)

func TestFastdpConfig(t *testing.T) {
	tests := []struct {
		name    string
		c       Config
		want    Config
		errText string
	}{
		{name: "defaults", c: Config{Port: 6783, DataPort: 6784},
			want: Config{Port: 6783, DataPort: 6784, Datapath: DatapathAuto, FastdpPort: 6786}},
		{name: "sleeve", c: Config{Port: 6783, DataPort: 6784, Datapath: "sleeve", FastdpPort: 7000},
			want: Config{Port: 6783, DataPort: 6784, Datapath: DatapathSleeve, FastdpPort: 7000}},
		{name: "bad mode", c: Config{Port: 6783, DataPort: 6784, Datapath: "vxlan"}, errText: `--datapath "vxlan"`},
		{name: "data port", c: Config{Port: 6783, DataPort: 6784, FastdpPort: 6784}, errText: "--fastdp-port 6784: must differ"},
		{name: "gossip port", c: Config{Port: 6783, DataPort: 6784, FastdpPort: 6783}, errText: "--fastdp-port 6783: must differ"},
		{name: "range", c: Config{Port: 6783, DataPort: 6784, FastdpPort: 70000}, errText: "--fastdp-port 70000: must be 1-65535"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.c
			err := c.fastdpDefaults()
			if tc.errText != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errText) {
					t.Fatalf("err %v, want %q", err, tc.errText)
				}
				return
			}
			if err != nil || c.Datapath != tc.want.Datapath || c.FastdpPort != tc.want.FastdpPort {
				t.Errorf("got %q %d %v, want %q %d", c.Datapath, c.FastdpPort, err, tc.want.Datapath, tc.want.FastdpPort)
			}
		})
	}
}

func TestPairUnfit(t *testing.T) {
	const port, vni, mtu = 6786, 5561878, 1376
	fd := gossip.Fastdp{MAC: [6]byte{2, 0, 0, 0, 0, 1}, Port: port, VNI: vni}
	v4 := netip.MustParseAddr("192.0.2.2")
	up := sleeve.Link{State: sleeve.LinkUp, PMTU: 1472}
	tests := []struct {
		name      string
		f         gossip.Fastdp
		addr      netip.Addr
		l         sleeve.Link
		hasLink   bool
		encrypted bool
		want      string
	}{
		{"fit", fd, v4, up, true, false, ""},
		{"no fastdp", gossip.Fastdp{}, v4, up, true, false, "offers no fastdp"},
		{"other port", gossip.Fastdp{MAC: fd.MAC, Port: 4789, VNI: vni}, v4, up, true, false, "udp 4789 VNI 5561878, this one udp 6786"},
		{"other VNI", gossip.Fastdp{MAC: fd.MAC, Port: port, VNI: 7}, v4, up, true, false, "--mesh-name"},
		{"IPv6", fd, netip.MustParseAddr("fd00::2"), up, true, false, "not IPv4"},
		{"no link yet", fd, v4, sleeve.Link{}, false, false, "not up yet"},
		{"relayed", fd, v4, sleeve.Link{State: sleeve.LinkDown, PMTU: 1472}, true, false, "relayed pairs stay on the sleeve"},
		{"encrypted", fd, v4, up, true, true, "--trusted-subnets"},
		{"small path", fd, v4, sleeve.Link{State: sleeve.LinkUp, PMTU: 1397}, true, false, "path MTU 1425 is less than the overlay MTU 1376 + 50"},
		{"path just fits", fd, v4, sleeve.Link{State: sleeve.LinkUp, PMTU: 1398}, true, false, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := pairUnfit(gossip.Member{Fastdp: tc.f}, tc.addr, tc.l, tc.hasLink, tc.encrypted, mtu, port, vni)
			if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestProbeFrame(t *testing.T) {
	p := &prober{self: peer.Name(0x0a0b0c0d0e0f), mac: fastdp.MAC{2, 1, 1, 1, 1, 1}, mtu: 1376}
	b := make([]byte, 14+p.mtu)
	dst := fastdp.MAC{2, 2, 2, 2, 2, 2}
	p.put(b, probeRequest, dst, peer.Name(0x112233445566), 1234567890123)
	if fastdp.MAC(b[0:6]) != dst || fastdp.MAC(b[6:12]) != p.mac || b[12] != 0x88 || b[13] != 0xb5 {
		t.Fatalf("Ethernet header %x", b[:14])
	}
	h := b[14:]
	if string(h[0:4]) != probeMagic || h[4] != probeRequest || getName(h[6:12]) != p.self || getName(h[12:18]) != peer.Name(0x112233445566) {
		t.Fatalf("probe header %x", h[:26])
	}
	if got := binary.BigEndian.Uint64(h[18:26]); got != 1234567890123 {
		t.Fatalf("send time %d", got)
	}
	for _, c := range h[26:] {
		if c != 0 {
			t.Fatal("padding not zero")
		}
	}
}

func TestDesiredEqual(t *testing.T) {
	a := fastdp.Desired{Flood: []netip.Addr{netip.MustParseAddr("192.0.2.1")},
		Unicast: map[fastdp.MAC]netip.Addr{{2, 0, 0, 0, 0, 1}: netip.MustParseAddr("192.0.2.1")}}
	b := fastdp.Desired{Flood: slices.Clone(a.Flood), Unicast: maps.Clone(a.Unicast)}
	if !desiredEqual(a, b) {
		t.Error("equal wants differ")
	}
	b.Unicast[fastdp.MAC{2, 0, 0, 0, 0, 2}] = netip.MustParseAddr("192.0.2.1")
	if desiredEqual(a, b) {
		t.Error("a new unicast entry is no change")
	}
	if desiredEqual(a, fastdp.Desired{}) {
		t.Error("an empty want equals a full one")
	}
}
