package fastdp

import (
	"errors"
	"fmt"
	"net"
	"runtime"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Capability is the answer to "could this kernel do X": Available, or not
// with the Reason (the kernel's error, with what was tried).
type Capability struct {
	Available bool
	Reason    string
}

// String is "available" or "not available: REASON", for `weave status`.
func (c Capability) String() string {
	if c.Available {
		return "available"
	}
	return "not available: " + c.Reason
}

// Capabilities are the kernel features the kernel datapath depends on.
type Capabilities struct {
	// VXLAN: a VXLAN device can be created and brought up (its UDP socket
	// opened).
	VXLAN Capability
	// ESP: an IPsec ESP state with AEAD rfc4106(gcm(aes)) can be created,
	// what an encrypted kernel datapath would need. Reported only; this
	// package has no ESP datapath.
	ESP Capability
}

// Probe tries each capability in a throwaway network namespace of its own
// (unnamed, so nothing is left behind even if the process dies meanwhile)
// and reports what worked. It changes nothing in the caller's namespace
// and needs CAP_SYS_ADMIN and CAP_NET_ADMIN; without them every capability
// reports the namespace could not be made.
func Probe() Capabilities {
	var c Capabilities
	err := inScratchNetns(func() {
		c.VXLAN = probeVXLAN()
		c.ESP = probeESP()
	})
	if err != nil {
		r := "create a scratch network namespace: " + err.Error()
		c = Capabilities{VXLAN: Capability{Reason: r}, ESP: Capability{Reason: r}}
	}
	return c
}

// inScratchNetns runs fn on an OS thread moved into a new, unnamed network
// namespace; the namespace goes when fn returns. The calling goroutine
// stays where it is.
func inScratchNetns(fn func()) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return // the thread stays locked and ends with this goroutine
		}
		defer orig.Close()
		scratch, err := netns.New() // unshare: moves this thread
		if err != nil {
			if cur, gerr := netns.Get(); gerr == nil && cur.Equal(orig) {
				cur.Close()
				runtime.UnlockOSThread()
			}
			errc <- err
			return
		}
		fn()
		scratch.Close()
		if err := netns.Set(orig); err != nil {
			errc <- fmt.Errorf("return from the scratch namespace: %w", err)
			return // the thread stays locked and ends with this goroutine
		}
		runtime.UnlockOSThread()
		errc <- nil
	}()
	return <-errc
}

func probeVXLAN() Capability {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return Capability{Reason: "open netlink socket: " + err.Error()}
	}
	defer h.Close()
	la := netlink.NewLinkAttrs()
	la.Name = "probe-vxlan"
	v := &netlink.Vxlan{LinkAttrs: la, VxlanId: 1, Port: DefaultPort}
	if err := h.LinkAdd(v); err != nil {
		return Capability{Reason: "create a VXLAN device: " + explain(err)}
	}
	defer h.LinkDel(v)
	if err := h.LinkSetUp(v); err != nil {
		return Capability{Reason: "bring a VXLAN device up: " + explain(err)}
	}
	return Capability{Available: true}
}

func probeESP() Capability {
	h, err := netlink.NewHandle(unix.NETLINK_XFRM)
	if err != nil {
		return Capability{Reason: "open xfrm netlink socket: " + explain(err)}
	}
	defer h.Close()
	key := make([]byte, 20) // AES-128 key and 4-byte salt; never used
	st := &netlink.XfrmState{
		Src:   net.IPv4(192, 0, 2, 1),
		Dst:   net.IPv4(192, 0, 2, 2),
		Proto: netlink.XFRM_PROTO_ESP,
		Mode:  netlink.XFRM_MODE_TRANSPORT,
		Spi:   0x100,
		Aead:  &netlink.XfrmStateAlgo{Name: "rfc4106(gcm(aes))", Key: key, ICVLen: 128},
	}
	if err := h.XfrmStateAdd(st); err != nil {
		return Capability{Reason: "create an xfrm ESP state with AEAD rfc4106(gcm(aes)): " + explain(err)}
	}
	_ = h.XfrmStateDel(st)
	return Capability{Available: true}
}

// explain adds what an errno usually means here.
func explain(err error) string {
	switch {
	case errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, unix.EPROTONOSUPPORT):
		return err.Error() + " (not built into this kernel and no module loaded)"
	case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ENOSYS):
		return err.Error() + " (the kernel lacks the algorithm or the feature)"
	case errors.Is(err, unix.EPERM):
		return err.Error() + " (needs CAP_NET_ADMIN)"
	}
	return err.Error()
}
