package gossip

import (
	"encoding/binary"
	"errors"
	"fmt"
	"unicode"
	"unicode/utf8"
)

// Node metadata rides in every memberlist alive message, so it is small and
// binary. Layout, format version 1:
//
//	[0]    format version (1)
//	[1]    flags (bit 0: the peer is leaving the mesh on purpose)
//	[2]    lowest sleeve protocol version spoken
//	[3]    highest sleeve protocol version spoken
//	[4:6]  sleeve data port, big-endian
//	[6]    nickname length n, then n bytes of nickname
//	       version length m, then m bytes of software version
//
// Format version 2, written only by a peer that offers the kernel datapath
// (fastdp), appends after the version:
//
//	[0:6]  the VXLAN device's MAC address
//	[6:8]  its UDP port, big-endian
//	[8:11] its VNI, big-endian
//
// A peer that offers no fastdp writes format 1, so a mesh's metadata is
// unchanged until fastdp is used, and a peer whose metadata has no fastdp
// fields (an older version, --datapath sleeve, no VXLAN) is sleeve-only.
//
// A later format version may only append fields, so a decoder reads the
// version-1 prefix of any newer format and ignores the rest; this lets a
// mesh be upgraded one peer at a time.
const (
	metaFormat       = 1
	metaFormatFastdp = 2
	metaFlagLeaving  = 1 << 0
	metaFastdpLen    = 11
)

// Fastdp is what a peer publishes of its kernel datapath: the VXLAN
// device's address (the target of probe frames), its UDP port and VNI.
// The zero value means the peer offers none.
type Fastdp struct {
	MAC  [6]byte
	Port uint16
	VNI  uint32 // 24 bits
}

// IsZero reports whether the peer offers no kernel datapath.
func (f Fastdp) IsZero() bool { return f == Fastdp{} }

// MaxNicknameLen and MaxVersionLen bound the free-text metadata so the
// encoding always fits memberlist's 512-byte metadata limit.
const (
	MaxNicknameLen = 128
	MaxVersionLen  = 128
)

// meta is the decoded node metadata.
type meta struct {
	leaving  bool
	protoMin uint8
	protoMax uint8
	dataPort uint16
	nickname string
	version  string
	fastdp   Fastdp
}

var errMetaEmpty = errors.New("metadata is empty")

// appendMeta encodes m after b.
func appendMeta(b []byte, m meta) []byte {
	var flags byte
	if m.leaving {
		flags |= metaFlagLeaving
	}
	format := byte(metaFormat)
	if !m.fastdp.IsZero() {
		format = metaFormatFastdp
	}
	b = append(b, format, flags, m.protoMin, m.protoMax)
	b = binary.BigEndian.AppendUint16(b, m.dataPort)
	b = append(b, byte(len(m.nickname)))
	b = append(b, m.nickname...)
	b = append(b, byte(len(m.version)))
	b = append(b, m.version...)
	if !m.fastdp.IsZero() {
		b = append(b, m.fastdp.MAC[:]...)
		b = binary.BigEndian.AppendUint16(b, m.fastdp.Port)
		b = append(b, byte(m.fastdp.VNI>>16), byte(m.fastdp.VNI>>8), byte(m.fastdp.VNI))
	}
	return b
}

// decodeMeta parses metadata received from another peer. It never panics,
// whatever the input.
func decodeMeta(b []byte) (meta, error) {
	var m meta
	if len(b) == 0 {
		return m, errMetaEmpty
	}
	if b[0] == 0 {
		return m, errors.New("metadata format version 0 is invalid")
	}
	if len(b) < 7 {
		return m, fmt.Errorf("metadata is %d bytes, shorter than the 7-byte header", len(b))
	}
	format := b[0]
	m.leaving = b[1]&metaFlagLeaving != 0
	m.protoMin, m.protoMax = b[2], b[3]
	m.dataPort = binary.BigEndian.Uint16(b[4:6])
	rest := b[6:]
	nick, rest, err := metaString(rest, "nickname", MaxNicknameLen)
	if err != nil {
		return meta{}, err
	}
	ver, rest, err := metaString(rest, "version", MaxVersionLen)
	if err != nil {
		return meta{}, err
	}
	if format >= metaFormatFastdp {
		if len(rest) < metaFastdpLen {
			return meta{}, fmt.Errorf("metadata format %d is truncated inside the fastdp fields", format)
		}
		copy(m.fastdp.MAC[:], rest[0:6])
		m.fastdp.Port = binary.BigEndian.Uint16(rest[6:8])
		m.fastdp.VNI = uint32(rest[8])<<16 | uint32(rest[9])<<8 | uint32(rest[10])
		rest = rest[metaFastdpLen:]
		if m.fastdp.Port == 0 && !m.fastdp.IsZero() {
			return meta{}, errors.New("metadata fastdp port is 0")
		}
	}
	if format <= metaFormatFastdp && len(rest) != 0 {
		return meta{}, fmt.Errorf("metadata has %d trailing bytes", len(rest))
	}
	if m.protoMin == 0 || m.protoMin > m.protoMax {
		return meta{}, fmt.Errorf("metadata protocol range %d-%d is invalid", m.protoMin, m.protoMax)
	}
	if m.dataPort == 0 {
		return meta{}, errors.New("metadata data port is 0")
	}
	m.nickname, m.version = nick, ver
	return m, nil
}

// metaString reads one length-prefixed string field.
func metaString(b []byte, field string, maxLen int) (string, []byte, error) {
	if len(b) < 1 {
		return "", nil, fmt.Errorf("metadata truncated before %s", field)
	}
	n := int(b[0])
	b = b[1:]
	if n > maxLen {
		return "", nil, fmt.Errorf("metadata %s is %d bytes, more than %d", field, n, maxLen)
	}
	if len(b) < n {
		return "", nil, fmt.Errorf("metadata truncated inside %s", field)
	}
	s := string(b[:n])
	if err := checkText(s); err != nil {
		return "", nil, fmt.Errorf("metadata %s: %w", field, err)
	}
	return s, b[n:], nil
}

// checkText accepts printable UTF-8: nicknames and versions end up in logs
// and terminals, where control characters could forge output.
func checkText(s string) error {
	if !utf8.ValidString(s) {
		return errors.New("not valid UTF-8")
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return fmt.Errorf("contains unprintable character %q", r)
		}
	}
	return nil
}
