package sleeve

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"

	"weavemesh.dev/weave/sleeve/wire"
)

func TestCodel(t *testing.T) {
	const (
		target   = 500 * time.Microsecond
		interval = 10 * time.Millisecond
		step     = 100 * time.Microsecond // one dequeue per step
	)
	type phase struct {
		d       time.Duration // how long this phase lasts
		sojourn time.Duration
		empty   bool
	}
	for _, tc := range []struct {
		name   string
		phases []phase
		// signals wanted in each phase
		want []int
	}{
		{"below target, nothing", []phase{{time.Second, target - 1, false}}, []int{0}},
		{"above target but the queue drains, nothing", []phase{{time.Second, 5 * target, true}}, []int{0}},
		{"above target for less than an interval, nothing", []phase{
			{interval - step, 2 * target, false}, {time.Millisecond, 0, false}, {interval - step, 2 * target, false},
		}, []int{0, 0, 0}},
		// The first signal once the sojourn has been above target for an
		// interval, then each interval/sqrt(count) after the last: at 10,
		// 20, 27.07, 32.85, 37.85, 42.32, 46.40, 50.18, 53.72 and 57.06
		// ms, 10 within 60 ms.
		{"above target, signals at the CoDel rate", []phase{{60 * time.Millisecond, 2 * target, false}}, []int{10}},
		{"recovers below target", []phase{
			{60 * time.Millisecond, 2 * target, false}, {time.Second, target / 2, false},
		}, []int{10, 0}},
		// Back above target soon after: the count resumes near where it
		// was (RFC 8289), so signals come faster than the first time.
		{"resumes at the last rate", []phase{
			{60 * time.Millisecond, 2 * target, false}, {5 * time.Millisecond, 0, false}, {30 * time.Millisecond, 2 * target, false},
		}, []int{10, 0, 7}}, // from count 1 it would be 3
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCodel(target, interval)
			now := int64(1_700_000_000) * int64(time.Second)
			for i, ph := range tc.phases {
				got := 0
				for end := now + int64(ph.d); now < end; now += int64(step) {
					if c.dequeue(now, int64(ph.sojourn), ph.empty) {
						got++
					}
				}
				if got != tc.want[i] {
					t.Errorf("phase %d: %d signals, want %d", i, got, tc.want[i])
				}
			}
		})
	}
}

// ipFrame returns a vnet_hdr + Ethernet frame with the given IP packet.
func ipFrame(etherType uint16, ip []byte) []byte {
	f := make([]byte, wire.VnetHdrLen+ethHeaderLen, wire.VnetHdrLen+ethHeaderLen+len(ip))
	binary.BigEndian.PutUint16(f[wire.VnetHdrLen+12:], etherType)
	return append(f, ip...)
}

// ip4 returns an IPv4 packet with tos, protocol proto and a valid header
// checksum, carrying l4.
func ip4(tos, proto byte, l4 []byte) []byte {
	ip := make([]byte, 20, 20+len(l4))
	ip[0], ip[1], ip[8], ip[9] = 0x45, tos, 64, proto
	binary.BigEndian.PutUint16(ip[2:], uint16(20+len(l4)))
	copy(ip[12:], []byte{10, 32, 0, 1, 10, 32, 0, 2})
	binary.BigEndian.PutUint16(ip[10:], ip4Sum(ip))
	return append(ip, l4...)
}

