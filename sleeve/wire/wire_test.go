package wire

import (
	"bytes"
	"errors"
	"testing"

	"weavemesh.dev/weave/peer"
)

func TestHeaderRoundTrip(t *testing.T) {
	h := Header{Version: Version, Type: TypeFrames, Flags: FlagFlood, TTL: 3, Src: 0x0a0b0c0d0e0f, Dst: peer.Broadcast}
	b := make([]byte, HeaderLen+3)
	PutHeader(b, &h)
	copy(b[HeaderLen:], "abc")
	var got Header
	body, err := ParseHeader(b, &got)
	if err != nil || got != h || string(body) != "abc" {
		t.Fatalf("got %+v %q %v", got, body, err)
	}
	if !DecTTL(b) || b[3] != 2 {
		t.Fatalf("DecTTL: ttl %d", b[3])
	}
	b[3] = 1
	if DecTTL(b) {
		t.Fatal("DecTTL at 1 must refuse")
	}
}

func TestParseHeaderErrors(t *testing.T) {
	good := make([]byte, HeaderLen)
	PutHeader(good, &Header{Version: Version, Type: TypeHeartbeat, TTL: 1, Src: 1, Dst: 2})
	mut := func(i int, v byte) []byte { b := bytes.Clone(good); b[i] = v; return b }
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"short", good[:HeaderLen-1], ErrShort},
		{"empty", nil, ErrShort},
		{"version", mut(0, 9), ErrVersion},
		{"version 1, chunked framing", mut(0, 1), ErrVersion},
		{"type", mut(1, 77), ErrType},
	}
	for _, tt := range tests {
		var h Header
		if _, err := ParseHeader(tt.in, &h); !errors.Is(err, tt.want) {
			t.Errorf("%s: err = %v, want %v", tt.name, err, tt.want)
		}
	}
}

func TestFrames(t *testing.T) {
	var body []byte
	frames := [][]byte{bytes.Repeat([]byte{1}, 60), bytes.Repeat([]byte{2}, 1400)}
	for _, f := range frames {
		var l [FrameLen]byte
		PutFrameLen(l[:], len(f))
		body = append(append(body, l[:]...), f...)
	}
	if !bytes.Equal(body[:3], []byte{0, 60, 1}) || !bytes.Equal(body[62:65], []byte{0x05, 0x78, 2}) {
		t.Fatalf("layout % x ... % x", body[:3], body[62:65])
	}
	var n int
	for rest := body; len(rest) > 0; n++ {
		data, r, err := NextFrame(rest)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(data, frames[n]) {
			t.Fatalf("frame %d differs", n)
		}
		rest = r
	}
	if n != 2 {
		t.Fatalf("got %d frames", n)
	}
	bad := [][]byte{
		body[:1],                          // short length
		body[:FrameLen+10],                // data cut
		append([]byte{0, 0}, body[2:]...), // zero length
	}
	for i, b := range bad {
		if _, _, err := NextFrame(b); !errors.Is(err, ErrFrame) {
			t.Errorf("bad %d: err = %v", i, err)
		}
	}
}

func TestHeartbeat(t *testing.T) {
	hb := Heartbeat{SentNanos: 123456789, Seq: 7, Flags: HBHearYou | HBProbe, Size: 1472, Echo: 1400}
	b := bytes.Repeat([]byte{0xff}, HeartbeatLen+8)
	PutHeartbeat(b, &hb)
	if !bytes.Equal(b[18:], make([]byte, len(b)-18)) {
		t.Fatal("padding not zeroed")
	}
	var got Heartbeat
	if err := ParseHeartbeat(b, &got); err != nil || got != hb {
		t.Fatalf("got %+v, %v", got, err)
	}
	if err := ParseHeartbeat(b[:HeartbeatLen-1], &got); !errors.Is(err, ErrShort) {
		t.Fatalf("short heartbeat: %v", err)
	}
}

func FuzzDatagram(f *testing.F) {
	seed := make([]byte, HeaderLen+FrameLen+4)
	PutHeader(seed, &Header{Version: Version, Type: TypeFrames, TTL: 2, Src: 1, Dst: 2})
	PutFrameLen(seed[HeaderLen:], 4)
	f.Add(seed)
	hb := make([]byte, HeaderLen+HeartbeatLen)
	PutHeader(hb, &Header{Version: Version, Type: TypeHeartbeat, TTL: 1, Src: 1, Dst: 2})
	f.Add(hb)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		orig := bytes.Clone(b)
		var h Header
		body, err := ParseHeader(b, &h)
		if err != nil {
			return
		}
		switch h.Type {
		case TypeFrames:
			for len(body) > 0 {
				data, rest, err := NextFrame(body)
				if err != nil {
					break
				}
				if len(data) == 0 || len(data)+FrameLen+len(rest) != len(body) {
					t.Fatalf("frame accounting: data %d rest %d body %d", len(data), len(rest), len(body))
				}
				body = rest
			}
		case TypeHeartbeat, TypeHeartbeatR:
			var hb Heartbeat
			_ = ParseHeartbeat(body, &hb)
		}
		if !bytes.Equal(b, orig) {
			t.Fatal("decoder modified its input")
		}
	})
}
