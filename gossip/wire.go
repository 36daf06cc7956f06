package gossip

import (
	"encoding/binary"
	"errors"
	"fmt"

	"weavemesh.dev/weave/peer"
)

// Every user message this package hands memberlist starts with a kind byte
// and the channel name, so one memberlist instance carries the replicated
// state of several packages:
//
//	delta:    [kindDelta][len][channel][origin name, 6 bytes][seq, 8 bytes][len][key][payload...]
//	unicast:  [kindUnicast][len][channel][sender name, 6 bytes][payload...]
//
// memberlist sends a broadcast only from the peer that queued it, to a few
// others; every receiver passes a delta on once, which makes it reach the
// whole mesh. Origin, sequence number and key travel with the delta for
// that: a relayed delta replaces older queued news from the same origin
// with the same key, and a receiver passes on only deltas newer than any it
// saw from that origin under that key.
const (
	kindDelta   byte = 1
	kindUnicast byte = 2
)

const (
	// MaxChannelName bounds channel names; they are sent in every message.
	MaxChannelName = 32
	// MaxKeyLen bounds broadcast keys.
	MaxKeyLen = 255
)

// frame is a decoded message. Its slices alias the input buffer.
type frame struct {
	kind    byte
	channel []byte
	from    peer.Name // unicast sender, or delta origin
	seq     uint64    // kindDelta only
	key     []byte    // kindDelta only
	payload []byte
}

var errFrameEmpty = errors.New("message is empty")

// deltaHeaderLen is the framing overhead of a delta broadcast.
func deltaHeaderLen(channel, key string) int { return 3 + 6 + 8 + len(channel) + len(key) }

// appendDelta frames a delta broadcast after b.
func appendDelta(b []byte, channel string, origin peer.Name, seq uint64, key string, payload []byte) []byte {
	b = append(b, kindDelta, byte(len(channel)))
	b = append(b, channel...)
	var nb [6]byte
	origin.PutBytes(nb[:])
	b = append(b, nb[:]...)
	b = binary.BigEndian.AppendUint64(b, seq)
	b = append(b, byte(len(key)))
	b = append(b, key...)
	return append(b, payload...)
}

// appendUnicast frames a unicast message after b.
func appendUnicast(b []byte, channel string, from peer.Name, payload []byte) []byte {
	b = append(b, kindUnicast, byte(len(channel)))
	b = append(b, channel...)
	var nb [6]byte
	from.PutBytes(nb[:])
	b = append(b, nb[:]...)
	return append(b, payload...)
}

// decodeFrame parses a message from another peer without allocating. It
// never panics, whatever the input.
func decodeFrame(b []byte) (frame, error) {
	var f frame
	if len(b) == 0 {
		return f, errFrameEmpty
	}
	f.kind = b[0]
	if f.kind != kindDelta && f.kind != kindUnicast {
		return frame{}, fmt.Errorf("unknown message kind %d (sent by a newer peer?)", f.kind)
	}
	ch, rest, err := lenPrefixed(b[1:], "channel name")
	if err != nil {
		return frame{}, err
	}
	if len(ch) == 0 || len(ch) > MaxChannelName {
		return frame{}, fmt.Errorf("channel name length %d is not 1-%d", len(ch), MaxChannelName)
	}
	f.channel = ch
	if len(rest) < 6 {
		return frame{}, errors.New("message truncated inside sender name")
	}
	f.from = peer.FromBytes(rest)
	if f.from == peer.None || f.from == peer.Broadcast {
		return frame{}, fmt.Errorf("message sender %s is a reserved name", f.from)
	}
	rest = rest[6:]
	if f.kind == kindDelta {
		if len(rest) < 8 {
			return frame{}, errors.New("delta truncated inside sequence number")
		}
		f.seq = binary.BigEndian.Uint64(rest)
		f.key, rest, err = lenPrefixed(rest[8:], "key")
		if err != nil {
			return frame{}, err
		}
	}
	f.payload = rest
	return f, nil
}

// lenPrefixed reads a one-byte length and that many bytes.
func lenPrefixed(b []byte, what string) (field, rest []byte, err error) {
	if len(b) < 1 {
		return nil, nil, fmt.Errorf("message truncated before %s", what)
	}
	n := int(b[0])
	if len(b)-1 < n {
		return nil, nil, fmt.Errorf("message truncated inside %s", what)
	}
	return b[1 : 1+n], b[1+n:], nil
}

// Push-pull state (memberlist LocalState / MergeRemoteState) is the full
// state of every channel:
//
//	[pushPullFormat][count uvarint] then count times
//	    [len][channel][state length uvarint][state]
const pushPullFormat = 1

// stateEntry is one channel's state in a push-pull. Slices alias the input.
type stateEntry struct {
	channel []byte
	state   []byte
}

// appendPushPull encodes entries after b.
func appendPushPull(b []byte, entries []stateEntry) []byte {
	b = append(b, pushPullFormat)
	b = binary.AppendUvarint(b, uint64(len(entries)))
	for _, e := range entries {
		b = append(b, byte(len(e.channel)))
		b = append(b, e.channel...)
		b = binary.AppendUvarint(b, uint64(len(e.state)))
		b = append(b, e.state...)
	}
	return b
}

// decodePushPull parses a peer's push-pull state. It checks the whole
// buffer before returning anything, so a malformed state merges nothing. It
// never panics, whatever the input.
func decodePushPull(b []byte) ([]stateEntry, error) {
	if len(b) == 0 {
		return nil, nil // a peer with no channels sends nothing
	}
	if b[0] != pushPullFormat {
		return nil, fmt.Errorf("push-pull format %d is not %d (sent by a newer peer?)", b[0], pushPullFormat)
	}
	b = b[1:]
	count, n := binary.Uvarint(b)
	if n <= 0 {
		return nil, errors.New("push-pull entry count is malformed")
	}
	b = b[n:]
	// Each entry takes at least 3 bytes, which bounds count before we
	// allocate for it.
	if count > uint64(len(b)/3) {
		return nil, fmt.Errorf("push-pull claims %d entries in %d bytes", count, len(b))
	}
	entries := make([]stateEntry, 0, count)
	for i := uint64(0); i < count; i++ {
		ch, rest, err := lenPrefixed(b, "channel name")
		if err != nil {
			return nil, fmt.Errorf("push-pull entry %d: %w", i, err)
		}
		if len(ch) == 0 || len(ch) > MaxChannelName {
			return nil, fmt.Errorf("push-pull entry %d: channel name length %d is not 1-%d", i, len(ch), MaxChannelName)
		}
		size, n := binary.Uvarint(rest)
		if n <= 0 {
			return nil, fmt.Errorf("push-pull entry %d: state length is malformed", i)
		}
		rest = rest[n:]
		if size > uint64(len(rest)) {
			return nil, fmt.Errorf("push-pull entry %d: state of %d bytes truncated at %d", i, size, len(rest))
		}
		entries = append(entries, stateEntry{channel: ch, state: rest[:size]})
		b = rest[size:]
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("push-pull has %d trailing bytes", len(b))
	}
	return entries, nil
}
