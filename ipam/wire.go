package ipam

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"net/netip"

	"weavemesh.dev/weave/peer"
)

// entry is what one peer tells the others about itself: whether it waits
// for consensus and on which proposal, which ring it holds and how many
// addresses it has handed out. Only the peer itself writes its entry; a
// higher Seq replaces a lower one.
type entry struct {
	Seq       uint64
	Flags     byte
	PropHash  uint64 // hash of the peer's proposal (the waiting peers it knows)
	PropSize  uint32
	RingID    uint64 // the ring it holds, 0 if none
	Allocated uint32
}

const (
	flagWaiting  = 1 << 0 // has no ring and takes part in consensus
	flagObserver = 1 << 1 // never claims; asks others for space
	flagSyncing  = 1 << 2 // must hear every owner before allocating or reclaiming
)

// proposalHash identifies a set of peers (sorted, no duplicates).
func proposalHash(ps []peer.Name) uint64 {
	h := fnv.New64a()
	for _, p := range ps {
		var nb [6]byte
		p.PutBytes(nb[:])
		h.Write(nb[:])
	}
	return h.Sum64()
}

const entryMaxBytes = 6 + 10 + 1 + 8 + 5 + 8 + 5

func appendEntry(b []byte, name peer.Name, e entry) []byte {
	var nb [6]byte
	name.PutBytes(nb[:])
	b = append(b, nb[:]...)
	b = binary.AppendUvarint(b, e.Seq)
	b = append(b, e.Flags)
	b = binary.BigEndian.AppendUint64(b, e.PropHash)
	b = binary.AppendUvarint(b, uint64(e.PropSize))
	b = binary.BigEndian.AppendUint64(b, e.RingID)
	b = binary.AppendUvarint(b, uint64(e.Allocated))
	return b
}

func decodeEntry(b []byte) (peer.Name, entry, []byte, error) {
	var e entry
	if len(b) < 6 {
		return 0, e, nil, errors.New("entry truncated in name")
	}
	name := peer.FromBytes(b)
	if name == peer.None || name == peer.Broadcast {
		return 0, e, nil, fmt.Errorf("entry for reserved name %s", name)
	}
	b = b[6:]
	var n int
	if e.Seq, n = binary.Uvarint(b); n <= 0 {
		return 0, e, nil, errors.New("entry sequence is malformed")
	}
	b = b[n:]
	if len(b) < 9 {
		return 0, e, nil, errors.New("entry truncated in flags")
	}
	e.Flags = b[0]
	e.PropHash = binary.BigEndian.Uint64(b[1:])
	b = b[9:]
	size, n := binary.Uvarint(b)
	if n <= 0 || size > 1<<20 {
		return 0, e, nil, errors.New("entry proposal size is malformed")
	}
	e.PropSize = uint32(size)
	b = b[n:]
	if len(b) < 8 {
		return 0, e, nil, errors.New("entry truncated in ring id")
	}
	e.RingID = binary.BigEndian.Uint64(b)
	b = b[8:]
	alloc, n := binary.Uvarint(b)
	if n <= 0 || alloc > 1<<32-1 {
		return 0, e, nil, errors.New("entry allocation count is malformed")
	}
	e.Allocated = uint32(alloc)
	return name, e, b[n:], nil
}

// The channel's full state (push-pull):
//
//	[stateMagic][format][sender, 6][has ring: 0 or 1][ring, if any]
//	[entry count uvarint][entries]
//
// Deltas (broadcast) are [deltaRing][partial ring] or [deltaEntry][entry].
const (
	stateMagic  = 0xA8
	stateFormat = 1

	deltaRing  = 1
	deltaEntry = 2
)

func appendState(b []byte, from peer.Name, r *Ring, entries map[peer.Name]entry) []byte {
	b = append(b, stateMagic, stateFormat)
	var nb [6]byte
	from.PutBytes(nb[:])
	b = append(b, nb[:]...)
	if r == nil {
		b = append(b, 0)
	} else {
		b = append(b, 1)
		b = AppendRing(b, r)
	}
	b = binary.AppendUvarint(b, uint64(len(entries)))
	for name, e := range entries {
		b = appendEntry(b, name, e)
	}
	return b
}

type decodedState struct {
	from    peer.Name
	ring    *Ring
	entries map[peer.Name]entry
}

