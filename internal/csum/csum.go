// Package csum owns the Internet checksum arithmetic (RFC 1071) that the
// datapath's hot paths share: the TAP's software offloads and the sleeve's
// segmentation and coalescing.
package csum

import (
	"encoding/binary"
	"math/bits"
)

// Add adds b, read as big-endian 16-bit words, to the running
// ones'-complement accumulator sum. Because 2^16 ≡ 1 (mod 2^16-1), summing
// 64-bit words and folding later gives the same result as summing 16-bit
// words, at a quarter of the additions. b must start at an even offset of
// the checksummed region; an odd trailing byte is padded with zero.
func Add(sum uint64, b []byte) uint64 {
	var c uint64
	for len(b) >= 32 {
		sum, c = bits.Add64(sum, binary.BigEndian.Uint64(b[0:8]), c)
		sum, c = bits.Add64(sum, binary.BigEndian.Uint64(b[8:16]), c)
		sum, c = bits.Add64(sum, binary.BigEndian.Uint64(b[16:24]), c)
		sum, c = bits.Add64(sum, binary.BigEndian.Uint64(b[24:32]), c)
		b = b[32:]
	}
	for len(b) >= 8 {
		sum, c = bits.Add64(sum, binary.BigEndian.Uint64(b), c)
		b = b[8:]
	}
	if len(b) >= 4 {
		sum, c = bits.Add64(sum, uint64(binary.BigEndian.Uint32(b)), c)
		b = b[4:]
	}
	if len(b) >= 2 {
		sum, c = bits.Add64(sum, uint64(binary.BigEndian.Uint16(b)), c)
		b = b[2:]
	}
	if len(b) == 1 {
		sum, c = bits.Add64(sum, uint64(b[0])<<8, c)
	}
	// End-around carry: 2^64 ≡ 1.
	sum, c = bits.Add64(sum, 0, c)
	return sum + c
}

// Fold folds the accumulator to 16 bits (not complemented).
func Fold(s uint64) uint16 {
	s = (s & 0xffffffff) + (s >> 32)
	s = (s & 0xffffffff) + (s >> 32)
	s = (s & 0xffff) + (s >> 16)
	s = (s & 0xffff) + (s >> 16)
	s = (s & 0xffff) + (s >> 16)
	return uint16(s)
}
