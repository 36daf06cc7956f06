package netdev

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Announce sends, from the container's interface, one gratuitous ARP per
// IPv4 address it is given (none for IPv6), carrying the interface's MAC;
// the bridge's port sees them. The addresses are ones the kernel never
// announces itself, so the frames can only come from Announce.
func TestAnnounce(t *testing.T) {
	e := newEnv(t)
	b := mustBridge(t, 1400)
	c := e.container("c")
	ep := mustAttach(t, b, AttachOptions{Netns: c, CIDRs: []netip.Prefix{pfx("10.99.4.1/24")}})

	// ETH_P_ALL: a bridge port hands frames of one protocol to the bridge,
	// only taps of every protocol see them.
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: hostLink(t, ep.HostIface).Attrs().Index}); err != nil {
		t.Fatal(err)
	}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 1}); err != nil {
		t.Fatal(err)
	}

	want := []netip.Addr{netip.MustParseAddr("10.99.4.77"), netip.MustParseAddr("10.99.4.78")}
	if err := Announce(c, ep.Iface, append([]netip.Addr{netip.MustParseAddr("fd00::1")}, want...)); err != nil {
		t.Fatal(err)
	}
	seen := map[netip.Addr]bool{}
	buf := make([]byte, 1500)
	deadline := time.Now().Add(5 * time.Second)
	for len(seen) < len(want) && time.Now().Before(deadline) {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			continue // timeout: look again until the deadline
		}
		f := buf[:n]
		if n < 42 || f[12] != 0x08 || f[13] != 0x06 || f[21] != 1 || !bytes.Equal(f[22:28], ep.MAC) || !bytes.Equal(f[28:32], f[38:42]) {
			continue
		}
		seen[netip.AddrFrom4([4]byte(f[28:32]))] = true
	}
	for _, a := range want {
		if !seen[a] {
			t.Errorf("no gratuitous ARP for %s from %s seen on %s (saw %v)", a, ep.MAC, ep.HostIface, seen)
		}
	}
	if err := Announce(c, "nosuch0", want); err == nil {
		t.Error("Announce on a missing interface succeeded")
	}
}
