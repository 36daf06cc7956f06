package conn

import (
	"testing"

	"golang.org/x/sys/unix"
)

func groCmsg(level, typ int32, val int32) []byte {
	b := make([]byte, unix.CmsgSpace(4))
	h := (*unix.Cmsghdr)(unsafePointer(&b[0]))
	h.Level, h.Type = level, typ
	h.SetLen(unix.CmsgLen(4))
	*(*int32)(unsafePointer(&b[unix.SizeofCmsghdr])) = val
	return b
}

func TestParseGRO(t *testing.T) {
	gso := make([]byte, unix.CmsgSpace(2))
	putGSO(gso, 1376)
	for _, tc := range []struct {
		name string
		oob  []byte
		want int
	}{
		{"empty", nil, 0},
		{"gro", groCmsg(unix.IPPROTO_UDP, unix.UDP_GRO, 1376), 1376},
		{"other first", append(groCmsg(unix.IPPROTO_IP, 8, 5), groCmsg(unix.IPPROTO_UDP, unix.UDP_GRO, 900)...), 900},
		{"wrong type", groCmsg(unix.IPPROTO_UDP, unix.UDP_SEGMENT, 1376), 0},
		{"negative", groCmsg(unix.IPPROTO_UDP, unix.UDP_GRO, -5), 0},
		{"truncated", groCmsg(unix.IPPROTO_UDP, unix.UDP_GRO, 1376)[:unix.SizeofCmsghdr+2], 0},
		{"gso encoding is not gro", gso, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := parseGRO(tc.oob); got != tc.want {
				t.Fatalf("parseGRO = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestParseOverflow(t *testing.T) {
	for _, tc := range []struct {
		name string
		oob  []byte
		want uint32
		ok   bool
	}{
		{"empty", nil, 0, false},
		{"overflow", groCmsg(unix.SOL_SOCKET, unix.SO_RXQ_OVFL, 42), 42, true},
		{"after gro", append(groCmsg(unix.IPPROTO_UDP, unix.UDP_GRO, 1376), groCmsg(unix.SOL_SOCKET, unix.SO_RXQ_OVFL, 7)...), 7, true},
		{"gro only", groCmsg(unix.IPPROTO_UDP, unix.UDP_GRO, 1376), 0, false},
		{"truncated", groCmsg(unix.SOL_SOCKET, unix.SO_RXQ_OVFL, 42)[:unix.SizeofCmsghdr+2], 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := parseOverflow(tc.oob)
			if got != tc.want || ok != tc.ok {
				t.Fatalf("parseOverflow = %d, %v; want %d, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

func FuzzParseOverflow(f *testing.F) {
	f.Add(groCmsg(unix.SOL_SOCKET, unix.SO_RXQ_OVFL, 42))
	f.Add(append(groCmsg(unix.IPPROTO_UDP, unix.UDP_GRO, 1), groCmsg(unix.SOL_SOCKET, unix.SO_RXQ_OVFL, 1)...))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		parseOverflow(b)
		parseGRO(b)
	})
}

func FuzzParseGRO(f *testing.F) {
	f.Add(groCmsg(unix.IPPROTO_UDP, unix.UDP_GRO, 1376))
	f.Add(append(groCmsg(0, 0, 0), groCmsg(unix.IPPROTO_UDP, unix.UDP_GRO, 1)...))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		if v := parseGRO(b); v < 0 {
			t.Fatalf("negative segment size %d", v)
		}
	})
}

const snmpSample = `Ip: Forwarding DefaultTTL InReceives
Ip: 1 64 10
Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors
Udp: 100 2 3 50 7 0 0 0 0
UdpLite: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors
UdpLite: 0 0 0 0 99 0 0 0 0
`

func TestSnmpCounter(t *testing.T) {
	for _, tc := range []struct {
		name, text, counter string
		want                uint64
		wantErr             bool
	}{
		{"rcvbuf", snmpSample, "RcvbufErrors", 7, false},
		{"first", snmpSample, "InDatagrams", 100, false},
		{"missing counter", snmpSample, "Nope", 0, true},
		{"no udp", "Ip: A\nIp: 1\n", "RcvbufErrors", 0, true},
		{"short values", "Udp: A RcvbufErrors\nUdp: 1\n", "RcvbufErrors", 0, true},
		{"bad number", "Udp: RcvbufErrors\nUdp: x\n", "RcvbufErrors", 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := snmpCounter([]byte(tc.text), "Udp", tc.counter)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Fatalf("snmpCounter = %d, %v; want %d, error %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func FuzzSnmpCounter(f *testing.F) {
	f.Add([]byte(snmpSample))
	f.Add([]byte("Udp:\nUdp:\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		snmpCounter(b, "Udp", "RcvbufErrors")
	})
}

func stampCmsg(sec, nsec int64) []byte {
	b := make([]byte, unix.CmsgSpace(16))
	h := (*unix.Cmsghdr)(unsafePointer(&b[0]))
	h.Level, h.Type = unix.SOL_SOCKET, unix.SCM_TIMESTAMPNS
	h.SetLen(unix.CmsgLen(16))
	*(*int64)(unsafePointer(&b[unix.SizeofCmsghdr])) = sec
	*(*int64)(unsafePointer(&b[unix.SizeofCmsghdr+8])) = nsec
	return b
}

func TestParseStamp(t *testing.T) {
	for _, tc := range []struct {
		name string
		oob  []byte
		want int64
	}{
		{"empty", nil, 0},
		{"stamp", stampCmsg(1_700_000_000, 123), 1_700_000_000_000_000_123},
		{"after gro and overflow", append(append(groCmsg(unix.IPPROTO_UDP, unix.UDP_GRO, 1376),
			groCmsg(unix.SOL_SOCKET, unix.SO_RXQ_OVFL, 7)...), stampCmsg(5, 6)...), 5_000_000_006},
		{"gro only", groCmsg(unix.IPPROTO_UDP, unix.UDP_GRO, 1376), 0},
		{"nanoseconds out of range", stampCmsg(5, 1e9), 0},
		{"negative", stampCmsg(-5, 0), 0},
		{"truncated", stampCmsg(5, 6)[:unix.SizeofCmsghdr+8], 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := parseStamp(tc.oob); got != tc.want {
				t.Fatalf("parseStamp = %d, want %d", got, tc.want)
			}
		})
	}
}

func FuzzParseStamp(f *testing.F) {
	f.Add(stampCmsg(1_700_000_000, 123))
	f.Add(append(groCmsg(unix.IPPROTO_UDP, unix.UDP_GRO, 1), stampCmsg(1, 1)...))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		if v := parseStamp(b); v < 0 {
			t.Fatalf("negative stamp %d", v)
		}
	})
}
