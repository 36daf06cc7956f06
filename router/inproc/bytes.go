package inproc

import "sync/atomic"

// bytesSent is router i's counter of gossip bytes sent, or nil when the
// mesh does not count them.
func (m *Mesh) bytesSent(i int) *atomic.Uint64 {
	if !m.opts.CountBytes {
		return nil
	}
	return &m.sent[i]
}

// BytesSent is how many gossip bytes router i has sent in all its runs
// (Options.CountBytes).
func (m *Mesh) BytesSent(i int) uint64 { return m.sent[i].Load() }

// TotalBytesSent sums BytesSent over the mesh.
func (m *Mesh) TotalBytesSent() uint64 {
	var n uint64
	for i := range m.sent {
		n += m.sent[i].Load()
	}
	return n
}
