package ipam

import (
	"encoding/binary"
	"net/netip"
	"path/filepath"
	"testing"

	"weavemesh.dev/weave/internal/golden"
	"weavemesh.dev/weave/peer"
)

// TestWireGolden pins every message of the "ipam" gossip channel, and the
// ring as the data file stores it, to fixed bytes in testdata/wire.golden
// (docs/protocol.md), and checks that the golden bytes decode.
func TestWireGolden(t *testing.T) {
	rng := netip.MustParsePrefix("10.32.0.0/24")
	ring, err := NewRing(rng, []peer.Name{1, 2})
	if err != nil {
		t.Fatal(err)
	}
	ring.Spans[1].Held = 1_700_000_060
	ring.Removed[3] = 1
	ring.Reclaimed[3] = 1
	part := partialRing(ring, []Span{{Start: 5, End: 6, Owner: 2, Version: 3}})
	waiting := entry{Seq: 42, Flags: flagWaiting, Paxos: claims{Promise: proposalID{2, 1}, Accepted: proposalID{2, 1}, Value: encodeNames([]peer.Name{1, 2})}}
	holding := entry{Seq: 43, RingID: ring.ID, Allocated: 7}
	vs := []golden.Vector{
		{Name: "ring", Bytes: AppendRing(nil, ring)},
		{Name: "delta-ring", Bytes: append([]byte{deltaRing}, AppendRing(nil, part)...)},
		{Name: "delta-entry-waiting", Bytes: appendEntry([]byte{deltaEntry}, 1, waiting)},
		{Name: "delta-entry-holding", Bytes: appendEntry([]byte{deltaEntry}, 2, holding)},
		{Name: "state", Bytes: appendState(nil, 2, ring, map[peer.Name]entry{2: holding})},
		{Name: "state-no-ring", Bytes: appendState(nil, 1, nil, map[peer.Name]entry{1: waiting})},
		{Name: "donate-request", Bytes: appendDonateRequest(nil, ring.ID, netip.MustParsePrefix("10.32.0.0/25"))},
		{Name: "donate-grant", Bytes: appendDonateReply(nil, ring.ID, part, 0)},
		{Name: "donate-refused-full", Bytes: appendDonateReply(nil, ring.ID, nil, refusedFull)},
		{Name: "donate-refused-syncing", Bytes: appendDonateReply(nil, ring.ID, nil, refusedSyncing)},
		{Name: "state-request", Bytes: appendMessageHeader(nil, msgStateRequest, ring.ID)},
		{Name: "claim", Bytes: appendClaim(nil, ring.ID, []uint32{ring.Base() + 5, ring.Base() + 9})},
		{Name: "claim-reply", Bytes: appendClaimReply(nil, ring.ID, []claimAnswer{{ring.Base() + 5, claimGranted}, {ring.Base() + 9, claimConflict}}, part)},
	}
	path := filepath.Join("testdata", "wire.golden")
	golden.Check(t, path, "Messages of the \"ipam\" gossip channel and the stored ring (docs/protocol.md).", vs)
	want := golden.Load(t, path)
	if r, rest, err := DecodeRing(want["ring"], true); err != nil || len(rest) != 0 || !ringsEqual(r, ring) || r.Spans[1].Held != ring.Spans[1].Held {
		t.Errorf("golden ring decodes as %+v, %v", r, err)
	}
	if st, err := decodeState(want["state"]); err != nil || st.entries[2] != holding || st.ring == nil {
		t.Errorf("golden state decodes as %+v, %v", st, err)
	}
	if _, e, _, err := decodeEntry(want["delta-entry-waiting"][1:]); err != nil || e != waiting {
		t.Errorf("golden entry decodes as %+v, %v", e, err)
	}
	for _, name := range []string{"donate-request", "donate-grant", "donate-refused-full", "donate-refused-syncing", "state-request", "claim", "claim-reply"} {
		if _, err := decodeMessage(want[name]); err != nil {
			t.Errorf("golden %s does not decode: %v", name, err)
		}
	}
}

// TestRingFormat1StillRead: data files written before the held field
// existed still load.
func TestRingFormat1StillRead(t *testing.T) {
	ring, _ := NewRing(testRange, names(1, 2))
	b := []byte{ringMagic, 1}
	b = binary.BigEndian.AppendUint64(b, ring.ID)
	a := ring.Range.Addr().As4()
	b = append(append(b, a[:]...), byte(ring.Range.Bits()))
	b = binary.AppendUvarint(b, uint64(len(ring.Spans)))
	for _, sp := range ring.Spans {
		b = binary.AppendUvarint(b, uint64(sp.Start))
		b = binary.AppendUvarint(b, uint64(sp.Size()))
		var nb [6]byte
		sp.Owner.PutBytes(nb[:])
		b = append(b, nb[:]...)
		b = binary.AppendUvarint(b, sp.Version)
	}
	b = append(b, 0, 0, 0) // no removed, revived, reclaimed
	got, tail, err := DecodeRing(b, true)
	if err != nil || len(tail) != 0 || !ringsEqual(got, ring) {
		t.Fatalf("format 1 ring: %v, %v", got, err)
	}
}
