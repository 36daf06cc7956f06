// Package mix owns the 64-bit finaliser the replicated states build their
// anti-entropy digests with: summed over a set's parts it gives a digest
// that does not depend on their order, so two peers holding the same state
// compute the same digest however it reached them.
package mix

// Mix64 is the splitmix64 finaliser.
func Mix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}
