package fastdp

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"weavemesh.dev/weave/internal/netnstest"
)

// vhost is one simulated host of the traffic tests: a namespace with an
// underlay veth, the bridge "weave", this package's device on it, and a
// container namespace on the bridge.
type vhost struct {
	ns, nsPath string // the host
	ctr        string // the container's namespace name
	underlay   netip.Addr
	overlay    string // the container's address
	ctrMAC     MAC
	dev        *Device
}

// ipns runs ip -n ns ARGS.
func ipns(t *testing.T, ns string, args ...string) {
	t.Helper()
	run(t, "ip", append([]string{"-n", ns}, args...)...)
}

// nsExec runs a command inside the named namespace.
func nsExec(ns string, args ...string) (string, error) {
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...).CombinedOutput()
	return string(out), err
}

func quiet(t *testing.T, ns string) {
	t.Helper()
	// No IPv6 chatter (router solicitations, MLD): the tests count frames.
	if out, err := nsExec(ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"); err != nil {
		t.Fatalf("disable IPv6 in %s: %v\n%s", ns, err, out)
	}
}

// twoHosts builds two hosts joined by a veth underlay (192.168.77.0/24),
// each with a bridge, a Device made with o (Local set per host) and one
// container (10.77.0.1 and .2). Cleanup deletes the namespaces, and with
// them everything in them.
//
// Neighbours (underlay and overlay) are permanent entries: the kernel's
// ARP table is one for all namespaces, other tests on a shared machine can
// fill it ("neighbor table overflow"), and permanent entries do not count
// against its limit. So the tests prove broadcast crossing with broadcast
// pings and counters rather than with ARP.
func twoHosts(t *testing.T, o Options) [2]*vhost {
	t.Helper()
	netnstest.NeedRoot(t)
	needTool(t, "ip")
	needTool(t, "ping")
	base := netnstest.Name(nsPrefix)
	var hs [2]*vhost
	for i := range hs {
		n := strconv.Itoa(i + 1)
		h := &vhost{ns: base + "-h" + n, ctr: base + "-c" + n,
			underlay: netip.MustParseAddr("192.168.77." + n), overlay: "10.77.0." + n}
		h.nsPath = netnstest.Add(t, h.ns)
		netnstest.Add(t, h.ctr)
		quiet(t, h.ns)
		quiet(t, h.ctr)
		hs[i] = h
	}
	ipns(t, hs[0].ns, "link", "add", "u1", "type", "veth", "peer", "name", "u2", "netns", hs[1].ns)
	for i, h := range hs {
		u := "u" + strconv.Itoa(i+1)
		ipns(t, h.ns, "addr", "add", h.underlay.String()+"/24", "dev", u)
		ipns(t, h.ns, "link", "set", u, "up")
		ipns(t, h.ns, "link", "set", "lo", "up")
		ipns(t, h.ns, "link", "add", "weave", "mtu", "1376", "type", "bridge")
		ipns(t, h.ns, "link", "set", "weave", "up")
		ipns(t, h.ns, "link", "add", "vc", "mtu", "1376", "type", "veth", "peer", "name", "ethwe", "netns", h.ctr)
		ipns(t, h.ns, "link", "set", "vc", "master", "weave", "up")
		ipns(t, h.ctr, "addr", "add", h.overlay+"/24", "dev", "ethwe")
		ipns(t, h.ctr, "link", "set", "ethwe", "mtu", "1376", "up")
		ipns(t, h.ctr, "link", "set", "lo", "up")
		h.ctrMAC = linkMAC(t, netnstest.Dir+"/"+h.ctr, "ethwe")

		ho := o
		ho.Local = h.underlay
		if err := netnstest.Do(h.nsPath, func() (err error) {
			h.dev, err = Ensure(ho)
			return err
		}); err != nil {
			t.Fatalf("Ensure in %s: %v", h.ns, err)
		}
		t.Cleanup(func() { h.dev.Close() })
	}
	for i, h := range hs {
		other := hs[1-i]
		u, ou := "u"+strconv.Itoa(i+1), "u"+strconv.Itoa(2-i)
		ipns(t, h.ns, "neigh", "replace", other.underlay.String(), "lladdr",
			linkMAC(t, other.nsPath, ou).String(), "dev", u, "nud", "permanent")
		ipns(t, h.ctr, "neigh", "replace", other.overlay, "lladdr", other.ctrMAC.String(), "dev", "ethwe", "nud", "permanent")
	}
	return hs
}

