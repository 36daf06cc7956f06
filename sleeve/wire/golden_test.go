package wire

import (
	"bytes"
	"path/filepath"
	"slices"
	"testing"

	"weavemesh.dev/weave/internal/golden"
	"weavemesh.dev/weave/peer"
)

// goldenMsg is one sleeve datagram, as its fields.
type goldenMsg struct {
	name   string
	h      Header
	frames [][]byte   // TypeFrames: the frame data of each record
	hb     *Heartbeat // TypeHeartbeat(R)
	size   int        // heartbeat datagram length, padding included
}

func (m *goldenMsg) encode() []byte {
	b := make([]byte, HeaderLen)
	PutHeader(b, &m.h)
	for _, f := range m.frames {
		b = append(b, 0, 0)
		PutFrameLen(b[len(b)-FrameLen:], len(f))
		b = append(b, f...)
	}
	if m.hb != nil {
		b = append(b, make([]byte, max(m.size-HeaderLen, HeartbeatLen))...)
		PutHeartbeat(b[HeaderLen:], m.hb)
	}
	return b
}

// frame is frame data as the TAP hands it over: a zero virtio_net_hdr,
// then an Ethernet frame.
func frame(dst, src byte, etherType uint16, payload string) []byte {
	f := make([]byte, VnetHdrLen, VnetHdrLen+14+len(payload))
	f = append(f, 0x02, 0, 0, 0, 0, dst, 0x02, 0, 0, 0, 0, src, byte(etherType>>8), byte(etherType))
	return append(f, payload...)
}

// TestWireGolden pins the sleeve's clear datagrams (header, frame records,
// heartbeats; docs/protocol.md) to the bytes in testdata/wire.golden, and
// decodes each golden vector back into the fields that made it.
func TestWireGolden(t *testing.T) {
	const a, b = peer.Name(0x0a0000000001), peer.Name(0x0a0000000002)
	bcast := frame(0xff, 1, 0x0806, "who-has")
	copy(bcast[VnetHdrLen:], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	msgs := []goldenMsg{
		{name: "frames-one", h: Header{Version: Version, Type: TypeFrames, TTL: DefaultTTL, Src: a, Dst: b},
			frames: [][]byte{frame(2, 1, 0x0800, "hello")}},
		{name: "frames-two", h: Header{Version: Version, Type: TypeFrames, TTL: DefaultTTL, Src: a, Dst: b},
			frames: [][]byte{frame(2, 1, 0x0800, "first"), frame(2, 1, 0x86dd, "second")}},
		{name: "frames-flooded", h: Header{Version: Version, Type: TypeFrames, Flags: FlagFlood, TTL: DefaultTTL - 1, Src: a, Dst: peer.Broadcast},
			frames: [][]byte{bcast}},
		{name: "heartbeat", h: Header{Version: Version, Type: TypeHeartbeat, TTL: 1, Src: a, Dst: b},
			hb: &Heartbeat{SentNanos: 0x0102030405060708, Seq: 0x090a0b0c, Flags: HBHearYou, Size: HeaderLen + HeartbeatLen}, size: HeaderLen + HeartbeatLen},
		{name: "heartbeat-probe", h: Header{Version: Version, Type: TypeHeartbeat, TTL: 1, Src: a, Dst: b},
			hb: &Heartbeat{SentNanos: 0x0102030405060708, Seq: 7, Flags: HBHearYou | HBProbe, Size: 48}, size: 48},
		{name: "heartbeat-reply", h: Header{Version: Version, Type: TypeHeartbeatR, TTL: 1, Src: b, Dst: a},
			hb: &Heartbeat{SentNanos: 0x0102030405060708, Seq: 7, Flags: HBHearYou | HBProbe, Size: 48, Echo: 48}, size: HeaderLen + HeartbeatLen},
	}
	var vs []golden.Vector
	for i := range msgs {
		vs = append(vs, golden.Vector{Name: msgs[i].name, Bytes: msgs[i].encode()})
	}
	path := filepath.Join("testdata", "wire.golden")
	golden.Check(t, path, "Clear sleeve datagrams: the header, frame records and heartbeats (docs/protocol.md).", vs)

	want := golden.Load(t, path)
	for _, m := range msgs {
		raw, ok := want[m.name]
		if !ok {
			continue // Check reported it
		}
		var h Header
		body, err := ParseHeader(raw, &h)
		if err != nil || h != m.h {
			t.Errorf("%s: header decodes as %+v, %v; want %+v", m.name, h, err, m.h)
			continue
		}
		if m.hb != nil {
			var hb Heartbeat
			if err := ParseHeartbeat(body, &hb); err != nil || hb != *m.hb || len(raw) != m.size {
				t.Errorf("%s: heartbeat decodes as %+v (%d bytes), %v; want %+v (%d bytes)", m.name, hb, len(raw), err, *m.hb, m.size)
			}
			if pad := body[HeartbeatLen:]; !bytes.Equal(pad, make([]byte, len(pad))) {
				t.Errorf("%s: padding not zero: %x", m.name, pad)
			}
			continue
		}
		var got [][]byte
		for len(body) > 0 {
			var f []byte
			if f, body, err = NextFrame(body); err != nil {
				t.Fatalf("%s: %v", m.name, err)
			}
			got = append(got, f)
		}
		if !slices.EqualFunc(got, m.frames, bytes.Equal) {
			t.Errorf("%s: frames decode as %x; want %x", m.name, got, m.frames)
		}
	}
}
