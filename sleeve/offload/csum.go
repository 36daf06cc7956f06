package offload

import (
	"encoding/binary"
	"math/bits"
)

// sum adds b, read as big-endian 16-bit words, to the ones'-complement
// accumulator s. Summing 64-bit words and folding later gives the same
// result as 16-bit words (2^16 ≡ 1 mod 2^16-1). b must start at an even
// offset of the checksummed region; an odd trailing byte is padded with 0.
func sum(s uint64, b []byte) uint64 {
	var c uint64
	for len(b) >= 8 {
		s, c = bits.Add64(s, binary.BigEndian.Uint64(b), c)
		b = b[8:]
	}
	if len(b) >= 4 {
		s, c = bits.Add64(s, uint64(binary.BigEndian.Uint32(b)), c)
		b = b[4:]
	}
	if len(b) >= 2 {
		s, c = bits.Add64(s, uint64(binary.BigEndian.Uint16(b)), c)
		b = b[2:]
	}
	if len(b) == 1 {
		s, c = bits.Add64(s, uint64(b[0])<<8, c)
	}
	s, c = bits.Add64(s, 0, c)
	return s + c
}

// fold folds the accumulator to 16 bits, not complemented.
func fold(s uint64) uint16 {
	s = (s & 0xffffffff) + (s >> 32)
	s = (s & 0xffffffff) + (s >> 32)
	s = (s & 0xffff) + (s >> 16)
	s = (s & 0xffff) + (s >> 16)
	s = (s & 0xffff) + (s >> 16)
	return uint16(s)
}

// Checksum is the Internet checksum (RFC 1071) of b with initial folded
// into it, ready to store.
func Checksum(b []byte, initial uint64) uint16 { return ^fold(sum(initial, b)) }

// pseudo is the pseudo-header sum (addresses, protocol, L4 length) that
// a partial checksum field holds, folded but not complemented.
func pseudo(addrSum uint64, proto uint8, l4len int) uint16 {
	return fold(addrSum + uint64(proto) + uint64(l4len))
}
