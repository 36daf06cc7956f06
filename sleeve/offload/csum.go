package offload

import "weavemesh.dev/weave/internal/csum"

// sum and fold are the shared checksum arithmetic (internal/csum).
func sum(s uint64, b []byte) uint64 { return csum.Add(s, b) }

func fold(s uint64) uint16 { return csum.Fold(s) }

// Checksum is the Internet checksum (RFC 1071) of b with initial folded
// into it, ready to store.
func Checksum(b []byte, initial uint64) uint16 { return ^fold(sum(initial, b)) }

// pseudo is the pseudo-header sum (addresses, protocol, L4 length) that
// a partial checksum field holds, folded but not complemented.
func pseudo(addrSum uint64, proto uint8, l4len int) uint16 {
	return fold(addrSum + uint64(proto) + uint64(l4len))
}
