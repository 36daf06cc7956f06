// Package peer owns the identity of a weave peer: its 48-bit name, written
// like a MAC address, and the file in the data directory that keeps it
// stable across restarts.
package peer

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Name identifies a peer for its whole life. Only the low 48 bits are used;
// it is written as six colon-separated hex bytes, "aa:bb:cc:dd:ee:ff".
type Name uint64

// None is the zero name; no real peer has it.
const None Name = 0

// Broadcast is the destination name of frames flooded to every peer.
const Broadcast Name = 0xffffffffffff

const nameMask = 0xffffffffffff

// ParseName parses "aa:bb:cc:dd:ee:ff" (case-insensitive). It rejects the
// reserved names None and Broadcast.
func ParseName(s string) (Name, error) {
	parts := strings.Split(s, ":")
	if len(parts) != 6 {
		return None, fmt.Errorf("peer name %q: want six hex bytes like aa:bb:cc:dd:ee:ff", s)
	}
	var n uint64
	for _, p := range parts {
		if len(p) != 2 {
			return None, fmt.Errorf("peer name %q: each byte must be two hex digits", s)
		}
		var b uint64
		for _, c := range []byte(p) {
			var v byte
			switch {
			case c >= '0' && c <= '9':
				v = c - '0'
			case c >= 'a' && c <= 'f':
				v = c - 'a' + 10
			case c >= 'A' && c <= 'F':
				v = c - 'A' + 10
			default:
				return None, fmt.Errorf("peer name %q: %q is not a hex digit", s, c)
			}
			b = b<<4 | uint64(v)
		}
		n = n<<8 | b
	}
	name := Name(n)
	if name == None || name == Broadcast {
		return None, fmt.Errorf("peer name %q is reserved", s)
	}
	return name, nil
}

// String formats the name as six colon-separated lower-case hex bytes.
func (n Name) String() string {
	const hex = "0123456789abcdef"
	var b [17]byte
	v := uint64(n) & nameMask
	for i := 5; i >= 0; i-- {
		x := byte(v)
		v >>= 8
		b[i*3] = hex[x>>4]
		b[i*3+1] = hex[x&0xf]
		if i < 5 {
			b[i*3+2] = ':'
		}
	}
	return string(b[:])
}

// PutBytes writes the name as 6 big-endian bytes into b, which must hold 6.
func (n Name) PutBytes(b []byte) {
	_ = b[5]
	b[0] = byte(n >> 40)
	b[1] = byte(n >> 32)
	binary.BigEndian.PutUint32(b[2:], uint32(n))
}

// FromBytes reads a name from 6 big-endian bytes.
func FromBytes(b []byte) Name {
	_ = b[5]
	return Name(uint64(b[0])<<40 | uint64(b[1])<<32 | uint64(binary.BigEndian.Uint32(b[2:])))
}

// Random returns a fresh name with the locally-administered bit set and the
// multicast bit clear, as for a generated MAC address.
func Random() (Name, error) {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return None, fmt.Errorf("generate peer name: %w", err)
	}
	b[0] = b[0]&^0x01 | 0x02
	n := FromBytes(b[:])
	if n == Broadcast || n == None {
		return Random()
	}
	return n, nil
}

// NameFile is the file in the data directory holding the peer name.
const NameFile = "peer-name"

// LoadOrCreate returns the name kept in dataDir, creating and saving a new
// random one if there is none. A file that exists but does not parse is an
// error, never silently replaced: the name is the peer's identity in the
// mesh and in IP allocation.
func LoadOrCreate(dataDir string) (Name, error) {
	path := filepath.Join(dataDir, NameFile)
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		n, perr := ParseName(strings.TrimSpace(string(data)))
		if perr != nil {
			return None, fmt.Errorf("%s is corrupt (%v); restore it, or remove it to make this host a new peer", path, perr)
		}
		return n, nil
	case !errors.Is(err, os.ErrNotExist):
		return None, fmt.Errorf("read peer name: %w", err)
	}
	n, err := Random()
	if err != nil {
		return None, err
	}
	return n, Save(dataDir, n)
}

// Save writes the name into dataDir atomically.
func Save(dataDir string, n Name) error {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	path := filepath.Join(dataDir, NameFile)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(n.String()+"\n"), 0o600); err != nil {
		return fmt.Errorf("write peer name: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write peer name: %w", err)
	}
	return nil
}

// Names sorts by value; used wherever peers must agree on an order.
type Names []Name

func (s Names) Len() int           { return len(s) }
func (s Names) Less(i, j int) bool { return s[i] < s[j] }
func (s Names) Swap(i, j int)      { s[i], s[j] = s[j], s[i] }
