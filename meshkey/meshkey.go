// Package meshkey owns what is derived from the mesh password: the key
// that encrypts gossip and the pre-shared key bound into every data-plane
// handshake. Both come from one slow derivation, so a captured exchange
// costs an attacker a full scrypt per password guess.
package meshkey

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"unicode/utf8"

	"golang.org/x/crypto/hkdf"
	"golang.org/x/crypto/scrypt"
)

// Salt and cost of the derivation. They are fixed so that every peer
// derives the same keys from the same password; changing them is a
// protocol change.
const (
	Salt    = "weave mesh password v1"
	ScryptN = 1 << 15
	ScryptR = 8
	ScryptP = 1
)

// MinLength is the length below which a password draws a warning.
const MinLength = 12

// Keys are the secrets of one mesh.
type Keys struct {
	Gossip [32]byte // memberlist's AES-256-GCM key
	PSK    [32]byte // pre-shared key of the sleeve handshake
}

// Derive computes the keys: master = scrypt(password, Salt), then
// HKDF-SHA256-Expand(master) with a label per key.
func Derive(password []byte) (Keys, error) {
	if len(password) == 0 {
		return Keys{}, errors.New("empty password")
	}
	master, err := scrypt.Key(password, []byte(Salt), ScryptN, ScryptR, ScryptP, 32)
	if err != nil {
		return Keys{}, fmt.Errorf("derive keys from password: %w", err)
	}
	var k Keys
	for _, x := range []struct {
		label string
		out   *[32]byte
	}{{"weave gossip key", &k.Gossip}, {"weave sleeve psk", &k.PSK}} {
		if _, err := io.ReadFull(hkdf.Expand(sha256.New, master, []byte(x.label)), x.out[:]); err != nil {
			return Keys{}, fmt.Errorf("derive %s: %w", x.label, err)
		}
	}
	return k, nil
}

// Weak returns why a password is weak, or "" when it is not.
func Weak(password []byte) string {
	if n := utf8.RuneCount(password); n < MinLength {
		return fmt.Sprintf("the password has %d characters; use at least %d (a long random one is best)", n, MinLength)
	}
	return ""
}

// ReadFile reads a password file: the whole file, less one trailing
// newline, so `echo secret > file` works.
func ReadFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read password file: %w", err)
	}
	s := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	if s == "" {
		return nil, fmt.Errorf("password file %s is empty", path)
	}
	return []byte(s), nil
}
