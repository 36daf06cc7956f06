package gossip

import (
	"bytes"
	"strings"
	"testing"
)

func TestMetaRoundTrip(t *testing.T) {
	tests := []meta{
		{protoMin: 1, protoMax: 1, dataPort: 6784, nickname: "host-a", version: "1.0.0"},
		{leaving: true, protoMin: 2, protoMax: 5, dataPort: 65535, nickname: "", version: ""},
		{protoMin: 1, protoMax: 255, dataPort: 1, nickname: strings.Repeat("n", MaxNicknameLen), version: strings.Repeat("v", MaxVersionLen)},
		{protoMin: 1, protoMax: 2, dataPort: 7000, nickname: "hôte-ünïcode", version: "v2"},
	}
	for _, want := range tests {
		b := appendMeta(nil, want)
		if len(b) > 512 {
			t.Fatalf("%+v: encoded %d bytes, over memberlist's 512", want, len(b))
		}
		got, err := decodeMeta(b)
		if err != nil {
			t.Fatalf("%+v: %v", want, err)
		}
		if got != want {
			t.Fatalf("got %+v, want %+v", got, want)
		}
	}
}

func TestMetaNewerFormatReadsPrefix(t *testing.T) {
	want := meta{protoMin: 1, protoMax: 3, dataPort: 6784, nickname: "a", version: "b"}
	b := appendMeta(nil, want)
	b[0] = 2
	b = append(b, "appended by format 2"...)
	got, err := decodeMeta(b)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}

func TestMetaDecodeErrors(t *testing.T) {
	good := appendMeta(nil, meta{protoMin: 1, protoMax: 1, dataPort: 6784, nickname: "a", version: "b"})
	mod := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	tests := []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, "empty"},
		{"version 0", mod(func(b []byte) []byte { b[0] = 0; return b }), "version 0"},
		{"short", good[:5], "shorter"},
		{"trailing", append(bytes.Clone(good), 1), "trailing"},
		{"truncated nickname", good[:7], "inside nickname"},
		{"truncated before version", good[:8], "before version"},
		{"proto 0", mod(func(b []byte) []byte { b[2] = 0; return b }), "protocol range"},
		{"proto inverted", mod(func(b []byte) []byte { b[2], b[3] = 3, 2; return b }), "protocol range"},
		{"data port 0", mod(func(b []byte) []byte { b[4], b[5] = 0, 0; return b }), "data port"},
		{"control char", mod(func(b []byte) []byte { b[7] = '\n'; return b }), "unprintable"},
		{"bad utf8", mod(func(b []byte) []byte { b[7] = 0xff; return b }), "UTF-8"},
		{"nickname too long", append([]byte{1, 0, 1, 1, 0x1a, 0x80, 200}, make([]byte, 201)...), "more than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decodeMeta(tt.in)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func FuzzDecodeMeta(f *testing.F) {
	f.Add(appendMeta(nil, meta{protoMin: 1, protoMax: 2, dataPort: 6784, nickname: "a", version: "1"}))
	f.Add([]byte{})
	f.Add([]byte{2, 0, 1, 1, 0, 1, 0, 0, 9, 9})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMeta(b)
		if err != nil {
			return
		}
		// Whatever decodes must re-encode to something that decodes the same.
		again, err := decodeMeta(appendMeta(nil, m))
		if err != nil || again != m {
			t.Fatalf("re-decode: %+v, %v; want %+v", again, err, m)
		}
	})
}
