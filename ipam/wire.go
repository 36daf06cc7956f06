package ipam

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"weavemesh.dev/weave/peer"
)

// entry is what one peer tells the others about itself: whether it waits
// for consensus and its Paxos claims, which ring it holds and how many
// addresses it has handed out. Only the peer itself writes its entry; a
// higher Seq replaces a lower one.
type entry struct {
	Seq       uint64
	Flags     byte
	Paxos     claims // while waiting for consensus
	RingID    uint64 // the ring it holds, 0 if none
	Allocated uint32
}

const (
	flagWaiting  = 1 << 0 // has no ring and takes part in consensus
	flagObserver = 1 << 1 // never claims; asks others for space
	flagSyncing  = 1 << 2 // must hear every owner before allocating or reclaiming
)

func appendEntry(b []byte, name peer.Name, e entry) []byte {
	var nb [6]byte
	name.PutBytes(nb[:])
	b = append(b, nb[:]...)
	b = binary.AppendUvarint(b, e.Seq)
	b = append(b, e.Flags)
	b = appendClaims(b, e.Paxos)
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
	if len(b) < 1 {
		return 0, e, nil, errors.New("entry truncated in flags")
	}
	e.Flags = b[0]
	var err error
	if e.Paxos, b, err = decodeClaims(b[1:]); err != nil {
		return 0, e, nil, fmt.Errorf("entry consensus claims: %w", err)
	}
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
//
// Format 2 replaced format 1's consensus proposal hash with Paxos claims;
// a format 1 peer refuses format 2 state and deltas by their format byte
// and delta kind, and says so.
const (
	stateMagic  = 0xA8
	stateFormat = 2

	deltaRing  = 1
	deltaEntry = 3 // format 1's entry delta was kind 2

	// minEntryBytes is the smallest encoded entry, to bound counts.
	minEntryBytes = 6 + 1 + 1 + 15 + 8 + 1
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
	if count > uint64(len(b)/minEntryBytes) {
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
//	[msgDonateReply][ring id, 8][1][partial ring]        a grant
//	[msgDonateReply][ring id, 8][0][reason]              a refusal
//	[msgStateRequest][ring id, 8]
//	[msgState][ring id, 8][the sender's full state]
//	[msgClaim][ring id, 8][count uvarint][address, 4]...
//	[msgClaimReply][ring id, 8][count uvarint]([address, 4][claimStatus])...
//	    [granted: 0 or 1][partial ring, if granted]
//
// A claim is sent by a peer that holds live allocations in space it no
// longer owns (it was reclaimed while the peer was away, or the peer gave
// up its own ring for the mesh's); the owner hands the addresses back or
// reports a conflict.
const (
	msgDonateRequest = 1
	msgDonateReply   = 2
	msgStateRequest  = 3
	msgState         = 4
	msgClaim         = 5
	msgClaimReply    = 6

	// maxClaimAddrs bounds the addresses of one claim message.
	maxClaimAddrs = 256
)

// refusal is why a donor gave nothing.
type refusal byte

const (
	refusedFull     refusal = 1 // no free address in the subnet
	refusedNotReady refusal = 2 // its space is not usable yet (settling, verifying, no ring)
	refusedFenced   refusal = 3 // it reaches too few peers to allocate
	refusedSyncing  refusal = 4 // it waits to hear every other owner's ring
)

func (r refusal) String() string {
	switch r {
	case refusedFull:
		return "full"
	case refusedNotReady:
		return "not ready"
	case refusedFenced:
		return "fenced"
	case refusedSyncing:
		return "syncing"
	}
	return fmt.Sprintf("refusal %d", byte(r))
}

// claimStatus is an owner's answer about one claimed address.
type claimStatus byte

const (
	claimGranted  claimStatus = 1 // handed back to the claimer
	claimNotMine  claimStatus = 2 // the receiver does not own it (any more)
	claimConflict claimStatus = 3 // the receiver has handed it out itself
	claimNotReady claimStatus = 4 // the receiver cannot decide yet; ask again
)

func appendDonateRequest(b []byte, ringID uint64, subnet netip.Prefix) []byte {
	b = append(b, msgDonateRequest)
	b = binary.BigEndian.AppendUint64(b, ringID)
	a := subnet.Addr().As4()
	b = append(b, a[:]...)
	return append(b, byte(subnet.Bits()))
}

func appendDonateReply(b []byte, ringID uint64, grant *Ring, why refusal) []byte {
	b = append(b, msgDonateReply)
	b = binary.BigEndian.AppendUint64(b, ringID)
	if grant == nil {
		return append(b, 0, byte(why))
	}
	b = append(b, 1)
	return AppendRing(b, grant)
}

func appendClaim(b []byte, ringID uint64, addrs []uint32) []byte {
	b = append(b, msgClaim)
	b = binary.BigEndian.AppendUint64(b, ringID)
	b = binary.AppendUvarint(b, uint64(len(addrs)))
	for _, a := range addrs {
		b = binary.BigEndian.AppendUint32(b, a)
	}
	return b
}

func appendClaimReply(b []byte, ringID uint64, answers []claimAnswer, grant *Ring) []byte {
	b = append(b, msgClaimReply)
	b = binary.BigEndian.AppendUint64(b, ringID)
	b = binary.AppendUvarint(b, uint64(len(answers)))
	for _, x := range answers {
		b = binary.BigEndian.AppendUint32(b, x.addr)
		b = append(b, byte(x.status))
	}
	if grant == nil {
		return append(b, 0)
	}
	b = append(b, 1)
	return AppendRing(b, grant)
}

// claimAnswer is the owner's answer about one claimed address.
type claimAnswer struct {
	addr   uint32
	status claimStatus
}

type message struct {
	kind    byte
	ringID  uint64
	subnet  netip.Prefix
	grant   *Ring   // nil when refused
	why     refusal // donation refusals
	state   []byte  // msgState
	addrs   []uint32
	answers []claimAnswer
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
			if len(b) != 2 || b[1] < byte(refusedFull) || b[1] > byte(refusedSyncing) {
				return m, errors.New("donation refusal is malformed")
			}
			m.why = refusal(b[1])
		case 1:
			r, err := decodeGrant(b[1:])
			if err != nil {
				return m, fmt.Errorf("donation: %w", err)
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
	case msgClaim:
		count, n := binary.Uvarint(b)
		if n <= 0 || count == 0 || count > maxClaimAddrs || uint64(len(b)-n) != 4*count {
			return m, errors.New("claim is malformed")
		}
		b = b[n:]
		for i := uint64(0); i < count; i++ {
			m.addrs = append(m.addrs, binary.BigEndian.Uint32(b[4*i:]))
		}
	case msgClaimReply:
		count, n := binary.Uvarint(b)
		if n <= 0 || count > maxClaimAddrs || uint64(len(b)-n) < 5*count+1 {
			return m, errors.New("claim reply is malformed")
		}
		b = b[n:]
		for i := uint64(0); i < count; i++ {
			st := claimStatus(b[4])
			if st < claimGranted || st > claimNotReady {
				return m, errors.New("claim reply status is malformed")
			}
			m.answers = append(m.answers, claimAnswer{binary.BigEndian.Uint32(b), st})
			b = b[5:]
		}
		switch b[0] {
		case 0:
			if len(b) != 1 {
				return m, errors.New("claim reply has trailing bytes")
			}
		case 1:
			r, err := decodeGrant(b[1:])
			if err != nil {
				return m, fmt.Errorf("claim reply: %w", err)
			}
			m.grant = r
		default:
			return m, errors.New("claim reply flag is malformed")
		}
	default:
		return m, fmt.Errorf("unknown IPAM message kind %d (sent by a newer peer?)", m.kind)
	}
	return m, nil
}

func decodeGrant(b []byte) (*Ring, error) {
	r, rest, err := DecodeRing(b, false)
	if err != nil {
		return nil, err
	}
	if len(rest) != 0 {
		return nil, errors.New("trailing bytes")
	}
	return r, nil
}
