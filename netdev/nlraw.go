package netdev

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Requests the netlink library has no call for are built here and sent on
// sockets this package owns.

// netlinkTimeout bounds every netlink exchange so a wedged kernel path
// surfaces as an error instead of a hung router.
const netlinkTimeout = 10 * time.Second

// ipv4DevconfArpNotify is IPV4_DEVCONF_ARP_NOTIFY from linux/ip.h.
const ipv4DevconfArpNotify = 22

// in6AddrGenModeNone is IN6_ADDR_GEN_MODE_NONE from linux/if_link.h.
const in6AddrGenModeNone = 1

// newRawSocket opens a NETLINK_ROUTE socket inside ns (netns.None() for the
// calling thread's namespace) with strict checking on, which the kernel
// requires before it honours per-interface filters and target-namespace
// attributes in dump requests.
func newRawSocket(ns netns.NsHandle) (*nl.SocketHandle, error) {
	s, err := nl.GetNetlinkSocketAt(ns, netns.None(), unix.NETLINK_ROUTE)
	if err != nil {
		return nil, err
	}
	tv := unix.NsecToTimeval(netlinkTimeout.Nanoseconds())
	if err := s.SetSendTimeout(&tv); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.SetReceiveTimeout(&tv); err != nil {
		s.Close()
		return nil, err
	}
	if err := unix.SetsockoptInt(s.GetFd(), unix.SOL_NETLINK, unix.NETLINK_GET_STRICT_CHK, 1); err != nil {
		s.Close()
		return nil, fmt.Errorf("enable netlink strict checking: %w", err)
	}
	return &nl.SocketHandle{Socket: s}, nil
}

func newHandle(ns netns.NsHandle) (*netlink.Handle, error) {
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, err
	}
	if err := h.SetSocketTimeout(netlinkTimeout); err != nil {
		h.Close()
		return nil, err
	}
	return h, nil
}

func rawRequest(sh *nl.SocketHandle, proto, flags int) *nl.NetlinkRequest {
	req := nl.NewNetlinkRequest(proto, flags)
	req.Sockets = map[int]*nl.SocketHandle{unix.NETLINK_ROUTE: sh}
	return req
}