// decodeState parses a peer's full state. It never panics.
func decodeState(b []byte) (decodedState, error) {
	var st decodedState
	if len(b) < 9 {
		return st, errors.New("state truncated in header")
	}
	if b[0] != stateMagic {
		return st, fmt.Errorf("not an IPAM state (magic %#x)", b[0])
	}
	if b[1] != stateFormat {
		return st, fmt.Errorf("IPAM state format %d is not %d (sent by a newer peer?)", b[1], stateFormat)
	}
	st.from = peer.FromBytes(b[2:])
	if st.from == peer.None || st.from == peer.Broadcast {
		return st, fmt.Errorf("state from reserved name %s", st.from)
	}
	hasRing := b[8]
	b = b[9:]
	switch hasRing {
	case 0:
	case 1:
		r, rest, err := DecodeRing(b, true)
		if err != nil {
			return st, fmt.Errorf("ring: %w", err)
		}
		st.ring, b = r, rest
	default:
		return st, fmt.Errorf("IPAM state ring flag %d", hasRing)
	}
	count, n := binary.Uvarint(b)
	if n <= 0 {
		return st, errors.New("entry count is malformed")
	}
	b = b[n:]
	if count > uint64(len(b)/27) {
		return st, fmt.Errorf("state claims %d entries in %d bytes", count, len(b))
	}
	st.entries = make(map[peer.Name]entry, count)
	for i := uint64(0); i < count; i++ {
		name, e, rest, err := decodeEntry(b)
		if err != nil {
			return st, fmt.Errorf("entry %d: %w", i, err)
		}
		if old, ok := st.entries[name]; !ok || e.Seq > old.Seq {
			st.entries[name] = e
		}
		b = rest
	}
	if len(b) != 0 {
		return st, fmt.Errorf("IPAM state has %d trailing bytes", len(b))
	}
	return st, nil
}

// Unicast messages between peers:
//
//	[msgDonateRequest][ring id, 8][subnet address, 4][subnet bits]
//	[msgDonateReply][ring id, 8][granted: 0 or 1][partial ring, if granted]
//	[msgStateRequest][ring id, 8]
//	[msgState][ring id, 8][the sender's full state]
const (
	msgDonateRequest = 1
	msgDonateReply   = 2
	msgStateRequest  = 3
	msgState         = 4
)

func appendDonateRequest(b []byte, ringID uint64, subnet netip.Prefix) []byte {
	b = append(b, msgDonateRequest)
	b = binary.BigEndian.AppendUint64(b, ringID)
	a := subnet.Addr().As4()
	b = append(b, a[:]...)
	return append(b, byte(subnet.Bits()))
}

func appendDonateReply(b []byte, ringID uint64, grant *Ring) []byte {
	b = append(b, msgDonateReply)
	b = binary.BigEndian.AppendUint64(b, ringID)
	if grant == nil {
		return append(b, 0)
	}
	b = append(b, 1)
	return AppendRing(b, grant)
}

type message struct {
	kind   byte
	ringID uint64
	subnet netip.Prefix
	grant  *Ring  // nil when refused
	state  []byte // msgState
}

// decodeMessage parses a unicast message from another peer. It never
// panics.
func decodeMessage(b []byte) (message, error) {
	var m message
	if len(b) < 9 {
		return m, errors.New("message truncated")
	}
	m.kind = b[0]
	m.ringID = binary.BigEndian.Uint64(b[1:])
	b = b[9:]
	switch m.kind {
	case msgDonateRequest:
		if len(b) != 5 || b[4] > 32 {
			return m, errors.New("donation request is malformed")
		}
		m.subnet = netip.PrefixFrom(netip.AddrFrom4([4]byte(b[:4])), int(b[4]))
	case msgDonateReply:
		if len(b) == 0 {
			return m, errors.New("donation reply truncated")
		}
		switch b[0] {
		case 0:
			if len(b) != 1 {
				return m, errors.New("donation refusal has trailing bytes")
			}
		case 1:
			r, rest, err := DecodeRing(b[1:], false)
			if err != nil {
				return m, fmt.Errorf("donation: %w", err)
			}
			if len(rest) != 0 {
				return m, errors.New("donation has trailing bytes")
			}
			m.grant = r
		default:
			return m, errors.New("donation reply flag is malformed")
		}
	case msgStateRequest:
		if len(b) != 0 {
			return m, errors.New("state request has trailing bytes")
		}
	case msgState:
		m.state = b
	default:
		return m, fmt.Errorf("unknown IPAM message kind %d (sent by a newer peer?)", m.kind)
	}
	return m, nil
}
