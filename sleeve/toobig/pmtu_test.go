package toobig

import (
	"encoding/json"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"golang.org/x/sys/unix"

	"weavemesh.dev/weave/internal/netnstest"
)

func sh(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

type ipLink struct {
	Ifindex int    `json:"ifindex"`
	Address string `json:"address"`
}

func linkInfo(t *testing.T, ns, dev string) (int, net.HardwareAddr) {
	t.Helper()
	var ls []ipLink
	if err := json.Unmarshal([]byte(sh(t, "ip", "-n", ns, "-j", "link", "show", dev)), &ls); err != nil || len(ls) != 1 {
		t.Fatalf("parse ip -j link show %s: %v", dev, err)
	}
	mac, err := net.ParseMAC(ls[0].Address)
	if err != nil {
		t.Fatal(err)
	}
	return ls[0].Ifindex, mac
}

// packetSocket opens an AF_PACKET socket inside the namespace at path;
// the socket keeps sending there.
func packetSocket(t *testing.T, path string) int {
	t.Helper()
	fd := -1
	err := netnstest.Do(path, func() error {
		var err error
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		return err
	})
	if err != nil {
		t.Fatalf("packet socket in %s: %v", path, err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

// TestPMTUEndToEnd hands answers to a real kernel: namespace A "sent" an
// over-size echo reply to B, the answer is written into B's end of the veth
// as the sleeve would write it into the bridge, and A's routing must show
// the lowered path MTU.
func TestPMTUEndToEnd(t *testing.T) {
	netnstest.NeedRoot(t)
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2's ip")
	}
	// Named wvtb-PID-N-a and -b: a crashed run's leftovers are swept by
	// their dead PID.
	base := netnstest.Name("wvtb")
	nsA, nsB := base+"-a", base+"-b"
	paths := map[string]string{}
	for _, ns := range []string{nsA, nsB} {
		paths[ns] = netnstest.Add(t, ns)
		sh(t, "ip", "-n", ns, "link", "set", "lo", "up")
	}
	sh(t, "ip", "-n", nsA, "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", nsB)
	sh(t, "ip", "-n", nsA, "addr", "add", "192.168.77.1/24", "dev", "va")
	sh(t, "ip", "-n", nsA, "addr", "add", "fd77::1/64", "dev", "va", "nodad")
	sh(t, "ip", "-n", nsB, "addr", "add", "192.168.77.2/24", "dev", "vb")
	sh(t, "ip", "-n", nsB, "addr", "add", "fd77::2/64", "dev", "vb", "nodad")
	sh(t, "ip", "-n", nsA, "link", "set", "va", "up")
	sh(t, "ip", "-n", nsB, "link", "set", "vb", "up")
	_, macA := linkInfo(t, nsA, "va")
	vbIndex, macB := linkInfo(t, nsB, "vb")
	fd := packetSocket(t, paths[nsB])

	for _, tc := range []struct {
		name    string
		frame   []byte
		mtu     int
		routeTo string
	}{
		// Echo replies: the kernel applies an ICMP error quoting one to the
		// route without needing a socket to deliver it to.
		{"IPv4", echoReply4(t, macA, macB), 1200, "192.168.77.2"},
		{"IPv6", echoReply6(t, macA, macB), 1300, "fd77::2"},
	} {
		if !Needed(tc.frame) {
			t.Fatalf("%s: Needed = false", tc.name)
		}
		want := "mtu " + strconv.Itoa(tc.mtu)
		if out := sh(t, "ip", "-n", nsA, "route", "get", tc.routeTo); strings.Contains(out, want) {
			t.Fatalf("%s: route shows %q before any answer:\n%s", tc.name, want, out)
		}
		reply := make([]byte, MaxReplyLen)
		n, ok := Reply(reply, tc.frame, tc.mtu)
		if !ok {
			t.Fatalf("%s: no answer", tc.name)
		}
		to := &unix.SockaddrLinklayer{Ifindex: vbIndex, Halen: 6}
		copy(to.Addr[:], macA)
		if err := unix.Sendto(fd, reply[:n], 0, to); err != nil {
			t.Fatalf("%s: write answer: %v", tc.name, err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			out := sh(t, "ip", "-n", nsA, "route", "get", tc.routeTo)
			if strings.Contains(out, want) {
				t.Logf("%s: %s", tc.name, strings.TrimSpace(out))
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: route to %s never showed %q:\n%s", tc.name, tc.routeTo, want, out)
			}
		}
	}
}

func echoReply4(t *testing.T, src, dst net.HardwareAddr) []byte {
	return serializeFrame(t,
		&layers.Ethernet{SrcMAC: src, DstMAC: dst, EthernetType: layers.EthernetTypeIPv4},
		&layers.IPv4{Version: 4, TTL: 64, Flags: layers.IPv4DontFragment, Protocol: layers.IPProtocolICMPv4,
			SrcIP: net.IP{192, 168, 77, 1}, DstIP: net.IP{192, 168, 77, 2}},
		&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoReply, 0), Id: 7, Seq: 1},
		gopacket.Payload(make([]byte, 1400-28)),
	)
}

func echoReply6(t *testing.T, src, dst net.HardwareAddr) []byte {
	ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolICMPv6,
		SrcIP: net.ParseIP("fd77::1"), DstIP: net.ParseIP("fd77::2")}
	icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeEchoReply, 0)}
	if err := icmp.SetNetworkLayerForChecksum(ip); err != nil {
		t.Fatal(err)
	}
	return serializeFrame(t,
		&layers.Ethernet{SrcMAC: src, DstMAC: dst, EthernetType: layers.EthernetTypeIPv6},
		ip, icmp, gopacket.Payload(make([]byte, 1400-44)),
	)
}

func serializeFrame(t *testing.T, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
