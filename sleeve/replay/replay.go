// Package replay owns the sliding window that rejects replayed and
// too-old datagram counters on an encrypted session.
//
// The window is a ring of 64-bit blocks, as in RFC 6479: accepting a new
// highest counter clears only the blocks it skips over, so the cost per
// datagram is constant whatever the window size.
package replay

const (
	blockBits  = 64
	ringBlocks = 1 << 7 // 128 blocks
	// WindowSize is how far behind the highest counter seen a datagram may
	// arrive and still be accepted (once). Reordering beyond it drops.
	WindowSize = (ringBlocks - 1) * blockBits // 8128
	blockMask  = ringBlocks - 1
)

// Filter tracks the counters seen on one session. The zero value is ready.
// It is not safe for concurrent use.
type Filter struct {
	last uint64 // highest counter accepted, plus one (0: none yet)
	ring [ringBlocks]uint64
}

// Reset forgets every counter.
func (f *Filter) Reset() { *f = Filter{} }

// Accept reports whether counter is new and within the window, and if so
// records it. Call it only after the datagram authenticated, so forged
// datagrams cannot move the window.
func (f *Filter) Accept(counter uint64) bool {
	c := counter + 1 // so that "last" 0 means nothing seen
	if c == 0 {
		return false // counter overflow: never valid
	}
	block := c / blockBits
	if c > f.last {
		cur := f.last / blockBits
		skip := block - cur
		if skip > ringBlocks {
			skip = ringBlocks
		}
		for i := uint64(1); i <= skip; i++ {
			f.ring[(cur+i)&blockMask] = 0
		}
		f.last = c
	} else if f.last-c >= WindowSize {
		return false
	}
	idx := block & blockMask
	bit := uint64(1) << (c % blockBits)
	if f.ring[idx]&bit != 0 {
		return false
	}
	f.ring[idx] |= bit
	return true
}