func linkMAC(t *testing.T, nsPath, name string) MAC {
	t.Helper()
	var m MAC
	err := netnstest.Do(nsPath, func() error {
		l, err := netlink.LinkByName(name)
		if err != nil {
			return err
		}
		var ok bool
		if m, ok = MACFrom(l.Attrs().HardwareAddr); !ok {
			return fmt.Errorf("%s has no MAC", name)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("MAC of %s: %v", name, err)
	}
	return m
}

// full is what the router would want on h: the other host is a fastdp
// peer, with its container behind it.
func full(other *vhost) Desired {
	return Desired{Flood: []netip.Addr{other.underlay}, Unicast: map[MAC]netip.Addr{other.ctrMAC: other.underlay}}
}

func eventuallyPing(t *testing.T, ns, dst string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var out string
	var err error
	for time.Now().Before(deadline) {
		if out, err = nsExec(ns, "ping", "-n", "-c1", "-W1", dst); err == nil {
			return
		}
	}
	t.Fatalf("ping %s from %s: %v\n%s", dst, ns, err, out)
}

func counters(t *testing.T, d *Device) Counters {
	t.Helper()
	c, err := d.Counters()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// pingOnce sends one echo request and reports whether a reply came.
func pingOnce(ns, dst string) bool {
	_, err := nsExec(ns, "ping", "-n", "-c1", "-W1", dst)
	return err == nil
}

// broadcast sends n broadcast pings on the overlay subnet from ns. Nobody
// answers (broadcast echo is ignored); receivers count them.
func broadcast(t *testing.T, ns string, n int) {
	t.Helper()
	out, err := nsExec(ns, "ping", "-n", "-b", "-c", strconv.Itoa(n), "-i0.2", "-W1", "10.77.0.255")
	if err != nil && !strings.Contains(out, strconv.Itoa(n)+" packets transmitted") {
		t.Fatalf("broadcast ping from %s: %v\n%s", ns, err, out)
	}
}

func reconcileAll(t *testing.T, hs [2]*vhost, want func(other *vhost) Desired) {
	t.Helper()
	for i, h := range hs {
		if _, err := h.dev.Reconcile(want(hs[1-i])); err != nil {
			t.Fatal(err)
		}
	}
}

func TestTrafficBetweenTwoHosts(t *testing.T) {
	hs := twoHosts(t, testOptions())
	h1, h2 := hs[0], hs[1]

	// An empty table sends nothing anywhere.
	if pingOnce(h1.ctr, h2.overlay) {
		t.Fatal("ping crossed with an empty forwarding table")
	}

	// Unicast entries carry unicast, in both directions, through the
	// devices (their counters rise)...
	reconcileAll(t, hs, func(o *vhost) Desired { return Desired{Unicast: full(o).Unicast} })
	before := [2]Counters{counters(t, h1.dev), counters(t, h2.dev)}
	eventuallyPing(t, h1.ctr, h2.overlay)
	if out, err := nsExec(h2.ctr, "ping", "-n", "-c3", "-i0.2", "-W1", "-s", "1300", h1.overlay); err != nil {
		t.Fatalf("ping %s from %s: %v\n%s", h1.overlay, h2.ctr, err, out)
	}
	for i, h := range hs {
		after := counters(t, h.dev)
		if after.TxPackets < before[i].TxPackets+4 || after.RxPackets < before[i].RxPackets+4 {
			t.Errorf("host %d device counters did not rise with the pings: before %+v after %+v", i+1, before[i], after)
		}
	}
	// ...but not broadcast: that needs the flood (all-zero MAC) entries.
	rx := counters(t, h2.dev).RxPackets
	broadcast(t, h1.ctr, 3)
	if got := counters(t, h2.dev).RxPackets; got != rx {
		t.Errorf("%d broadcasts crossed without flood entries", got-rx)
	}

	// With them, each broadcast reaches the peer.
	reconcileAll(t, hs, full)
	rx = counters(t, h2.dev).RxPackets
	broadcast(t, h1.ctr, 3)
	if got := counters(t, h2.dev).RxPackets; got < rx+3 {
		t.Errorf("%d of 3 broadcasts crossed with flood entries", got-rx)
	}

	// Flood entries alone carry unicast too: frames for a MAC without an
	// entry (a container that moved, not yet relearned) are replicated.
	reconcileAll(t, hs, func(o *vhost) Desired { return Desired{Flood: full(o).Flood} })
	eventuallyPing(t, h1.ctr, h2.overlay)
}

// In a mixed mesh the bridge must not forward between the device and the
// sleeve's TAP. With both ports isolated, a broadcast that came in over
// VXLAN reaches the container and not the TAP, while the container's own
// broadcasts still reach both.
func TestIsolationKeepsTunnelFramesOffTheSleevePort(t *testing.T) {
	hs := twoHosts(t, testOptions())
	h1, h2 := hs[0], hs[1]
	for i, h := range hs {
		if _, err := h.dev.Reconcile(full(hs[1-i])); err != nil {
			t.Fatal(err)
		}
	}
	// A stand-in for the sleeve TAP on h2: an isolated bridge port whose
	// other end counts what the bridge forwards to it.
	sleeve := h2.ctr + "s"
	netnstest.Add(t, sleeve)
	quiet(t, sleeve)
	ipns(t, h2.ns, "link", "add", "tapx", "mtu", "1376", "type", "veth", "peer", "name", "tap", "netns", sleeve)
	ipns(t, h2.ns, "link", "set", "tapx", "master", "weave", "up")
	run(t, "bridge", "-n", h2.ns, "link", "set", "dev", "tapx", "isolated", "on")
	ipns(t, sleeve, "link", "set", "tap", "up")
	tap := packetSocket(t, netnstest.Dir+"/"+sleeve, "tap")

	eventuallyPing(t, h1.ctr, h2.overlay) // the bridges learn where the containers are
	vxRx := counters(t, h2.dev).RxPackets
	broadcast(t, h1.ctr, 3)
	if got := counters(t, h2.dev).RxPackets; got < vxRx+3 {
		t.Fatalf("h2's device received %d frames, want the 3 broadcasts at least", got-vxRx)
	}
	if n := tap.countFrom(t, h1.ctrMAC); n != 0 {
		t.Errorf("the isolated sleeve port got %d frames of the remote container from the tunnel; want none", n)
	}
	// Control: the local container's broadcast reaches the sleeve port.
	broadcast(t, h2.ctr, 1)
	if n := tap.countFrom(t, h2.ctrMAC); n == 0 {
		t.Error("the sleeve port stand-in received nothing from the local container; the check above proves nothing")
	}
}

// packetConn is an AF_PACKET socket on one interface, for counting frames.
type packetConn struct{ fd int }

// packetSocket opens a packet socket bound to ifname in the namespace at
// nsPath; cleanup closes it.
func packetSocket(t *testing.T, nsPath, ifname string) *packetConn {
	t.Helper()
	proto := int(htons(unix.ETH_P_ALL))
	var fd int
	err := netnstest.Do(nsPath, func() error {
		l, err := netlink.LinkByName(ifname)
		if err != nil {
			return err
		}
		if fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto); err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: uint16(proto), Ifindex: l.Attrs().Index})
	})
	if err != nil {
		t.Fatalf("packet socket on %s: %v", ifname, err)
	}
	tv := unix.NsecToTimeval((500 * time.Millisecond).Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return &packetConn{fd}
}

// countFrom drains the socket until it is quiet and counts the frames
// whose source address is src.
func (p *packetConn) countFrom(t *testing.T, src MAC) int {
	t.Helper()
	return p.count(t, func(f []byte) bool { return MAC(f[6:12]) == src })
}

// count drains the socket until it is quiet and counts the frames that
// match.
func (p *packetConn) count(t *testing.T, match func(frame []byte) bool) int {
	t.Helper()
	buf := make([]byte, 2048)
	n := 0
	for {
		m, _, err := unix.Recvfrom(p.fd, buf, 0)
		if err == unix.EAGAIN || err == unix.EWOULDBLOCK {
			return n
		}
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			t.Fatalf("recv: %v", err)
		}
		if m >= 14 && match(buf[:m]) {
			n++
		}
	}
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// A router that crashed left its device with stale entries; the next start
// (Ensure, then Reconcile with what it knows now) leaves one device and
// exactly the wanted table, and traffic flows.
func TestCrashLeftoverIsCleaned(t *testing.T) {
	needTool(t, "bridge")
	for _, tc := range []struct {
		name string
		edit func(*Options) // the restarted router's options
	}{
		{"same settings", func(*Options) {}},
		{"other port", func(o *Options) { o.Port = 6790 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hs := twoHosts(t, testOptions())
			h1, h2 := hs[0], hs[1]
			stale := Desired{
				Flood:   []netip.Addr{h2.underlay, netip.MustParseAddr("192.168.77.99")},
				Unicast: map[MAC]netip.Addr{h2.ctrMAC: netip.MustParseAddr("192.168.77.99"), mac(macC): h2.underlay},
			}
			if _, err := h1.dev.Reconcile(stale); err != nil {
				t.Fatal(err)
			}
			idx := h1.dev.Index()
			h1.dev.Close() // crash: no Remove

			o := testOptions()
			tc.edit(&o)
			o.Local = h1.underlay
			var err error
			if err = netnstest.Do(h1.nsPath, func() error { h1.dev, err = Ensure(o); return err }); err != nil {
				t.Fatal(err)
			}
			if _, err := h1.dev.Reconcile(full(h2)); err != nil {
				t.Fatal(err)
			}
			var links []string
			if err := netnstest.Do(h1.nsPath, func() (err error) { links, err = listVXLAN(); return err }); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(links, []string{DefaultName}) {
				t.Errorf("VXLAN links after restart = %v, want exactly %s", links, DefaultName)
			}
			if got, want := fdbShow(t, h1.ns, DefaultName), wantStrings(full(h2)); !slices.Equal(got, want) {
				t.Errorf("table after restart:\n got %q\nwant %q", got, want)
			}
			if adopted := h1.dev.Index() == idx; adopted != (o.Port == 0) {
				t.Errorf("adopted = %v for %s", adopted, tc.name)
			}
			if h2.dev.Port() == h1.dev.Port() {
				if _, err := h2.dev.Reconcile(full(h1)); err != nil {
					t.Fatal(err)
				}
				eventuallyPing(t, h1.ctr, h2.overlay)
			}
		})
	}
}

// probeEtherType is IEEE 802 local experimental EtherType 1, what a router
// could use for its probe frames.
const probeEtherType = 0x88b5

// The path the router's probes can take: a frame written to the device
// from a packet socket, addressed to the peer's Device.MAC (with an entry
// for that MAC), crosses the tunnel, is seen by a packet socket on the
// peer's device, and reaches no container (the bridge delivers a frame for
// a port's own address to itself).
func TestProbeFramesToThePeerDevice(t *testing.T) {
	hs := twoHosts(t, testOptions())
	h1, h2 := hs[0], hs[1]
	for i, h := range hs {
		other := hs[1-i]
		want := full(other)
		want.Unicast[other.dev.MAC()] = other.underlay
		if _, err := h.dev.Reconcile(want); err != nil {
			t.Fatal(err)
		}
	}
	send := packetSocket(t, h1.nsPath, DefaultName)
	recv := packetSocket(t, h2.nsPath, DefaultName)
	ctr := packetSocket(t, netnstest.Dir+"/"+h2.ctr, "ethwe")

	frame := make([]byte, 14+64)
	dst, src := h2.dev.MAC(), h1.dev.MAC()
	copy(frame[0:6], dst[:])
	copy(frame[6:12], src[:])
	frame[12], frame[13] = probeEtherType>>8, probeEtherType&0xff
	copy(frame[14:], "weave fastdp probe")
	for range 3 {
		if err := unix.Send(send.fd, frame, 0); err != nil {
			t.Fatalf("send probe: %v", err)
		}
	}
	// The devices' own multicast (IGMP reports) also crosses: count only
	// the probes.
	probe := func(f []byte) bool {
		return MAC(f[6:12]) == src && int(f[12])<<8|int(f[13]) == probeEtherType
	}
	if n := recv.count(t, probe); n != 3 {
		t.Errorf("the peer's device saw %d probes, want 3", n)
	}
	if n := ctr.count(t, probe); n != 0 {
		t.Errorf("a container saw %d probe frames, want none", n)
	}
}

// After a pair leaves fastdp, ForgetLearned makes the bridge forget where
// the peer's MACs were, so it floods (to the sleeve) instead of sending
// into the tunnel.
func TestForgetLearned(t *testing.T) {
	needTool(t, "bridge")
	hs := twoHosts(t, testOptions())
	h1, h2 := hs[0], hs[1]
	for i, h := range hs {
		if _, err := h.dev.Reconcile(full(hs[1-i])); err != nil {
			t.Fatal(err)
		}
	}
	eventuallyPing(t, h1.ctr, h2.overlay)
	learned := h2.ctrMAC.String() + " master weave"
	show := func() string { return run(t, "bridge", "-n", h1.ns, "fdb", "show", "dev", DefaultName) }
	if out := show(); !strings.Contains(out, learned) {
		t.Fatalf("the bridge did not learn %s behind the tunnel:\n%s", h2.ctrMAC, out)
	}
	if err := h1.dev.ForgetLearned(h2.ctrMAC, mac(macC)); err != nil {
		t.Fatal(err)
	}
	out := show()
	if strings.Contains(out, learned) {
		t.Errorf("still learned after ForgetLearned:\n%s", out)
	}
	if !strings.Contains(out, h2.ctrMAC.String()+" dst "+h2.underlay.String()+" self permanent") ||
		!strings.Contains(out, h1.dev.MAC().String()+" master weave permanent") {
		t.Errorf("ForgetLearned removed more than the learned entry:\n%s", out)
	}
}

// A TCP stream crosses whole, with the kernel's segmentation offloads on
// the way (the containers hand the bridge super-frames; the device cuts
// them to its MTU), with the checksum switch off and on.
func TestTCPOverTheTunnel(t *testing.T) {
	for _, csumOff := range []bool{false, true} {
		t.Run(fmt.Sprintf("TxChecksumOff=%v", csumOff), func(t *testing.T) {
			o := testOptions()
			o.TxChecksumOff = csumOff
			hs := twoHosts(t, o)
			h1, h2 := hs[0], hs[1]
			reconcileAll(t, hs, full)
			for _, h := range hs {
				if on, err := h.dev.TxChecksum(); err != nil || on == csumOff {
					t.Fatalf("TxChecksum = %v, %v", on, err)
				}
			}

			var ln net.Listener
			if err := netnstest.Do(netnstest.Dir+"/"+h2.ctr, func() (err error) {
				ln, err = net.Listen("tcp4", h2.overlay+":7777")
				return err
			}); err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			got := make(chan []byte, 1)
			go func() {
				c, err := ln.Accept()
				if err != nil {
					got <- nil
					return
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(30 * time.Second))
				h := sha256.New()
				io.Copy(h, c)
				got <- h.Sum(nil)
			}()

			var c net.Conn
			if err := netnstest.Do(netnstest.Dir+"/"+h1.ctr, func() (err error) {
				c, err = net.DialTimeout("tcp4", h2.overlay+":7777", 10*time.Second)
				return err
			}); err != nil {
				t.Fatal(err)
			}
			payload := make([]byte, 8<<20)
			rand.Read(payload)
			c.SetDeadline(time.Now().Add(30 * time.Second))
			if _, err := c.Write(payload); err != nil {
				t.Fatalf("write: %v", err)
			}
			c.Close()
			want := sha256.Sum256(payload)
			if sum := <-got; !bytes.Equal(sum, want[:]) {
				t.Fatal("the stream arrived corrupt or incomplete")
			}
			if tx := counters(t, h1.dev).TxBytes; tx < uint64(len(payload)) {
				t.Errorf("h1's device sent %d bytes for an %d-byte stream: it did not cross the tunnel", tx, len(payload))
			}
		})
	}
}
