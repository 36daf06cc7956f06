package offload

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// spec describes a test frame. Frames are built by hand, byte by byte, so
// the golden vectors do not depend on any library's choices.
type spec struct {
	v6      bool
	udp     bool
	flags   uint8 // TCP flags; ACK is added unless noACK
	noACK   bool
	urg     uint16 // urgent pointer (with URG in flags)
	tos     uint8  // IPv4 TOS / IPv6 traffic class (ECN bits included)
	id      uint16
	df      bool
	seq     uint32
	ack     uint32
	opts    []byte // TCP options, a multiple of 4 bytes
	payload []byte
	gso     uint16 // gso_size; 0 = a plain frame
	ecn     bool   // GSOECN bit in the virtio header
	partial bool   // NEEDS_CSUM with the pseudo-header sum (a plain frame)
}

var (
	dstMAC = []byte{0x02, 0, 0, 0, 0, 0x02}
	srcMAC = []byte{0x02, 0, 0, 0, 0, 0x01}
	src4   = []byte{10, 32, 0, 1}
	dst4   = []byte{10, 32, 0, 2}
	src6   = []byte{0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}
	dst6   = []byte{0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2}
)

func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}

// build returns a virtio header and Ethernet frame. A GSO frame looks the
// way a TAP hands it over: NEEDS_CSUM, the checksum field holding the
// pseudo-header sum for the whole packet.
func build(s spec) []byte {
	f := make([]byte, VnetHdrLen, 128+len(s.payload))
	f = append(f, dstMAC...)
	f = append(f, srcMAC...)
	l4len := tcpMinLen + len(s.opts)
	proto := uint8(protoTCP)
	if s.udp {
		l4len, proto = udpLen, protoUDP
	}
	l4len += len(s.payload)
	var addrSum uint64
	if s.v6 {
		f = binary.BigEndian.AppendUint16(f, etherIPv6)
		f = append(f, 0x60|s.tos>>4, s.tos<<4, 0, 7)
		f = binary.BigEndian.AppendUint16(f, uint16(l4len))
		f = append(f, proto, 64)
		f = append(f, src6...)
		f = append(f, dst6...)
		addrSum = sum(0, append(append([]byte{}, src6...), dst6...))
	} else {
		f = binary.BigEndian.AppendUint16(f, etherIPv4)
		ip := make([]byte, ipv4MinLen)
		ip[0], ip[1] = 0x45, s.tos
		binary.BigEndian.PutUint16(ip[2:], uint16(ipv4MinLen+l4len))
		binary.BigEndian.PutUint16(ip[4:], s.id)
		if s.df {
			ip[6] = 0x40
		}
		ip[8], ip[9] = 64, proto
		copy(ip[12:], src4)
		copy(ip[16:], dst4)
		binary.BigEndian.PutUint16(ip[10:], Checksum(ip, 0))
		f = append(f, ip...)
		addrSum = sum(0, append(append([]byte{}, src4...), dst4...))
	}
	l4 := len(f)
	csumOff := tcpCsumOff
	if s.udp {
		csumOff = udpCsumOff
		f = binary.BigEndian.AppendUint16(f, 4000)
		f = binary.BigEndian.AppendUint16(f, 5000)
		f = binary.BigEndian.AppendUint16(f, uint16(l4len))
		f = append(f, 0, 0)
	} else {
		f = binary.BigEndian.AppendUint16(f, 4000)
		f = binary.BigEndian.AppendUint16(f, 5000)
		f = binary.BigEndian.AppendUint32(f, s.seq)
		f = binary.BigEndian.AppendUint32(f, s.ack)
		flags := s.flags
		if !s.noACK {
			flags |= tcpACK
		}
		f = append(f, byte((tcpMinLen+len(s.opts))/4)<<4, flags)
		f = binary.BigEndian.AppendUint16(f, 1000)
		f = append(f, 0, 0)
		f = binary.BigEndian.AppendUint16(f, s.urg)
		f = append(f, s.opts...)
	}
	hdrLen := len(f) - VnetHdrLen
	f = append(f, s.payload...)
	v := vnet{}
	if s.gso > 0 || s.partial {
		v = vnet{flags: FlagNeedsCsum, hdrLen: uint16(hdrLen), gsoSize: s.gso, csumStart: uint16(l4 - VnetHdrLen), csumOffset: uint16(csumOff)}
		binary.BigEndian.PutUint16(f[l4+csumOff:], pseudo(addrSum, proto, l4len))
		if s.gso > 0 {
			switch {
			case s.udp:
				v.gsoType = GSOUDPL4
			case s.v6:
				v.gsoType = GSOTCPv6
			default:
				v.gsoType = GSOTCPv4
			}
			if s.ecn {
				v.gsoType |= GSOECN
			}
		}
	} else {
		binary.BigEndian.PutUint16(f[l4+csumOff:], Checksum(f[l4:], addrSum+uint64(proto)+uint64(l4len)))
	}
	v.encode(f)
	return f
}

