// Command wvtool makes and measures test traffic inside the harness's
// namespaces, so tests do not depend on netcat or arping flavours:
//
//	wvtool sink  -listen :5001 [-timeout 60s]         accept one TCP stream, print {"bytes","sha256","seconds"}
//	wvtool send  -to IP:PORT -bytes N [-timeout 60s]   send N random bytes, print the same
//	wvtool bcast -to IP:PORT -msg TEXT [-count 1]      send UDP datagrams with SO_BROADCAST
//	wvtool arp   -iface ethwe -target IP [-count 1]    send raw ARP requests (broadcast)
//	wvtool count -iface ethwe -marker M... -until U    count received frames holding each marker until one holds U
//	wvtool udp   -to IP:PORT -hex BYTES [-count 1]     send one datagram with exactly these bytes (replay tests)
//	wvtool flood -to IP:PORT -for 5s [-size 1400] [-payloads FILE] [-mutate]
//	                                                   send UDP as fast as the socket takes it: random bytes,
//	                                                   or the hex datagrams of FILE (one a line), optionally damaged
//	wvtool icmp  -to IP -payload-file F [-count 5]     ping with exactly these payload bytes, print {"sent","received"}
//
// send also takes -marker-file F: the stream is F's bytes over and over
// instead of random bytes, so a capture can look for them.
//
// Markers are text, or hex bytes written "hex:0a20fafa".
package main

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: wvtool sink|send|bcast|arp|count|udp|flood|icmp [flags]")
		os.Exit(2)
	}
	cmds := map[string]func([]string) error{
		"sink": sink, "send": send, "bcast": bcast, "arp": arp, "count": count, "udp": udpRaw,
		"flood": flood, "icmp": icmpEcho,
	}
	f, ok := cmds[os.Args[1]]
	if !ok {
		fmt.Fprintf(os.Stderr, "wvtool: unknown command %q\n", os.Args[1])
		os.Exit(2)
	}
	if err := f(os.Args[2:]); err != nil {
		fmt.Fprintf(os.Stderr, "wvtool %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

type result struct {
	Bytes   int64   `json:"bytes"`
	SHA256  string  `json:"sha256"`
	Seconds float64 `json:"seconds"`
}

func printJSON(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Printf("%s\n", b)
	return err
}

func sink(args []string) error {
	fs := flag.NewFlagSet("sink", flag.ExitOnError)
	listen := fs.String("listen", ":5001", "TCP address to listen on")
	timeout := fs.Duration("timeout", 60*time.Second, "give up after this long")
	_ = fs.Parse(args)
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	defer ln.Close()
	deadline := time.Now().Add(*timeout)
	_ = ln.(*net.TCPListener).SetDeadline(deadline)
	fmt.Fprintln(os.Stderr, "ready")
	c, err := ln.Accept()
	if err != nil {
		return fmt.Errorf("accept: %w", err)
	}
	defer c.Close()
	_ = c.SetDeadline(deadline)
	start := time.Now()
	h := sha256.New()
	n, err := io.Copy(h, c)
	if err != nil {
		return fmt.Errorf("after %d bytes: %w", n, err)
	}
	return printJSON(result{n, hex.EncodeToString(h.Sum(nil)), time.Since(start).Seconds()})
}

func send(args []string) error {
	fs := flag.NewFlagSet("send", flag.ExitOnError)
	to := fs.String("to", "", "IP:PORT of the sink")
	size := fs.Int64("bytes", 1<<20, "bytes to send")
	timeout := fs.Duration("timeout", 60*time.Second, "give up after this long (connecting is retried until then)")
	markerFile := fs.String("marker-file", "", "send this file's bytes repeated instead of random bytes")
	_ = fs.Parse(args)
	var marker []byte
	if *markerFile != "" {
		var err error
		if marker, err = os.ReadFile(*markerFile); err != nil || len(marker) == 0 {
			return fmt.Errorf("-marker-file: want a file with some bytes: %v", err)
		}
	}
	deadline := time.Now().Add(*timeout)
	var c net.Conn
	var err error
	for {
		c, err = net.DialTimeout("tcp", *to, 2*time.Second)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("connect %s: %w", *to, err)
		}
		time.Sleep(100 * time.Millisecond) // the sink may not listen yet
	}
	defer c.Close()
	_ = c.SetDeadline(deadline)
	var seed [32]byte
	_, _ = rand.Read(seed[:])
	src := mrand.NewChaCha8(seed)
	h := sha256.New()
	buf := make([]byte, 64<<10)
	start := time.Now()
	var sent int64
	for sent < *size {
		chunk := buf[:min(int64(len(buf)), *size-sent)]
		if marker != nil {
			for i := range chunk {
				chunk[i] = marker[(sent+int64(i))%int64(len(marker))]
			}
		} else {
			_, _ = src.Read(chunk)
		}
		h.Write(chunk)
		if _, err := c.Write(chunk); err != nil {
			return fmt.Errorf("after %d bytes: %w", sent, err)
		}
		sent += int64(len(chunk))
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
		// Wait for the sink to close, so "sent" means "received".
		_, _ = io.Copy(io.Discard, c)
	}
	return printJSON(result{sent, hex.EncodeToString(h.Sum(nil)), time.Since(start).Seconds()})
}

func bcast(args []string) error {
	fs := flag.NewFlagSet("bcast", flag.ExitOnError)
	to := fs.String("to", "", "broadcast IP:PORT")
	msg := fs.String("msg", "", "payload")
	n := fs.Int("count", 1, "datagrams to send")
	_ = fs.Parse(args)
	dst, err := net.ResolveUDPAddr("udp4", *to)
	if err != nil {
		return err
	}
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_DGRAM, 0)
	if err != nil {
		return err
	}
	defer syscall.Close(fd)
	if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_BROADCAST, 1); err != nil {
		return err
	}
	sa := &syscall.SockaddrInet4{Port: dst.Port}
	copy(sa.Addr[:], dst.IP.To4())
	for i := 0; i < *n; i++ {
		if err := syscall.Sendto(fd, []byte(*msg), 0, sa); err != nil {
			return fmt.Errorf("send to %s: %w", *to, err)
		}
	}
	return nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func packetSocket(ifname string) (int, *net.Interface, error) {
	ifc, err := net.InterfaceByName(ifname)
	if err != nil {
		return -1, nil, err
	}
	fd, err := syscall.Socket(syscall.AF_PACKET, syscall.SOCK_RAW, int(htons(syscall.ETH_P_ALL)))
	if err != nil {
		return -1, nil, fmt.Errorf("packet socket: %w", err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrLinklayer{Protocol: htons(syscall.ETH_P_ALL), Ifindex: ifc.Index}); err != nil {
		syscall.Close(fd)
		return -1, nil, fmt.Errorf("bind to %s: %w", ifname, err)
	}
	return fd, ifc, nil
}

func arp(args []string) error {
	fs := flag.NewFlagSet("arp", flag.ExitOnError)
	ifname := fs.String("iface", "ethwe", "interface")
	target := fs.String("target", "", "IPv4 address asked for")
	n := fs.Int("count", 1, "requests to send")
	_ = fs.Parse(args)
	tip, err := netip.ParseAddr(*target)
	if err != nil || !tip.Is4() {
		return fmt.Errorf("-target %q: want an IPv4 address", *target)
	}
	fd, ifc, err := packetSocket(*ifname)
	if err != nil {
		return err
	}
	defer syscall.Close(fd)
	addrs, err := ifc.Addrs()
	if err != nil {
		return err
	}
	var sip netip.Addr
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().Is4() {
			sip = p.Addr()
			break
		}
	}
	if !sip.IsValid() {
		return fmt.Errorf("%s has no IPv4 address", *ifname)
	}
	f := make([]byte, 0, 42)
	f = append(f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)
	f = append(f, ifc.HardwareAddr...)
	f = binary.BigEndian.AppendUint16(f, syscall.ETH_P_ARP)
	f = append(f, 0, 1, 8, 0, 6, 4, 0, 1) // Ethernet, IPv4, request
	f = append(f, ifc.HardwareAddr...)
	s4, t4 := sip.As4(), tip.As4()
	f = append(f, s4[:]...)
	f = append(f, 0, 0, 0, 0, 0, 0)
	f = append(f, t4[:]...)
	to := &syscall.SockaddrLinklayer{Protocol: htons(syscall.ETH_P_ARP), Ifindex: ifc.Index, Halen: 6}
	copy(to.Addr[:], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	for i := 0; i < *n; i++ {
		if err := syscall.Sendto(fd, f, 0, to); err != nil {
			return fmt.Errorf("send ARP: %w", err)
		}
	}
	return nil
}

type markers []string

func (m *markers) String() string     { return strings.Join(*m, ",") }
func (m *markers) Set(s string) error { *m = append(*m, s); return nil }

func markerBytes(s string) ([]byte, error) {
	if h, ok := strings.CutPrefix(s, "hex:"); ok {
		return hex.DecodeString(h)
	}
	return []byte(s), nil
}

func count(args []string) error {
	fs := flag.NewFlagSet("count", flag.ExitOnError)
	ifname := fs.String("iface", "ethwe", "interface")
	var ms markers
	fs.Var(&ms, "marker", "count received frames containing this (repeatable)")
	until := fs.String("until", "", "stop after the first frame containing this")
	timeout := fs.Duration("timeout", 30*time.Second, "give up after this long")
	_ = fs.Parse(args)
	if *until == "" {
		return errors.New("-until is required")
	}
	stop, err := markerBytes(*until)
	if err != nil {
		return err
	}
	want := make([][]byte, len(ms))
	for i, m := range ms {
		if want[i], err = markerBytes(m); err != nil {
			return fmt.Errorf("-marker %q: %w", m, err)
		}
	}
	fd, _, err := packetSocket(*ifname)
	if err != nil {
		return err
	}
	defer syscall.Close(fd)
	deadline := time.Now().Add(*timeout)
	counts := map[string]int{}
	for _, m := range ms {
		counts[m] = 0
	}
	frames := 0
	fmt.Fprintln(os.Stderr, "ready")
	buf := make([]byte, 65536)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return fmt.Errorf("no frame containing %q within %s; counts so far %v", *until, *timeout, counts)
		}
		tv := syscall.NsecToTimeval(left.Nanoseconds())
		_ = syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv)
		n, from, err := syscall.Recvfrom(fd, buf, 0)
		if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			return err
		}
		if ll, ok := from.(*syscall.SockaddrLinklayer); ok && ll.Pkttype == syscall.PACKET_OUTGOING {
			continue
		}
		frames++
		frame := buf[:n]
		for i, w := range want {
			if len(w) > 0 && containsBytes(frame, w) {
				counts[ms[i]]++
			}
		}
		if containsBytes(frame, stop) {
			return printJSON(struct {
				Counts map[string]int `json:"counts"`
				Frames int            `json:"frames"`
			}{counts, frames})
		}
	}
}

func containsBytes(b, sub []byte) bool { return strings.Contains(string(b), string(sub)) }

// udpRaw sends a datagram made of the given bytes, as captured: the way a
// test replays or tampers with traffic it recorded.
func udpRaw(args []string) error {
	fs := flag.NewFlagSet("udp", flag.ExitOnError)
	to := fs.String("to", "", "destination IP:PORT")
	hexData := fs.String("hex", "", "datagram bytes in hex")
	n := fs.Int("count", 1, "how many copies to send")
	fs.Parse(args)
	data, err := hex.DecodeString(*hexData)
	if err != nil || len(data) == 0 {
		return fmt.Errorf("-hex: want the datagram's bytes in hex: %v", err)
	}
	c, err := net.Dial("udp", *to)
	if err != nil {
		return err
	}
	defer c.Close()
	for i := 0; i < *n; i++ {
		if _, err := c.Write(data); err != nil {
			return err
		}
	}
	return nil
}
