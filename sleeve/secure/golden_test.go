package secure

import (
	"bytes"
	"path/filepath"
	"testing"
	"testing/cryptotest"

	"weavemesh.dev/weave/internal/golden"
	"weavemesh.dev/weave/sleeve/wire"
)

// goldenExchange runs a handshake between peers 1 and 2 (psk 7, a fixed
// clock, randomness from a fixed seed, the initiator preferring c) and a
// sealed datagram each way, returning every message as sent.
func goldenExchange(t *testing.T, c Cipher) (a, b *Manager, init, resp, sealedAB, sealedBA, inner []byte) {
	t.Helper()
	cryptotest.SetGlobalRandom(t, 15)
	a, b, _ = pair(t, 7, 7)
	a.cfg.Cipher = c
	init, err := a.Initiate(make([]byte, InitLen), 2, false)
	if err != nil {
		t.Fatal(err)
	}
	resp, err = b.HandleInit(make([]byte, RespLen), init, 1, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.HandleResp(resp, 2); err != nil {
		t.Fatal(err)
	}
	inner = make([]byte, wire.HeaderLen+wire.HeartbeatLen)
	wire.PutHeader(inner, &wire.Header{Version: wire.Version, Type: wire.TypeHeartbeat, TTL: 1, Src: 1, Dst: 2})
	wire.PutHeartbeat(inner[wire.HeaderLen:], &wire.Heartbeat{SentNanos: 0x0102030405060708, Seq: 1, Size: wire.HeaderLen + wire.HeartbeatLen + Overhead})
	sealedAB = send(t, a, 2, string(inner))
	if _, err := open(b, sealedAB); err != nil {
		t.Fatal(err) // b now sends on the new session too
	}
	sealedBA = send(t, b, 1, string(inner))
	return a, b, init, resp, sealedAB, sealedBA, inner
}

// TestWireGolden pins the encrypted mesh's datagrams (handshake initiation
// and response, the sealed envelope; docs/security.md) to the bytes in
// testdata/wire.golden, and checks that fresh managers accept the golden
// bytes: the response completes a handshake, the sealed datagrams open to
// the clear datagram inside.
//
// The vectors depend on how crypto/ecdh and crypto/rand draw from the
// seeded source (testing/cryptotest). Should a Go release change that,
// the bytes change with no change to the format: check that only the key
// material, indices and ciphertext moved, and run with -update.
func TestWireGolden(t *testing.T) {
	for _, tc := range []struct {
		c    Cipher
		file string
	}{{AESGCM, "wire.golden"}, {ChaCha20Poly1305, "wire-chacha.golden"}} {
		t.Run(tc.c.String(), func(t *testing.T) { checkWireGolden(t, tc.c, tc.file) })
	}
}

func checkWireGolden(t *testing.T, c Cipher, file string) {
	_, _, init, resp, ab, ba, inner := goldenExchange(t, c)
	path := filepath.Join("testdata", file)
	golden.Check(t, path, "Datagrams of an encrypted mesh: handshake initiation (type 17) and response (18),\n"+
		"sealed envelopes (16) each way around a heartbeat (docs/security.md), the initiator\n"+
		"listing "+c.String()+" first. Peers 1 and 2, PSK 07 00..., clock at unix 1800000000,\n"+
		"cryptotest seed 15.", []golden.Vector{
		{Name: "handshake1", Bytes: init},
		{Name: "handshake2", Bytes: resp},
		{Name: "sealed-1-to-2", Bytes: ab},
		{Name: "sealed-2-to-1", Bytes: ba},
	})
	acceptGolden(t, golden.Load(t, path), c, c, inner)
}

// TestOldPeerGolden: the messages of a peer that names no cipher (flags 0,
// fixed in testdata/wire-aes-only.golden) are accepted both ways, and the
// session is AES-256-GCM: its initiation by a responder, its response by
// an initiator that offered ChaCha20-Poly1305 first.
func TestOldPeerGolden(t *testing.T) {
	want := golden.Load(t, filepath.Join("testdata", "wire-aes-only.golden"))
	inner := make([]byte, wire.HeaderLen+wire.HeartbeatLen)
	wire.PutHeader(inner, &wire.Header{Version: wire.Version, Type: wire.TypeHeartbeat, TTL: 1, Src: 1, Dst: 2})
	wire.PutHeartbeat(inner[wire.HeaderLen:], &wire.Heartbeat{SentNanos: 0x0102030405060708, Seq: 1, Size: wire.HeaderLen + wire.HeartbeatLen + Overhead})
	acceptGolden(t, want, ChaCha20Poly1305, AESGCM, inner)
}

// acceptGolden checks that fresh managers accept golden messages: with the
// same seed, a's initiation (preferring pref) has the golden key and
// index, so b must take the golden initiation, a the golden response, and
// both open the golden sealed datagrams, on sessions of cipher c.
func acceptGolden(t *testing.T, want map[string][]byte, pref, c Cipher, inner []byte) {
	t.Helper()
	for name, n := range map[string]int{"handshake1": InitLen, "handshake2": RespLen} {
		if len(want[name]) != n {
			t.Errorf("%s: %d bytes, want %d", name, len(want[name]), n)
		}
	}
	// Fresh managers, the same seed: a's initiation is the golden one, so
	// b's golden response and the golden sealed datagrams must be accepted.
	cryptotest.SetGlobalRandom(t, 15)
	a, b, _ := pair(t, 7, 7)
	a.cfg.Cipher = pref
	if _, err := a.Initiate(make([]byte, InitLen), 2, false); err != nil {
		t.Fatal(err)
	}
	if _, err := b.HandleInit(make([]byte, RespLen), want["handshake1"], 1, false); err != nil {
		t.Fatalf("golden handshake1 refused: %v", err)
	}
	if err := a.HandleResp(want["handshake2"], 2); err != nil {
		t.Fatalf("golden handshake2 refused: %v", err)
	}
	if got := a.Current(2).Cipher(); got != c {
		t.Errorf("session cipher %v, want %v", got, c)
	}
	for _, v := range []struct {
		name string
		to   *Manager
	}{{"sealed-1-to-2", b}, {"sealed-2-to-1", a}} {
		got, err := open(v.to, want[v.name])
		if err != nil || !bytes.Equal([]byte(got), inner) {
			t.Errorf("%s opens as %x, %v; want %x", v.name, got, err, inner)
		}
	}
	if s := b.Current(1); s == nil || s.Cipher() != c {
		t.Errorf("responder's session %v, want cipher %v", s, c)
	}
}
