package secure

import (
	"testing"
)

func TestPreferredFor(t *testing.T) {
	for _, tc := range []struct {
		x86, arm bool
		want     Cipher
	}{
		{true, false, AESGCM},
		{false, true, AESGCM},
		{false, false, ChaCha20Poly1305},
	} {
		if got := preferredFor(tc.x86, tc.arm); got != tc.want {
			t.Errorf("preferredFor(x86 AES %v, arm64 AES %v) = %v, want %v", tc.x86, tc.arm, got, tc.want)
		}
	}
}

func TestParseCipher(t *testing.T) {
	for _, tc := range []struct {
		name string
		want Cipher
		err  bool
	}{
		{"", PreferredCipher(), false},
		{"auto", PreferredCipher(), false},
		{"aes-256-gcm", AESGCM, false},
		{"chacha20-poly1305", ChaCha20Poly1305, false},
		{"rc4", 0, true},
	} {
		got, err := ParseCipher(tc.name)
		if (err != nil) != tc.err || (!tc.err && got != tc.want) {
			t.Errorf("ParseCipher(%q) = %v, %v; want %v, error %v", tc.name, got, err, tc.want, tc.err)
		}
	}
}

// The session's cipher is the initiator's first choice, whatever the
// responder prefers, and both ends seal and open with it.
func TestCipherAgreement(t *testing.T) {
	for _, tc := range []struct {
		init, resp Cipher
	}{
		{AESGCM, AESGCM}, {AESGCM, ChaCha20Poly1305},
		{ChaCha20Poly1305, AESGCM}, {ChaCha20Poly1305, ChaCha20Poly1305},
	} {
		t.Run(tc.init.String()+"-"+tc.resp.String(), func(t *testing.T) {
			a, b, _ := pair(t, 7, 7)
			a.cfg.Cipher, b.cfg.Cipher = tc.init, tc.resp
			if err := handshake(t, a, b, 1, 2, false, false); err != nil {
				t.Fatal(err)
			}
			if got := a.Current(2).Cipher(); got != tc.init {
				t.Fatalf("initiator's session %v, want %v", got, tc.init)
			}
			if got, err := open(b, send(t, a, 2, "hello")); err != nil || got != "hello" {
				t.Fatalf("a to b: %q, %v", got, err)
			}
			if got := b.Current(1).Cipher(); got != tc.init {
				t.Fatalf("responder's session %v, want %v", got, tc.init)
			}
			if got, err := open(a, send(t, b, 1, "back")); err != nil || got != "back" {
				t.Fatalf("b to a: %q, %v", got, err)
			}
		})
	}
}

func TestCipherFlags(t *testing.T) {
	for _, tc := range []struct {
		name     string
		init     byte
		want     Cipher
		respBits byte
	}{
		{"peer naming no cipher", 0, AESGCM, 0},
		{"trust bit only", flagTrust, AESGCM, 0},
		{"both, AES first", offerFlags(AESGCM), AESGCM, 0},
		{"both, ChaCha first", offerFlags(ChaCha20Poly1305), ChaCha20Poly1305, flagChaCha},
		{"first bit without the offer", flagChaChaFirst, AESGCM, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := choose(tc.init)
			if c != tc.want || respFlags(c) != tc.respBits {
				t.Fatalf("choose(%#x) = %v (response bits %#x), want %v (%#x)", tc.init, c, respFlags(c), tc.want, tc.respBits)
			}
			got, err := chosen(respFlags(c), tc.init)
			if err != nil || got != c {
				t.Fatalf("chosen = %v, %v; want %v", got, err, c)
			}
		})
	}
	if _, err := chosen(flagChaCha, 0); err == nil {
		t.Error("a response choosing a cipher that was not offered was accepted")
	}
}
