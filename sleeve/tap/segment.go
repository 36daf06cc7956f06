package tap

import (
	"encoding/binary"
	"errors"
	"fmt"

	"weavemesh.dev/weave/sleeve/offload"
)

// Header sizes and protocol numbers the software checksum path uses.
const (
	ethHdrLen  = 14
	vlanTagLen = 4
	protoTCP   = 6
	protoUDP   = 17
)

// ErrMalformed reports a frame whose virtio_net_hdr or headers do not
// describe something the software offload path can finish. The frame is
// dropped; nothing else is affected.
var ErrMalformed = errors.New("tap: malformed offload frame")

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
}

// completeChecksum finishes a FlagNeedsCsum frame in place, as a NIC would:
// sum from CsumStart to the end of the frame (the checksum field already
// holds the pseudo-header sum) and store the complement at
// CsumStart+CsumOffset. frame is the Ethernet frame without virtio_net_hdr.
func completeChecksum(frame []byte, h *VnetHdr) error {
	start := int(h.CsumStart)
	field := start + int(h.CsumOffset)
	if start < ethHdrLen || field+2 > len(frame) {
		return malformed("checksum at %d+%d outside %d-byte frame", h.CsumStart, h.CsumOffset, len(frame))
	}
	c := checksum(frame[start:], 0)
	if c == 0 {
		// A zero UDP checksum means "none"; like the kernel, send its
		// ones'-complement twin instead (harmless for TCP).
		c = 0xffff
	}
	binary.BigEndian.PutUint16(frame[field:], c)
	return nil
}

// segmenter finishes a GSO super-frame in software for a device without
// offloads, the way the kernel's GSO layer would: offload.Segmenter cuts
// it into wire-sized segments (headers rewritten; see that package), and
// completeChecksum fills in each segment's L4 checksum, which the
// segmenter leaves partial. It is reused across frames and never
// allocates.
type segmenter struct {
	seg    offload.Segmenter
	maxSeg int
}

// reset parses b (a virtio_net_hdr and an Ethernet frame with a GSO
// type) and prepares to emit segments of at most maxSeg bytes, counted
// from the Ethernet header.
func (s *segmenter) reset(b []byte, maxSeg int) error {
	s.maxSeg = 0
	if err := s.seg.Reset(b); err != nil {
		return fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if n := s.seg.SegmentLen() - VnetHdrLen; n > maxSeg {
		s.seg = offload.Segmenter{}
		return malformed("segment of %d bytes exceeds %d", n, maxSeg)
	}
	s.maxSeg = maxSeg
	return nil
}

// next writes the next segment, with its checksums complete, into
// dst[VnetHdrLen:] (dst holds VnetHdrLen plus the maxSeg bytes given to
// reset) and returns it, without its virtio header; nil when the frame is
// exhausted.
func (s *segmenter) next(dst []byte) []byte {
	hl := s.seg.HeaderLen()
	payload, ok := s.seg.Next(dst[:hl])
	if !ok {
		return nil
	}
	n := hl + copy(dst[hl:VnetHdrLen+s.maxSeg], payload)
	var h VnetHdr
	h.Decode(dst)
	frame := dst[VnetHdrLen:n]
	// The segmenter wrote the checksum offsets itself; they are in range.
	_ = completeChecksum(frame, &h)
	return frame
}
