package main

import (
	"bufio"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"os"
	"strings"
	"syscall"
	"time"
)

// flood sends UDP datagrams to one address as fast as the socket takes
// them for a while: random garbage, or captured datagrams replayed, or
// those damaged (bits flipped, cut short, grown) so that every parser on
// the receiving side meets malformed input. It prints {"sent","bytes"}.
func flood(args []string) error {
	fs := flag.NewFlagSet("flood", flag.ExitOnError)
	to := fs.String("to", "", "destination IP:PORT")
	dur := fs.Duration("for", 5*time.Second, "how long to send")
	size := fs.Int("size", 1400, "size of the random datagrams")
	payloads := fs.String("payloads", "", "file of datagrams in hex, one a line, to replay instead of random bytes")
	mutate := fs.Bool("mutate", false, "damage every replayed datagram: flip bits, cut or extend it")
	seed := fs.Uint64("seed", 1, "seed of the damage")
	_ = fs.Parse(args)
	if *size < 1 || *size > 65507 {
		return fmt.Errorf("-size %d: must be 1-65507", *size)
	}
	var dgrams [][]byte
	if *payloads != "" {
		var err error
		if dgrams, err = readHexLines(*payloads); err != nil {
			return err
		}
	}
	c, err := net.Dial("udp", *to)
	if err != nil {
		return err
	}
	defer c.Close()
	rng := mrand.New(mrand.NewPCG(*seed, 0x5eed))
	buf := make([]byte, 65507)
	var sent, bytes int64
	end := time.Now().Add(*dur)
	for i := 0; ; i++ {
		if i%256 == 0 && time.Now().After(end) {
			break
		}
		var d []byte
		switch {
		case dgrams == nil:
			d = buf[:*size]
			if i%64 == 0 {
				_, _ = rand.Read(d)
			} else {
				binary.LittleEndian.PutUint64(d, rng.Uint64()) // different heads, cheaply
			}
		case *mutate:
			d = damage(rng, buf, dgrams[i%len(dgrams)])
		default:
			d = dgrams[i%len(dgrams)]
		}
		if _, err := c.Write(d); err != nil {
			// The receiver's ICMP port unreachable comes back as a
			// refusal on a connected socket; keep sending.
			if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOBUFS) {
				continue
			}
			return fmt.Errorf("after %d datagrams: %w", sent, err)
		}
		sent++
		bytes += int64(len(d))
	}
	return printJSON(struct {
		Sent  int64 `json:"sent"`
		Bytes int64 `json:"bytes"`
	}{sent, bytes})
}

// damage copies d into buf and breaks it one of several ways.
func damage(rng *mrand.Rand, buf, d []byte) []byte {
	n := copy(buf, d)
	out := buf[:n]
	switch rng.IntN(4) {
	case 0: // a few flipped bits
		for range 1 + rng.IntN(4) {
			out[rng.IntN(n)] ^= 1 << rng.IntN(8)
		}
	case 1: // cut short
		out = out[:rng.IntN(n)]
	case 2: // garbage appended
		m := min(len(buf), n+1+rng.IntN(256))
		for i := n; i < m; i++ {
			buf[i] = byte(rng.Uint32())
		}
		out = buf[:m]
	default: // a random header
		for i := 0; i < min(n, 16); i++ {
			out[i] = byte(rng.Uint32())
		}
	}
	return out
}

func readHexLines(path string) ([][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out [][]byte
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 256<<10), 256<<10)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		b, err := hex.DecodeString(line)
		if err != nil {
			return nil, fmt.Errorf("%s: line %d: %w", path, len(out)+1, err)
		}
		out = append(out, b)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no datagrams", path)
	}
	return out, nil
}

// icmpEcho sends echo requests whose payload is exactly a file's bytes
// (ping -p takes 16 bytes at most) and counts the replies that carry the
// payload back.
func icmpEcho(args []string) error {
	fs := flag.NewFlagSet("icmp", flag.ExitOnError)
	to := fs.String("to", "", "destination IPv4 address")
	file := fs.String("payload-file", "", "payload bytes")
	count := fs.Int("count", 5, "echo requests to send")
	wait := fs.Duration("wait", time.Second, "how long to wait for each reply")
	_ = fs.Parse(args)
	payload, err := os.ReadFile(*file)
	if err != nil || len(payload) == 0 {
		return fmt.Errorf("-payload-file: want a file with some bytes: %v", err)
	}
	dst := net.ParseIP(*to).To4()
	if dst == nil {
		return fmt.Errorf("-to %q: want an IPv4 address", *to)
	}
	c, err := net.ListenPacket("ip4:icmp", "0.0.0.0")
	if err != nil {
		return err
	}
	defer c.Close()
	id := uint16(os.Getpid())
	msg := make([]byte, 8+len(payload))
	reply := make([]byte, 65536)
	received := 0
	for seq := 1; seq <= *count; seq++ {
		msg[0], msg[1] = 8, 0 // echo request
		msg[2], msg[3] = 0, 0
		binary.BigEndian.PutUint16(msg[4:], id)
		binary.BigEndian.PutUint16(msg[6:], uint16(seq))
		copy(msg[8:], payload)
		binary.BigEndian.PutUint16(msg[2:], icmpChecksum(msg))
		if _, err := c.WriteTo(msg, &net.IPAddr{IP: dst}); err != nil {
			return err
		}
		deadline := time.Now().Add(*wait)
		for {
			_ = c.SetReadDeadline(deadline)
			n, from, err := c.ReadFrom(reply)
			if err != nil {
				break // timed out: this one is lost
			}
			r := reply[:n]
			if !from.(*net.IPAddr).IP.Equal(dst) || n < 8 || r[0] != 0 ||
				binary.BigEndian.Uint16(r[4:]) != id || binary.BigEndian.Uint16(r[6:]) != uint16(seq) {
				continue
			}
			if string(r[8:]) == string(payload) {
				received++
			}
			break
		}
	}
	return printJSON(struct {
		Sent     int `json:"sent"`
		Received int `json:"received"`
	}{*count, received})
}

func icmpChecksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}
