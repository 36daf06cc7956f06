package secure

import (
	"crypto/aes"
	"crypto/cipher"
	"fmt"

	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/sys/cpu"
)

// Cipher is the AEAD that seals a session's datagrams. Both have a 16-byte
// tag and a 12-byte nonce, so the envelope is the same for either.
type Cipher uint8

const (
	// AESGCM is AES-256-GCM, the fastest where the CPU has AES and
	// carry-less multiply instructions, and what a peer that names no
	// cipher in its handshake uses.
	AESGCM Cipher = iota
	// ChaCha20Poly1305 is ChaCha20-Poly1305, the fastest in software.
	ChaCha20Poly1305
)

// Cipher names, as --sleeve-cipher and the status take them.
const (
	CipherAuto             = "auto"
	CipherNameAESGCM       = "aes-256-gcm"
	CipherNameChaCha20Poly = "chacha20-poly1305"
)

func (c Cipher) String() string {
	if c == ChaCha20Poly1305 {
		return CipherNameChaCha20Poly
	}
	return CipherNameAESGCM
}

// ParseCipher maps a name to the cipher to prefer: CipherAuto (or "")
// picks by the CPU (PreferredCipher).
func ParseCipher(name string) (Cipher, error) {
	switch name {
	case "", CipherAuto:
		return PreferredCipher(), nil
	case CipherNameAESGCM:
		return AESGCM, nil
	case CipherNameChaCha20Poly:
		return ChaCha20Poly1305, nil
	}
	return 0, fmt.Errorf("secure: unknown cipher %q; want %s, %s or %s", name, CipherAuto, CipherNameAESGCM, CipherNameChaCha20Poly)
}

// PreferredCipher is AES-256-GCM where the CPU runs it in hardware (AES
// and PCLMULQDQ on x86, AES and PMULL on arm64), else ChaCha20-Poly1305,
// which is faster than AES-GCM in software.
func PreferredCipher() Cipher {
	return preferredFor(cpu.X86.HasAES && cpu.X86.HasPCLMULQDQ, cpu.ARM64.HasAES && cpu.ARM64.HasPMULL)
}

func preferredFor(x86AES, armAES bool) Cipher {
	if x86AES || armAES {
		return AESGCM
	}
	return ChaCha20Poly1305
}

// Handshake flag bits that carry the cipher (docs/security.md). In an
// initiation: the initiator offers ChaCha20-Poly1305 besides AES-256-GCM
// (flagChaCha), and lists it first (flagChaChaFirst). In a response: the
// session uses ChaCha20-Poly1305 (flagChaCha). A peer that sets neither
// knows only AES-256-GCM.
const (
	flagChaCha      = 0x02
	flagChaChaFirst = 0x04
)

// offerFlags are an initiator's cipher bits: both ciphers, pref first.
func offerFlags(pref Cipher) byte {
	f := byte(flagChaCha)
	if pref == ChaCha20Poly1305 {
		f |= flagChaChaFirst
	}
	return f
}

// choose is the responder's pick from an initiation's flags: the first of
// the initiator's list; AES-256-GCM when it lists only that.
func choose(initFlags byte) Cipher {
	if initFlags&flagChaCha != 0 && initFlags&flagChaChaFirst != 0 {
		return ChaCha20Poly1305
	}
	return AESGCM
}

// chosen reads the cipher from a response's flags, checking it against
// what the initiation offered.
func chosen(respFlags, offered byte) (Cipher, error) {
	if respFlags&flagChaCha == 0 {
		return AESGCM, nil
	}
	if offered&flagChaCha == 0 {
		return 0, fmt.Errorf("%w: response chose ChaCha20-Poly1305, which was not offered", ErrHandshake)
	}
	return ChaCha20Poly1305, nil
}

// respFlags are a responder's cipher bits for c.
func respFlags(c Cipher) byte {
	if c == ChaCha20Poly1305 {
		return flagChaCha
	}
	return 0
}

// newAEAD returns the AEAD c with key (32 bytes).
func newAEAD(c Cipher, key []byte) cipher.AEAD {
	if c == ChaCha20Poly1305 {
		a, err := chacha20poly1305.New(key)
		if err != nil {
			panic(fmt.Sprintf("secure: chacha20poly1305: %v", err))
		}
		return a
	}
	b, err := aes.NewCipher(key)
	if err != nil {
		panic(fmt.Sprintf("secure: aes: %v", err))
	}
	g, err := cipher.NewGCM(b)
	if err != nil {
		panic(fmt.Sprintf("secure: gcm: %v", err))
	}
	return g
}