func ip4Sum(h []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(h); i += 2 {
		if i == 10 {
			continue
		}
		s += uint32(binary.BigEndian.Uint16(h[i:]))
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

func ip6(tc, next byte, l4 []byte) []byte {
	ip := make([]byte, 40, 40+len(l4))
	ip[0], ip[1] = 0x60|tc>>4, tc<<4
	binary.BigEndian.PutUint16(ip[4:], uint16(len(l4)))
	ip[6], ip[7] = next, 64
	return append(ip, l4...)
}

// tcpSeg is a TCP header (20 bytes, no options) and n bytes of data.
func tcpSeg(n int) []byte {
	s := make([]byte, 20+n)
	s[12] = 5 << 4
	s[13] = 0x10 // ACK
	return s
}

func TestSignal(t *testing.T) {
	for _, tc := range []struct {
		name  string
		frame []byte
		want  congestion
		// wantIP is the IP header after the signal; nil: unchanged.
		wantTOS int // -1: not IPv4
	}{
		{"IPv4 TCP data, not ECN-capable: drop", ipFrame(etherTypeIP4, ip4(0, protoTCP, tcpSeg(100))), congestionDrop, -1},
		{"IPv4 pure ACK: nothing", ipFrame(etherTypeIP4, ip4(0, protoTCP, tcpSeg(0))), congestionNone, -1},
		{"IPv4 ECT(0): CE", ipFrame(etherTypeIP4, ip4(0x02, protoTCP, tcpSeg(100))), congestionMarked, 0x03},
		{"IPv4 ECT(1), DSCP kept: CE", ipFrame(etherTypeIP4, ip4(0xb9, protoTCP, tcpSeg(0))), congestionMarked, 0xbb},
		{"IPv4 already CE: counts as marked", ipFrame(etherTypeIP4, ip4(0x03, protoTCP, tcpSeg(100))), congestionMarked, 0x03},
		{"IPv4 UDP: nothing", ipFrame(etherTypeIP4, ip4(0, 17, make([]byte, 100))), congestionNone, -1},
		{"IPv4 ICMP: nothing", ipFrame(etherTypeIP4, ip4(0, 1, make([]byte, 64))), congestionNone, -1},
		{"IPv6 TCP data: drop", ipFrame(etherTypeIP6, ip6(0, protoTCP, tcpSeg(100))), congestionDrop, -1},
		{"IPv6 ECT(0): CE", ipFrame(etherTypeIP6, ip6(0x02, protoTCP, tcpSeg(100))), congestionMarked, -1},
		{"IPv6 extension header: nothing", ipFrame(etherTypeIP6, ip6(0, 0, tcpSeg(100))), congestionNone, -1},
		{"ARP: nothing", ipFrame(0x0806, make([]byte, 64)), congestionNone, -1},
		{"runt: nothing", ipFrame(etherTypeIP4, ip4(0, protoTCP, nil)), congestionNone, -1},
		{"IPv4 bad header length: nothing", ipFrame(etherTypeIP4, append([]byte{0x41}, ip4(0, protoTCP, tcpSeg(100))[1:]...)), congestionNone, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := bytes.Clone(tc.frame)
			if got := signal(tc.frame); got != tc.want {
				t.Fatalf("signal = %d, want %d", got, tc.want)
			}
			ip := tc.frame[aqmIP:]
			switch {
			case tc.wantTOS >= 0:
				if ip[1] != byte(tc.wantTOS) {
					t.Fatalf("TOS %#x, want %#x", ip[1], tc.wantTOS)
				}
				if got, want := binary.BigEndian.Uint16(ip[10:]), ip4Sum(ip[:20]); got != want {
					t.Fatalf("IPv4 checksum %#04x, want %#04x", got, want)
				}
			case tc.want == congestionMarked: // IPv6
				if ecn := ip[1] >> 4 & ecnMask; ecn != ecnCE {
					t.Fatalf("IPv6 ECN %d, want CE", ecn)
				}
				if ip[0] != before[aqmIP] || ip[1]&0x0f != before[aqmIP+1]&0x0f {
					t.Fatal("IPv6 version or flow label changed")
				}
			default:
				if !bytes.Equal(tc.frame, before) {
					t.Fatal("frame changed")
				}
			}
		})
	}
}

func FuzzSignal(f *testing.F) {
	f.Add(ipFrame(etherTypeIP4, ip4(0x02, protoTCP, tcpSeg(100))))
	f.Add(ipFrame(etherTypeIP6, ip6(0, protoTCP, tcpSeg(10))))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		before := bytes.Clone(b)
		got := signal(b)
		if got != congestionMarked && !bytes.Equal(b, before) {
			t.Fatalf("signal %d changed the frame", got)
		}
		if len(b) != len(before) {
			t.Fatal("length changed")
		}
	})
}