// segments cuts f with a Segmenter into whole frames (headers and payload
// joined).
func segments(t testing.TB, f []byte) [][]byte {
	t.Helper()
	var s Segmenter
	if err := s.Reset(f); err != nil {
		t.Fatalf("Reset: %v", err)
	}
	var out [][]byte
	hdr := make([]byte, s.HeaderLen())
	for {
		p, ok := s.Next(hdr)
		if !ok {
			break
		}
		out = append(out, append(bytes.Clone(hdr), p...))
	}
	if len(out) != s.Count() {
		t.Fatalf("%d segments, Count says %d", len(out), s.Count())
	}
	return out
}

// complete returns the Ethernet frame of f with a partial checksum
// finished, as the receiving TAP would.
func complete(t testing.TB, f []byte) []byte {
	t.Helper()
	var v vnet
	v.decode(f)
	eth := bytes.Clone(f[VnetHdrLen:])
	if v.flags&FlagNeedsCsum != 0 {
		start, field := int(v.csumStart), int(v.csumStart+v.csumOffset)
		if field+2 > len(eth) {
			t.Fatalf("checksum field %d+%d outside %d bytes", v.csumStart, v.csumOffset, len(eth))
		}
		c := Checksum(eth[start:], 0)
		if c == 0 && v.csumOffset == udpCsumOff {
			c = 0xffff
		}
		binary.BigEndian.PutUint16(eth[field:], c)
	}
	return eth
}

// gopacketValid decodes eth with gopacket and checks, independently of this
// package's code, that every checksum is right: re-serialising with
// gopacket computing them must give the same bytes.
func gopacketValid(t testing.TB, eth []byte) gopacket.Packet {
	t.Helper()
	pkt := gopacket.NewPacket(eth, layers.LayerTypeEthernet, gopacket.Default)
	if el := pkt.ErrorLayer(); el != nil {
		t.Fatalf("gopacket cannot decode: %v", el.Error())
	}
	var ls []gopacket.SerializableLayer
	for _, l := range pkt.Layers() {
		switch l := l.(type) {
		case *layers.TCP:
			l.SetNetworkLayerForChecksum(pkt.NetworkLayer())
		case *layers.UDP:
			l.SetNetworkLayerForChecksum(pkt.NetworkLayer())
		}
		if sl, ok := l.(gopacket.SerializableLayer); ok {
			ls = append(ls, sl)
		} else {
			ls = append(ls, gopacket.Payload(l.LayerContents()))
		}
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{ComputeChecksums: true}, ls...); err != nil {
		t.Fatalf("re-serialise: %v", err)
	}
	want := buf.Bytes()
	if len(want) > len(eth) {
		want = want[:len(eth)] // gopacket pads to 60 bytes
	}
	if !bytes.Equal(want, eth) {
		t.Fatalf("checksums differ from gopacket's\n got %x\nwant %x", eth, want)
	}
	return pkt
}

// unhex decodes a golden vector written with spaces and line breaks.
func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func hexOf(b []byte) string { return hex.EncodeToString(b) }
