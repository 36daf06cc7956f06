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
		{protoMin: 2, protoMax: 2, dataPort: 6784, nickname: "fast", version: "v3",
			fastdp: Fastdp{MAC: [6]byte{0x0e, 1, 2, 3, 4, 5}, Port: 6786, VNI: 1<<24 - 1}},
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
	want := meta{protoMin: 1, protoMax: 3, dataPort: 6784, nickname: "a", version: "b",
		fastdp: Fastdp{MAC: [6]byte{2, 0, 0, 0, 0, 1}, Port: 6786, VNI: 5561878}}
	b := appendMeta(nil, want)
	b[0] = 3
	b = append(b, "appended by format 3"...)
	got, err := decodeMeta(b)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}

// A peer without fastdp writes format 1, byte for byte what it wrote before
// format 2 existed; one with fastdp writes format 2, whose version-1 prefix
// is the same, so an older decoder (which ignores what follows in newer
// formats) reads the same peer.
func TestMetaFastdpFormat(t *testing.T) {
	plain := meta{protoMin: 1, protoMax: 2, dataPort: 6784, nickname: "a", version: "b"}
	fast := plain
	fast.fastdp = Fastdp{MAC: [6]byte{0x0e, 1, 2, 3, 4, 5}, Port: 0x1a82, VNI: 0x54de16}
	p, f := appendMeta(nil, plain), appendMeta(nil, fast)
	if p[0] != 1 || f[0] != 2 {
		t.Fatalf("formats %d and %d, want 1 and 2", p[0], f[0])
	}
	if !bytes.Equal(f[1:len(p)], p[1:]) {
		t.Errorf("format 2 prefix %x differs from format 1 %x", f[:len(p)], p)
	}
	if want := []byte{0x0e, 1, 2, 3, 4, 5, 0x1a, 0x82, 0x54, 0xde, 0x16}; !bytes.Equal(f[len(p):], want) {
		t.Errorf("fastdp fields %x, want %x", f[len(p):], want)
	}
	for _, tc := range []struct {
		name string
		in   []byte
		want string
	}{
		{"truncated", f[:len(f)-1], "truncated inside the fastdp fields"},
		{"trailing", append(bytes.Clone(f), 0), "trailing"},
		{"port 0", func() []byte { b := bytes.Clone(f); b[len(p)+6], b[len(p)+7] = 0, 0; return b }(), "fastdp port is 0"},
	} {
		if _, err := decodeMeta(tc.in); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.want)
		}
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
