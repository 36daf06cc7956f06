package dns

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"weavemesh.dev/weave/peer"
)

// Wire format of the "dns" gossip channel; docs/dns.md has the layout.
// Every message starts with the format byte and a kind byte.
const (
	wireFormat = 1

	kindDelta    = 1 // one record, broadcast
	kindDigest   = 2 // per-owner digests, the push-pull full state
	kindPull     = 3 // unicast: send me these owners' records
	kindSnapshot = 4 // unicast: owners' records, the answer to a pull

	flagDeleted = 0x01

	maxEndpointLen = 64
	// minRecordLen is the smallest encoded record: version, flags, a
	// two-byte name, a 4-byte address, an empty endpoint.
	minRecordLen = 8 + 1 + 1 + 2 + 1 + 4 + 1
	digestLen    = 6 + 8 + 8
)

var errShort = errors.New("message is truncated")

// recKey identifies a record within its owner's records.
type recKey struct {
	name     string     // canonical FQDN
	addr     netip.Addr // unmapped
	endpoint string     // "" for records added by hand
}

// wireRecord is one record as it travels.
type wireRecord struct {
	key     recKey
	version uint64
	deleted bool
}

// digest summarises one owner's records.
type digest struct {
	owner peer.Name
	floor uint64
	hash  uint64
}

// snapshot is one owner's records as a peer holds them: complete for
// versions up to floor.
type snapshot struct {
	owner peer.Name
	floor uint64
	recs  []wireRecord
}

func appendHeader(b []byte, kind byte) []byte { return append(b, wireFormat, kind) }

func appendPeer(b []byte, p peer.Name) []byte {
	var a [6]byte
	p.PutBytes(a[:])
	return append(b, a[:]...)
}

func appendRecord(b []byte, r wireRecord) []byte {
	b = binary.BigEndian.AppendUint64(b, r.version)
	var flags byte
	if r.deleted {
		flags |= flagDeleted
	}
	b = append(b, flags, byte(len(r.key.name)))
	b = append(b, r.key.name...)
	a := r.key.addr.AsSlice()
	b = append(b, byte(len(a)))
	b = append(b, a...)
	b = append(b, byte(len(r.key.endpoint)))
	return append(b, r.key.endpoint...)
}

// encodeDelta encodes one record of owner.
func encodeDelta(owner peer.Name, r wireRecord) []byte {
	b := appendHeader(make([]byte, 0, 2+6+minRecordLen+len(r.key.name)+16+len(r.key.endpoint)), kindDelta)
	b = appendPeer(b, owner)
	return appendRecord(b, r)
}

func encodeDigests(sender peer.Name, ds []digest) []byte {
	b := appendHeader(make([]byte, 0, 2+6+binary.MaxVarintLen64+len(ds)*digestLen), kindDigest)
	b = appendPeer(b, sender)
	b = binary.AppendUvarint(b, uint64(len(ds)))
	for _, d := range ds {
		b = appendPeer(b, d.owner)
		b = binary.BigEndian.AppendUint64(b, d.floor)
		b = binary.BigEndian.AppendUint64(b, d.hash)
	}
	return b
}

func encodePull(owners []peer.Name) []byte {
	b := appendHeader(make([]byte, 0, 2+binary.MaxVarintLen64+6*len(owners)), kindPull)
	b = binary.AppendUvarint(b, uint64(len(owners)))
	for _, o := range owners {
		b = appendPeer(b, o)
	}
	return b
}

func encodeSnapshots(ss []snapshot) []byte {
	b := appendHeader(nil, kindSnapshot)
	b = binary.AppendUvarint(b, uint64(len(ss)))
	for _, s := range ss {
		b = appendPeer(b, s.owner)
		b = binary.BigEndian.AppendUint64(b, s.floor)
		b = binary.AppendUvarint(b, uint64(len(s.recs)))
		for _, r := range s.recs {
			b = appendRecord(b, r)
		}
	}
	return b
}

// reader decodes untrusted bytes; every read checks the length first.
type reader struct {
	b   []byte
	err error
}

func (r *reader) fail(err error) {
	if r.err == nil {
		r.err = err
	}
}

