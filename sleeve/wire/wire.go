// Package wire owns the byte layout of sleeve datagrams: the fixed header
// every datagram starts with, the chunks that carry Ethernet frames, and the
// heartbeat bodies used for liveness, round-trip time and path-MTU probes.
// docs/protocol.md is the prose twin of this file; keep them in step.
//
// Decoders never panic and never retain their input: every error names what
// was wrong, and callers count and drop the datagram.
package wire

import (
	"encoding/binary"
	"errors"
	"fmt"

	"weavemesh.dev/weave/peer"
)

// Version is the sleeve protocol version this build speaks. Peers advertise
// the range they support in gossip metadata and use the highest common one.
const Version = 1

// Datagram types.
const (
	TypeFrames     = 1 // body: chunks of Ethernet frames
	TypeHeartbeat  = 2 // body: Heartbeat
	TypeHeartbeatR = 3 // body: Heartbeat echoed back

	// With a mesh password (package sleeve/secure): every other datagram
	// travels inside a sealed envelope, set up by a handshake.
	TypeSealed     = 16 // envelope: [ver][type][rsvd 2][receiver index 4][counter 8] ciphertext tag
	TypeHandshake1 = 17 // body: handshake initiation
	TypeHandshake2 = 18 // body: handshake response
)

// Header flags.
const (
	FlagFlood = 0x01 // frame is flooded along the broadcast tree rooted at Src
)

// HeaderLen is the size of the fixed datagram header.
const HeaderLen = 16

// DefaultTTL bounds how many relays a datagram may cross; it only matters
// while peers briefly disagree about the topology.
const DefaultTTL = 8

// Header starts every datagram.
//
//	0      1      2      3      4 ........ 9   10 ....... 15
//	+------+------+------+------+-------------+-------------+
//	| ver  | type | flags| ttl  |  src peer   |  dst peer   |
//	+------+------+------+------+-------------+-------------+
type Header struct {
	Version uint8
	Type    uint8
	Flags   uint8
	TTL     uint8
	Src     peer.Name // the peer that first sent the datagram
	Dst     peer.Name // final destination, or peer.Broadcast when flooded
}

// Errors returned by the decoders; callers count drops by these.
var (
	ErrShort   = errors.New("sleeve: datagram truncated")
	ErrVersion = errors.New("sleeve: unsupported protocol version")
	ErrType    = errors.New("sleeve: unknown datagram type")
	ErrChunk   = errors.New("sleeve: malformed frame chunk")
)

// PutHeader writes h into b[:HeaderLen].
func PutHeader(b []byte, h *Header) {
	_ = b[HeaderLen-1]
	b[0] = h.Version
	b[1] = h.Type
	b[2] = h.Flags
	b[3] = h.TTL
	h.Src.PutBytes(b[4:10])
	h.Dst.PutBytes(b[10:16])
}

// ParseHeader decodes the header at the start of b and returns the body.
func ParseHeader(b []byte, h *Header) (body []byte, err error) {
	if len(b) < HeaderLen {
		return nil, fmt.Errorf("%w: %d bytes, header needs %d", ErrShort, len(b), HeaderLen)
	}
	h.Version = b[0]
	h.Type = b[1]
	h.Flags = b[2]
	h.TTL = b[3]
	h.Src = peer.FromBytes(b[4:10])
	h.Dst = peer.FromBytes(b[10:16])
	if h.Version != Version {
		return nil, fmt.Errorf("%w %d", ErrVersion, h.Version)
	}
	switch h.Type {
	case TypeFrames, TypeHeartbeat, TypeHeartbeatR, TypeHandshake1, TypeHandshake2:
	default:
		return nil, fmt.Errorf("%w %d", ErrType, h.Type)
	}
	return b[HeaderLen:], nil
}

// DecTTL lowers the TTL byte of an encoded datagram in place, reporting
// false when the datagram must not travel further.
func DecTTL(b []byte) bool {
	if len(b) < HeaderLen || b[3] <= 1 {
		return false
	}
	b[3]--
	return true
}

// ChunkLen is the size of a chunk header.
const ChunkLen = 12

// Chunk flags.
const (
	ChunkMore = 0x01 // more chunks of this frame follow in later datagrams
)

// Chunk describes one piece of a frame inside a TypeFrames body. A frame that
// fits travels whole (Flags 0, Offset 0). A larger one — a TCP super-frame
// from the offload path, or an IPv4 packet without DF — is cut into chunks
// that each fill one datagram; the receiver reassembles them by ID and Offset.
//
//	0      2      3      4            8           12
//	+------+------+------+------------+-----------+
//	| len  | flags| rsvd | frame id   | offset    |  then len bytes of data
//	+------+------+------+------------+-----------+
//
// Frame data is a 10-byte virtio_net_hdr followed by the Ethernet frame.
type Chunk struct {
	Len    uint16
	Flags  uint8
	ID     uint32
	Offset uint32
}