// setBridgeParams turns STP and multicast snooping off on the bridge with
// the given index (see the package documentation for why).
func setBridgeParams(sh *nl.SocketHandle, index int) error {
	req := rawRequest(sh, unix.RTM_NEWLINK, unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(index)
	req.AddData(msg)
	info := nl.NewRtAttr(unix.IFLA_LINKINFO, nil)
	info.AddRtAttr(nl.IFLA_INFO_KIND, nl.NonZeroTerminated("bridge"))
	data := info.AddRtAttr(nl.IFLA_INFO_DATA, nil)
	data.AddRtAttr(unix.IFLA_BR_STP_STATE, nl.Uint32Attr(0))
	data.AddRtAttr(unix.IFLA_BR_MCAST_SNOOPING, nl.Uint8Attr(0))
	req.AddData(info)
	_, err := req.Execute(unix.NETLINK_ROUTE, 0)
	return err
}

// setInetConf sets one IPv4 per-interface setting (an IPV4_DEVCONF_* value,
// the netlink twin of net.ipv4.conf.<if>.*) without switching namespaces.
func setInetConf(sh *nl.SocketHandle, index, key int, val uint32) error {
	req := rawRequest(sh, unix.RTM_SETLINK, unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(index)
	req.AddData(msg)
	spec := nl.NewRtAttr(unix.IFLA_AF_SPEC, nil)
	inet := spec.AddRtAttr(unix.AF_INET, nil)
	conf := inet.AddRtAttr(unix.IFLA_INET_CONF, nil)
	conf.AddRtAttr(key, nl.Uint32Attr(val))
	req.AddData(spec)
	_, err := req.Execute(unix.NETLINK_ROUTE, 0)
	return err
}

// peerLink reads the link with the given index in the namespace the socket's
// namespace knows as nsid.
func peerLink(sh *nl.SocketHandle, nsid, index int) (netlink.Link, error) {
	req := rawRequest(sh, unix.RTM_GETLINK, unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(index)
	req.AddData(msg)
	req.AddData(nl.NewRtAttr(unix.IFLA_TARGET_NETNSID, nl.Uint32Attr(uint32(nsid))))
	msgs, err := req.Execute(unix.NETLINK_ROUTE, unix.RTM_NEWLINK)
	if err != nil {
		return nil, err
	}
	if len(msgs) != 1 {
		return nil, fmt.Errorf("expected one link, kernel sent %d", len(msgs))
	}
	return netlink.LinkDeserialize(nil, msgs[0])
}

// peerAddrs lists the addresses of the link with the given index in the
// namespace the socket's namespace knows as nsid, IPv6 link-local excluded.
func peerAddrs(sh *nl.SocketHandle, nsid, index int) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, family := range []int{unix.AF_INET, unix.AF_INET6} {
		req := rawRequest(sh, unix.RTM_GETADDR, unix.NLM_F_DUMP)
		msg := nl.NewIfAddrmsg(family)
		msg.Index = uint32(index)
		req.AddData(msg)
		req.AddData(nl.NewRtAttr(unix.IFA_TARGET_NETNSID, nl.Uint32Attr(uint32(nsid))))
		msgs, err := req.Execute(unix.NETLINK_ROUTE, unix.RTM_NEWADDR)
		if errors.Is(err, unix.EAFNOSUPPORT) {
			continue // IPv6 disabled in this kernel
		}
		if err != nil {
			return nil, err
		}
		for _, m := range msgs {
			if len(m) < unix.SizeofIfAddrmsg {
				continue
			}
			am := nl.DeserializeIfAddrmsg(m)
			if int(am.Index) != index {
				continue
			}
			attrs, err := nl.ParseRouteAttr(m[unix.SizeofIfAddrmsg:])
			if err != nil {
				return nil, err
			}
			var ip net.IP
			for _, a := range attrs {
				switch a.Attr.Type {
				case unix.IFA_LOCAL:
					ip = net.IP(a.Value)
				case unix.IFA_ADDRESS:
					if ip == nil {
						ip = net.IP(a.Value)
					}
				}
			}
			if p, ok := prefixOf(ip, int(am.Prefixlen)); ok && !p.Addr().IsLinkLocalUnicast() {
				out = append(out, p)
			}
		}
	}
	return out, nil
}

func prefixOf(ip net.IP, bits int) (netip.Prefix, bool) {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return netip.Prefix{}, false
	}
	a = a.Unmap()
	if bits < 0 || bits > a.BitLen() {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(a, bits), true
}

func addrToPrefix(a netlink.Addr) (netip.Prefix, bool) {
	if a.IPNet == nil {
		return netip.Prefix{}, false
	}
	ones, _ := a.Mask.Size()
	return prefixOf(a.IP, ones)
}

func prefixToAddr(p netip.Prefix) *netlink.Addr {
	a := p.Addr()
	addr := &netlink.Addr{IPNet: &net.IPNet{
		IP:   net.IP(a.AsSlice()),
		Mask: net.CIDRMask(p.Bits(), a.BitLen()),
	}}
	if a.Is6() {
		// Uniqueness is the allocator's job; DAD would only delay use.
		addr.Flags = unix.IFA_F_NODAD
	}
	return addr
}

func isNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf) || errors.Is(err, unix.ENODEV)
}

func isExist(err error) bool { return errors.Is(err, syscall.EEXIST) }

// retryDump repeats a netlink dump the kernel reports as interrupted by a
// concurrent change, so callers see a consistent list.
func retryDump[T any](f func() (T, error)) (T, error) {
	var (
		v   T
		err error
	)
	for range 5 {
		v, err = f()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return v, err
		}
	}
	return v, err
}
