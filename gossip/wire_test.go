package gossip

import (
	"bytes"
	"strings"
	"testing"

	"weavemesh.dev/weave/peer"
)

func TestFrameRoundTrip(t *testing.T) {
	from := peer.Name(0x0a0b0c0d0e0f)
	tests := []struct {
		name string
		in   []byte
		want frame
	}{
		{"delta", appendDelta(nil, "topology", from, 1<<60+5, "k1", []byte("payload")),
			frame{kind: kindDelta, channel: []byte("topology"), from: from, seq: 1<<60 + 5, key: []byte("k1"), payload: []byte("payload")}},
		{"delta no key, no payload", appendDelta(nil, "c", from, 0, "", nil),
			frame{kind: kindDelta, channel: []byte("c"), from: from, key: []byte{}, payload: []byte{}}},
		{"unicast", appendUnicast(nil, "ipam", from, []byte{1, 2, 3}),
			frame{kind: kindUnicast, channel: []byte("ipam"), from: from, payload: []byte{1, 2, 3}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeFrame(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if got.kind != tt.want.kind || !bytes.Equal(got.channel, tt.want.channel) ||
				!bytes.Equal(got.key, tt.want.key) || got.from != tt.want.from || got.seq != tt.want.seq ||
				!bytes.Equal(got.payload, tt.want.payload) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestFrameDecodeErrors(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, "empty"},
		{"unknown kind", []byte{9, 1, 'c'}, "unknown message kind 9"},
		{"no channel", []byte{kindDelta}, "before channel"},
		{"truncated channel", []byte{kindDelta, 5, 'a'}, "inside channel"},
		{"empty channel", []byte{kindDelta, 0, 0}, "channel name length 0"},
		{"long channel", append([]byte{kindDelta, 33}, make([]byte, 34)...), "channel name length 33"},
		{"no origin", []byte{kindDelta, 1, 'c'}, "sender"},
		{"short seq", []byte{kindDelta, 1, 'c', 2, 0, 0, 0, 0, 1, 0, 0}, "sequence"},
		{"no key", []byte{kindDelta, 1, 'c', 2, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0}, "before key"},
		{"truncated key", []byte{kindDelta, 1, 'c', 2, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 3, 'k'}, "inside key"},
		{"short sender", []byte{kindUnicast, 1, 'c', 1, 2, 3}, "sender"},
		{"reserved sender", []byte{kindUnicast, 1, 'c', 0, 0, 0, 0, 0, 0}, "reserved"},
		{"broadcast origin", []byte{kindDelta, 1, 'c', 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0}, "reserved"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decodeFrame(tt.in)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestFrameDecodeDoesNotAllocate(t *testing.T) {
	b := appendDelta(nil, "topology", 0x020000000001, 42, "key", make([]byte, 500))
	if n := testing.AllocsPerRun(100, func() { _, _ = decodeFrame(b) }); n != 0 {
		t.Fatalf("decodeFrame allocates %v times", n)
	}
}

func TestPushPullRoundTrip(t *testing.T) {
	tests := [][]stateEntry{
		{},
		{{channel: []byte("a"), state: []byte{}}},
		{{channel: []byte("topology"), state: bytes.Repeat([]byte{7}, 70000)}, {channel: []byte("ipam"), state: []byte("x")}},
	}
	for _, want := range tests {
		got, err := decodePushPull(appendPushPull(nil, want))
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Fatalf("got %d entries, want %d", len(got), len(want))
		}
		for i := range got {
			if !bytes.Equal(got[i].channel, want[i].channel) || !bytes.Equal(got[i].state, want[i].state) {
				t.Fatalf("entry %d differs", i)
			}
		}
	}
	if got, err := decodePushPull(nil); err != nil || got != nil {
		t.Fatalf("empty push-pull: %v, %v", got, err)
	}
}

func TestPushPullDecodeErrors(t *testing.T) {
	good := appendPushPull(nil, []stateEntry{{channel: []byte("abc"), state: []byte("state")}})
	tests := []struct {
		name string
		in   []byte
		want string
	}{
		{"newer format", []byte{2, 0}, "format 2"},
		{"no count", []byte{1}, "count"},
		{"count too large", []byte{1, 100, 1, 'a', 0}, "claims 100 entries"},
		{"truncated state", good[:len(good)-1], "truncated"},
		{"trailing", append(bytes.Clone(good), 0), "trailing"},
		{"empty channel", []byte{1, 1, 0, 0, 0}, "channel name length 0"},
		{"bad state length", []byte{1, 1, 1, 'a', 0xff}, "state length"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decodePushPull(tt.in)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func FuzzDecodeFrame(f *testing.F) {
	f.Add(appendDelta(nil, "topology", 0x020000000001, 7, "k", []byte("v")))
	f.Add(appendUnicast(nil, "c", 0x020000000001, []byte("hello")))
	f.Add([]byte{kindDelta, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := decodeFrame(b)
		if err != nil {
			return
		}
		var again []byte
		switch fr.kind {
		case kindDelta:
			again = appendDelta(nil, string(fr.channel), fr.from, fr.seq, string(fr.key), fr.payload)
		case kindUnicast:
			again = appendUnicast(nil, string(fr.channel), fr.from, fr.payload)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("re-encoding %x gives %x", b, again)
		}
	})
}

func FuzzDecodePushPull(f *testing.F) {
	f.Add(appendPushPull(nil, []stateEntry{{channel: []byte("a"), state: []byte("s")}, {channel: []byte("b")}}))
	f.Add([]byte{1, 0})
	f.Add([]byte{1, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		entries, err := decodePushPull(b)
		if err != nil || len(b) == 0 {
			return
		}
		again := appendPushPull(nil, entries)
		got, err := decodePushPull(again)
		if err != nil || len(got) != len(entries) {
			t.Fatalf("re-decode: %d entries, %v; want %d", len(got), err, len(entries))
		}
	})
}
