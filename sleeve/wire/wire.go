// Package wire owns the byte layout of sleeve datagrams: the fixed header
// every datagram starts with, the frame records that carry Ethernet frames, and the
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
// Version 2 carries every packet in its own datagram (no chunked
// super-frames); a build speaking only version 1 shares no version with
// this one, so the two refuse each other instead of exchanging garbage.
const Version = 2

// Datagram types.
const (
	TypeFrames     = 1 // body: length-prefixed Ethernet frames
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
	ErrFrame   = errors.New("sleeve: malformed frame record")
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

// FrameLen is the size of the length that leads each frame in a
// TypeFrames body.
const FrameLen = 2

// VnetHdrLen is the size of the virtio_net_hdr that leads every frame.
const VnetHdrLen = 10

// A TypeFrames body is one or more frames back to back, each a 2-byte
// length and then that many bytes of frame data: a 10-byte virtio_net_hdr
// followed by an Ethernet frame.
//
//	0      2
//	+------+----------------------------+------+----------------- ...
//	| len  | len bytes of frame data    | len  | frame data
//	+------+----------------------------+------+----------------- ...
//
// Every frame fits its datagram: a TCP or UDP super-frame is cut into wire
// segments (sleeve/offload) before it is sent, and an IPv4 packet too large
// for the path, without DF, into IP fragments, so a lost datagram costs
// one packet of the inner flow. Version 1 cut super-frames into chunks
// that the receiver reassembled; it is gone.

// PutFrameLen writes a frame's length into b[:FrameLen].
func PutFrameLen(b []byte, n int) { binary.BigEndian.PutUint16(b, uint16(n)) }

// NextFrame decodes the frame at the start of body, returning its data and
// the remaining body. Callers loop while the remaining body is non-empty.
func NextFrame(body []byte) (data, rest []byte, err error) {
	if len(body) < FrameLen {
		return nil, nil, fmt.Errorf("%w: %d bytes left, frame length needs %d", ErrFrame, len(body), FrameLen)
	}
	n := int(binary.BigEndian.Uint16(body))
	end := FrameLen + n
	if n == 0 || end > len(body) {
		return nil, nil, fmt.Errorf("%w: length %d, %d bytes present", ErrFrame, n, len(body)-FrameLen)
	}
	return body[FrameLen:end], body[end:], nil
}

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
