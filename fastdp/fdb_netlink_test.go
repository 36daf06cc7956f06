package fastdp

import (
	"net"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func TestOwnEntry(t *testing.T) {
	const idx = 7
	hw := mac(macA).HardwareAddr()
	for _, tc := range []struct {
		name string
		n    netlink.Neigh
		ok   bool
	}{
		{"our entry", netlink.Neigh{LinkIndex: idx, Family: unix.AF_BRIDGE, Flags: netlink.NTF_SELF, State: netlink.NUD_PERMANENT, IP: net.IPv4(10, 0, 0, 2), HardwareAddr: hw}, true},
		{"flood entry", netlink.Neigh{LinkIndex: idx, Family: unix.AF_BRIDGE, Flags: netlink.NTF_SELF, State: netlink.NUD_PERMANENT, IP: net.IPv4(10, 0, 0, 2).To4(), HardwareAddr: make(net.HardwareAddr, 6)}, true},
		{"bridge's permanent local entry", netlink.Neigh{LinkIndex: idx, Family: unix.AF_BRIDGE, Flags: netlink.NTF_MASTER, State: netlink.NUD_PERMANENT, MasterIndex: 3, HardwareAddr: hw}, false},
		{"bridge-learned entry", netlink.Neigh{LinkIndex: idx, Family: unix.AF_BRIDGE, Flags: netlink.NTF_MASTER, MasterIndex: 3, HardwareAddr: hw}, false},
		{"self address entry without destination", netlink.Neigh{LinkIndex: idx, Family: unix.AF_BRIDGE, Flags: netlink.NTF_SELF, State: netlink.NUD_PERMANENT, HardwareAddr: hw}, false},
		{"another device", netlink.Neigh{LinkIndex: idx + 1, Family: unix.AF_BRIDGE, Flags: netlink.NTF_SELF, IP: net.IPv4(10, 0, 0, 2), HardwareAddr: hw}, false},
		{"an ARP neighbour", netlink.Neigh{LinkIndex: idx, Family: unix.AF_INET, IP: net.IPv4(10, 0, 0, 2), HardwareAddr: hw}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, ok := ownEntry(tc.n, idx)
			if ok != tc.ok {
				t.Fatalf("ownEntry = %v, %v; want ok %v", e, ok, tc.ok)
			}
			if ok && (!e.Dst.Is4() || e.MAC != [6]byte(tc.n.HardwareAddr)) {
				t.Errorf("entry = %v", e)
			}
		})
	}
}