// PutChunk writes c into b[:ChunkLen].
func PutChunk(b []byte, c *Chunk) {
	_ = b[ChunkLen-1]
	binary.BigEndian.PutUint16(b[0:], c.Len)
	b[2] = c.Flags
	b[3] = 0
	binary.BigEndian.PutUint32(b[4:], c.ID)
	binary.BigEndian.PutUint32(b[8:], c.Offset)
}

// MaxFrame bounds a reassembled frame: a 64 KiB GSO super-frame plus its
// headers. Anything claiming more is malformed.
const MaxFrame = 65535 + 14 + VnetHdrLen + 64

// VnetHdrLen is the size of the virtio_net_hdr that leads every frame.
const VnetHdrLen = 10

// NextChunk decodes the chunk at the start of body, returning its data and
// the remaining body. Callers loop while the remaining body is non-empty.
func NextChunk(body []byte, c *Chunk) (data, rest []byte, err error) {
	if len(body) < ChunkLen {
		return nil, nil, fmt.Errorf("%w: %d bytes left, chunk header needs %d", ErrChunk, len(body), ChunkLen)
	}
	c.Len = binary.BigEndian.Uint16(body[0:])
	c.Flags = body[2]
	c.ID = binary.BigEndian.Uint32(body[4:])
	c.Offset = binary.BigEndian.Uint32(body[8:])
	end := ChunkLen + int(c.Len)
	if c.Len == 0 || end > len(body) {
		return nil, nil, fmt.Errorf("%w: length %d, %d bytes present", ErrChunk, c.Len, len(body)-ChunkLen)
	}
	if c.Flags&^ChunkMore != 0 || body[3] != 0 {
		return nil, nil, fmt.Errorf("%w: unknown flags %#x", ErrChunk, c.Flags)
	}
	if uint64(c.Offset)+uint64(c.Len) > MaxFrame {
		return nil, nil, fmt.Errorf("%w: offset %d + length %d exceeds %d", ErrChunk, c.Offset, c.Len, MaxFrame)
	}
	return body[ChunkLen:end], body[end:], nil
}

// Whole reports whether the chunk carries a complete frame.
func (c *Chunk) Whole() bool { return c.Offset == 0 && c.Flags&ChunkMore == 0 }

// HeartbeatLen is the size of a heartbeat body without padding.
const HeartbeatLen = 20

// Heartbeat flags.
const (
	HBHearYou = 0x01 // the sender has heard from the receiver recently
	HBProbe   = 0x02 // padded path-MTU probe; answer with EchoSize set
)

// Heartbeat is the body of TypeHeartbeat and TypeHeartbeatR datagrams.
// Heartbeats are never relayed: Src and Dst are neighbours on the underlay.
//
//	0          8      12     13     14     16     18     20
//	+----------+------+------+------+------+------+------+ padding...
//	| sent ns  | seq  | flags| rsvd | size | echo | rsvd |
//	+----------+------+------+------+------+------+------+
//
// Size is the whole datagram length the sender produced (header included),
// so the receiver can tell a probe arrived intact. A reply copies SentNanos
// and Seq and sets Echo to the size it received.
type Heartbeat struct {
	SentNanos int64
	Seq       uint32
	Flags     uint8
	Size      uint16
	Echo      uint16
}

// PutHeartbeat writes hb into b[:HeartbeatLen] and zeroes any padding after
// it up to len(b).
func PutHeartbeat(b []byte, hb *Heartbeat) {
	_ = b[HeartbeatLen-1]
	binary.BigEndian.PutUint64(b[0:], uint64(hb.SentNanos))
	binary.BigEndian.PutUint32(b[8:], hb.Seq)
	b[12] = hb.Flags
	b[13] = 0
	binary.BigEndian.PutUint16(b[14:], hb.Size)
	binary.BigEndian.PutUint16(b[16:], hb.Echo)
	clear(b[18:])
}

// ParseHeartbeat decodes a heartbeat body.
func ParseHeartbeat(body []byte, hb *Heartbeat) error {
	if len(body) < HeartbeatLen {
		return fmt.Errorf("%w: heartbeat of %d bytes, need %d", ErrShort, len(body), HeartbeatLen)
	}
	hb.SentNanos = int64(binary.BigEndian.Uint64(body[0:]))
	hb.Seq = binary.BigEndian.Uint32(body[8:])
	hb.Flags = body[12]
	hb.Size = binary.BigEndian.Uint16(body[14:])
	hb.Echo = binary.BigEndian.Uint16(body[16:])
	return nil
}
