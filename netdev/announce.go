package netdev

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"runtime"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Announce sends one gratuitous ARP for each IPv4 address in addrs from
// the interface ifName inside the namespace at path, as the kernel does
// (arp_notify) when the interface comes up. A router that re-adopts an
// endpoint after a restart calls it: an announcement made at attach can be
// lost with the router that was to carry it, and a neighbour that still
// maps the address to the MAC of an earlier holder (addresses are reused
// after detach) would otherwise send into the void until its cache entry
// expires.
func Announce(path, ifName string, addrs []netip.Addr) error {
	ns, _, err := openNetns(path)
	if err != nil {
		return err
	}
	defer ns.Close()
	h, err := newHandle(ns)
	if err != nil {
		return fmt.Errorf("network namespace %s: open netlink socket: %w", path, err)
	}
	link, err := h.LinkByName(ifName)
	h.Close()
	if err != nil {
		return fmt.Errorf("announce in %s: interface %s: %w", path, ifName, err)
	}
	mac := link.Attrs().HardwareAddr
	if len(mac) != 6 {
		return fmt.Errorf("announce in %s: %s has no Ethernet address", path, ifName)
	}
	fd, err := packetSocketAt(ns)
	if err != nil {
		return fmt.Errorf("announce in %s: %w", path, err)
	}
	defer unix.Close(fd)
	to := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ARP), Ifindex: link.Attrs().Index, Halen: 6,
		Addr: [8]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}}
	var errs []error
	for _, a := range addrs {
		if !a.Is4() {
			continue
		}
		if err := unix.Sendto(fd, gratuitousARP(mac, a), 0, to); err != nil {
			errs = append(errs, fmt.Errorf("announce %s on %s in %s: %w", a, ifName, path, err))
		}
	}
	return errors.Join(errs...)
}

// gratuitousARP builds the Ethernet frame of an ARP request for ip from
// ip: every neighbour that holds an entry for ip updates it to mac.
func gratuitousARP(mac []byte, ip netip.Addr) []byte {
	f := make([]byte, 42)
	copy(f[0:6], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	copy(f[6:12], mac)
	binary.BigEndian.PutUint16(f[12:], unix.ETH_P_ARP)
	binary.BigEndian.PutUint16(f[14:], 1)             // Ethernet
	binary.BigEndian.PutUint16(f[16:], unix.ETH_P_IP) // IPv4
	f[18], f[19] = 6, 4
	binary.BigEndian.PutUint16(f[20:], 1) // request
	a := ip.As4()
	copy(f[22:28], mac)
	copy(f[28:32], a[:])
	copy(f[38:42], a[:]) // target: the same address; target MAC stays zero
	return f
}

// packetSocketAt opens a raw packet socket for ARP inside ns. Sockets stay
// in the namespace they were made in, so only the creation happens on a
// thread moved there.
func packetSocketAt(ns netns.NsHandle) (int, error) {
	type res struct {
		fd  int
		err error
	}
	c := make(chan res, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			c <- res{-1, err}
			return
		}
		defer orig.Close()
		if err := netns.Set(ns); err != nil {
			c <- res{-1, fmt.Errorf("enter namespace: %w", err)}
			return
		}
		fd, serr := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0) // protocol 0: it only sends
		if err := netns.Set(orig); err != nil {
			if serr == nil {
				unix.Close(fd)
			}
			// The thread stays locked and ends with this goroutine.
			c <- res{-1, fmt.Errorf("return from namespace: %w", err)}
			return
		}
		runtime.UnlockOSThread()
		if serr != nil {
			serr = fmt.Errorf("packet socket: %w", serr)
		}
		c <- res{fd, serr}
	}()
	r := <-c
	return r.fd, r.err
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
