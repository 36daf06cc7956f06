package router

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"weavemesh.dev/weave/fastdp"
	"weavemesh.dev/weave/peer"
)

// Probe frames test the kernel datapath end to end: Ethernet frames of a
// local experimental EtherType, written to a packet socket on the VXLAN
// device and addressed to the peer device's MAC (for which the forwarding
// table has a unicast entry), so they cross both kernels' VXLAN and every
// firewall between them on the fastdp port exactly as container traffic
// does. The peer's packet socket sees them before its bridge, which
// delivers a frame for the port's own address to itself, never to a
// container. Requests and replies are padded to the device's MTU, so a
// path that cannot carry full frames fails the probe too.
//
// Layout after the 14-byte Ethernet header:
//
//	[0:4]   "WVFP"
//	[4]     type: 1 request, 2 reply
//	[5]     reserved (0)
//	[6:12]  sender's peer name
//	[12:18] target's peer name
//	[18:26] the request's send time, unix nanos (echoed by the reply)
//	...     zero padding to the MTU
const (
	probeEtherType = 0x88b5 // IEEE 802 local experimental EtherType 1
	probeMagic     = "WVFP"
	probeRequest   = 1
	probeReply     = 2
	probeHeaderLen = 14 + 26
)

// prober owns the packet socket on the VXLAN device and the goroutine that
// reads it.
type prober struct {
	f    *os.File // the packet socket, through the Go poller
	self peer.Name
	mac  fastdp.MAC
	mtu  int
	log  *slog.Logger

	// peerMAC returns the device MAC of a peer this router probes (a
	// candidate for fastdp); requests from others are not answered, since
	// the table has no entry to send the reply by.
	peerMAC func(peer.Name) (fastdp.MAC, bool)
	// onReply records a reply from a peer; it must not block.
	onReply func(from peer.Name, sent time.Time)

	sendMu  sync.Mutex // guards sendBuf
	sendBuf []byte

	wg sync.WaitGroup
}

// newProber opens the packet socket on the device. Only frames of the probe
// EtherType reach it (a socket filter drops the rest in the kernel, before
// any copy), and none the host sends itself.
func newProber(dev *fastdp.Device, self peer.Name, log *slog.Logger,
	peerMAC func(peer.Name) (fastdp.MAC, bool), onReply func(peer.Name, time.Time)) (*prober, error) {
	// Protocol 0 receives nothing until the bind below, by which time
	// the filter is in place.
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open a packet socket for fastdp probes: %w", err)
	}
	filter := []unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_H | unix.BPF_ABS, K: 12}, // EtherType
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 0, Jf: 1, K: probeEtherType},
		{Code: unix.BPF_RET | unix.BPF_K, K: 0xffff},
		{Code: unix.BPF_RET | unix.BPF_K, K: 0},
	}
	prog := unix.SockFprog{Len: uint16(len(filter)), Filter: unsafe.SliceData(filter)}
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &prog); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("filter the fastdp probe socket: %w", err)
	}
	// Without this every frame the device sends would be cloned for the
	// socket before the filter drops it.
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("fastdp probe socket: PACKET_IGNORE_OUTGOING (kernel 4.20 or later needed): %w", err)
	}
	all := htons(unix.ETH_P_ALL)
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: all, Ifindex: dev.Index()}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("bind the fastdp probe socket to %s: %w", dev.Name(), err)
	}
	p := &prober{
		f: os.NewFile(uintptr(fd), "fastdp-probe"), self: self, mac: dev.MAC(), mtu: dev.MTU(), log: log,
		peerMAC: peerMAC, onReply: onReply, sendBuf: make([]byte, 14+dev.MTU()),
	}
	p.wg.Add(1)
	go func() { defer p.wg.Done(); p.readLoop() }()
	return p, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// close stops the reader and waits for it. Idempotent.
func (p *prober) close() {
	p.f.Close()
	p.wg.Wait()
}

// request sends one probe request to a peer's device.
func (p *prober) request(to peer.Name, mac fastdp.MAC, now time.Time) error {
	p.sendMu.Lock()
	defer p.sendMu.Unlock()
	p.put(p.sendBuf, probeRequest, mac, to, now.UnixNano())
	_, err := p.f.Write(p.sendBuf)
	return err
}

// put writes a probe frame into b, which is 14+MTU bytes.
func (p *prober) put(b []byte, typ byte, dstMAC fastdp.MAC, to peer.Name, sent int64) {
	clear(b)
	copy(b[0:6], dstMAC[:])
	copy(b[6:12], p.mac[:])
	binary.BigEndian.PutUint16(b[12:14], probeEtherType)
	h := b[14:]
	copy(h[0:4], probeMagic)
	h[4] = typ
	putName(h[6:12], p.self)
	putName(h[12:18], to)
	binary.BigEndian.PutUint64(h[18:26], uint64(sent))
}

func putName(b []byte, n peer.Name) {
	v := uint64(n)
	for i := 5; i >= 0; i-- {
		b[i] = byte(v)
		v >>= 8
	}
}

func getName(b []byte) peer.Name {
	var v uint64
	for _, c := range b[:6] {
		v = v<<8 | uint64(c)
	}
	return peer.Name(v)
}

// readLoop answers requests and records replies until the socket closes.
// Its buffers are its own, allocated once.
func (p *prober) readLoop() {
	buf := make([]byte, 14+p.mtu+64)
	reply := make([]byte, 14+p.mtu)
	for {
		n, err := p.f.Read(buf)
		if err != nil {
			if errors.Is(err, os.ErrClosed) {
				return
			}
			p.log.Warn("reading fastdp probes failed; probing stops", "err", err)
			return
		}
		if n < probeHeaderLen {
			continue
		}
		h := buf[14:n]
		if string(h[0:4]) != probeMagic || getName(h[12:18]) != p.self {
			continue
		}
		from := getName(h[6:12])
		mac, ok := p.peerMAC(from)
		if !ok || fastdp.MAC(buf[6:12]) != mac {
			continue // not a peer we probe, or not its device
		}
		sent := int64(binary.BigEndian.Uint64(h[18:26]))
		switch h[4] {
		case probeRequest:
			p.put(reply, probeReply, mac, from, sent)
			if _, err := p.f.Write(reply); err != nil && !errors.Is(err, os.ErrClosed) {
				p.log.Debug("answer a fastdp probe", "peer", from, "err", err)
			}
		case probeReply:
			p.onReply(from, time.Unix(0, sent))
		}
	}
}
