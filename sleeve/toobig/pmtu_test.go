package toobig

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// The end-to-end test runs in namespaces named nsPrefix-<pid>-<role>; a
// crashed run's leftovers are recognised by their dead PID and swept.
const nsPrefix = "wvtb"

func TestMain(m *testing.M) {
	if os.Geteuid() == 0 {
		sweepLeftovers()
	}
	os.Exit(m.Run())
}

func sweepLeftovers() {
	ents, err := os.ReadDir("/var/run/netns")
	if err != nil {
		return
	}
	for _, e := range ents {
		parts := strings.SplitN(e.Name(), "-", 3)
		if len(parts) < 3 || parts[0] != nsPrefix {
			continue
		}
		pid, err := strconv.Atoi(parts[1])
		if err != nil || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); err == nil || errors.Is(err, syscall.EPERM) {
			continue // still running
		}
		_ = netns.DeleteNamed(e.Name())
	}
}

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

// packetSocket opens an AF_PACKET socket inside the named namespace; the
// socket keeps sending there after the thread returns home.
func packetSocket(t *testing.T, ns string) int {
	t.Helper()
	type result struct {
		fd  int
		err error
	}
	ch := make(chan result)
	go func() {
		// A thread of its own, discarded (never unlocked) if it cannot
		// return to its original namespace.
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			ch <- result{-1, err}
			return
		}
		defer orig.Close()
		target, err := netns.GetFromName(ns)
		if err != nil {
			ch <- result{-1, err}
			return
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			ch <- result{-1, err}
			return
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
		ch <- result{fd, err}
	}()
	r := <-ch
	if r.err != nil {
		t.Fatalf("packet socket in %s: %v", ns, r.err)
	}
	t.Cleanup(func() { unix.Close(r.fd) })
	return r.fd
}

// TestPMTUEndToEnd hands answers to a real kernel: namespace A "sent" an
// over-size echo reply to B, the answer is written into B's end of the veth
// as the sleeve would write it into the bridge, and A's routing must show
// the lowered path MTU.
func TestPMTUEndToEnd(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces and a veth pair")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2's ip")
	}
	base := fmt.Sprintf("%s-%d", nsPrefix, os.Getpid())
	nsA, nsB := base+"-a", base+"-b"
	for _, ns := range []string{nsA, nsB} {
		_ = netns.DeleteNamed(ns)
		sh(t, "ip", "netns", "add", ns)
		t.Cleanup(func() { _ = netns.DeleteNamed(ns) })
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
	fd := packetSocket(t, nsB)

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