func (r *reader) bytes(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || len(r.b) < n {
		r.fail(errShort)
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) byte() byte {
	v := r.bytes(1)
	if v == nil {
		return 0
	}
	return v[0]
}

func (r *reader) u64() uint64 {
	v := r.bytes(8)
	if v == nil {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

func (r *reader) peer() peer.Name {
	v := r.bytes(6)
	if v == nil {
		return peer.None
	}
	p := peer.FromBytes(v)
	if p == peer.None || p == peer.Broadcast {
		r.fail(fmt.Errorf("%s is not a peer name", p))
	}
	return p
}

// count reads a uvarint count of elements at least minSize bytes each, so
// a forged count cannot make the decoder allocate more than the message
// could hold.
func (r *reader) count(minSize int) int {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail(errShort)
		return 0
	}
	r.b = r.b[n:]
	if v > uint64(len(r.b)/minSize) {
		r.fail(fmt.Errorf("count %d does not fit the %d bytes left", v, len(r.b)))
		return 0
	}
	return int(v)
}

func (r *reader) header(kind byte) {
	f, k := r.byte(), r.byte()
	if r.err != nil {
		return
	}
	if f != wireFormat {
		r.fail(fmt.Errorf("format %d, want %d", f, wireFormat))
		return
	}
	if k != kind {
		r.fail(fmt.Errorf("message kind %d, want %d", k, kind))
	}
}

func (r *reader) record() wireRecord {
	var w wireRecord
	w.version = r.u64()
	flags := r.byte()
	name := r.bytes(int(r.byte()))
	addr := r.bytes(int(r.byte()))
	ep := r.bytes(int(r.byte()))
	if r.err != nil {
		return w
	}
	if flags&^flagDeleted != 0 {
		r.fail(fmt.Errorf("unknown record flags %#x", flags))
		return w
	}
	w.deleted = flags&flagDeleted != 0
	if !canonical(string(name)) {
		r.fail(fmt.Errorf("record name %q is not a canonical DNS name", name))
		return w
	}
	a, ok := netip.AddrFromSlice(addr)
	if !ok || (len(addr) != 4 && len(addr) != 16) {
		r.fail(fmt.Errorf("record address of %d bytes", len(addr)))
		return w
	}
	if len(ep) > maxEndpointLen {
		r.fail(fmt.Errorf("endpoint id of %d bytes, at most %d", len(ep), maxEndpointLen))
		return w
	}
	for _, c := range ep {
		if c <= ' ' || c > '~' {
			r.fail(fmt.Errorf("endpoint id %q is not printable ASCII", ep))
			return w
		}
	}
	if w.version == 0 {
		r.fail(errors.New("record version 0"))
		return w
	}
	w.key = recKey{name: string(name), addr: a.Unmap(), endpoint: string(ep)}
	return w
}

func (r *reader) end() error {
	if r.err == nil && len(r.b) != 0 {
		r.fail(fmt.Errorf("%d bytes after the message", len(r.b)))
	}
	return r.err
}

// msgKind returns the kind byte of a message, or an error.
func msgKind(b []byte) (byte, error) {
	if len(b) < 2 {
		return 0, errShort
	}
	if b[0] != wireFormat {
		return 0, fmt.Errorf("format %d, want %d", b[0], wireFormat)
	}
	return b[1], nil
}

func decodeDelta(b []byte) (peer.Name, wireRecord, error) {
	r := reader{b: b}
	r.header(kindDelta)
	owner := r.peer()
	rec := r.record()
	if err := r.end(); err != nil {
		return peer.None, wireRecord{}, fmt.Errorf("dns delta: %w", err)
	}
	return owner, rec, nil
}

func decodeDigests(b []byte) (peer.Name, []digest, error) {
	r := reader{b: b}
	r.header(kindDigest)
	sender := r.peer()
	n := r.count(digestLen)
	ds := make([]digest, 0, n)
	for i := 0; i < n && r.err == nil; i++ {
		ds = append(ds, digest{owner: r.peer(), floor: r.u64(), hash: r.u64()})
	}
	if err := r.end(); err != nil {
		return peer.None, nil, fmt.Errorf("dns digests: %w", err)
	}
	return sender, ds, nil
}

func decodePull(b []byte) ([]peer.Name, error) {
	r := reader{b: b}
	r.header(kindPull)
	n := r.count(6)
	owners := make([]peer.Name, 0, n)
	for i := 0; i < n && r.err == nil; i++ {
		owners = append(owners, r.peer())
	}
	if err := r.end(); err != nil {
		return nil, fmt.Errorf("dns pull: %w", err)
	}
	return owners, nil
}

func decodeSnapshots(b []byte) ([]snapshot, error) {
	r := reader{b: b}
	r.header(kindSnapshot)
	n := r.count(6 + 8 + 1)
	ss := make([]snapshot, 0, n)
	for i := 0; i < n && r.err == nil; i++ {
		s := snapshot{owner: r.peer(), floor: r.u64()}
		m := r.count(minRecordLen)
		s.recs = make([]wireRecord, 0, m)
		for j := 0; j < m && r.err == nil; j++ {
			s.recs = append(s.recs, r.record())
		}
		ss = append(ss, s)
	}
	if err := r.end(); err != nil {
		return nil, fmt.Errorf("dns snapshot: %w", err)
	}
	return ss, nil
}
