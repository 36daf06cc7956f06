package conn

import (
	"encoding/binary"
	"unsafe"

	"golang.org/x/sys/unix"
)

// cmsgLenSize is the width of cmsghdr.cmsg_len (size_t).
const cmsgLenSize = int(unsafe.Sizeof(unix.Cmsghdr{}.Len))

// cmsgAlign rounds n up to the control-message alignment (size_t).
func cmsgAlign(n int) int {
	return (n + cmsgLenSize - 1) &^ (cmsgLenSize - 1)
}

// parseGRO returns the segment size from a UDP_GRO control message in oob,
// or 0 if there is none. It reads the headers field by field so that it
// neither allocates nor depends on the alignment of oob.
func parseGRO(oob []byte) int {
	for len(oob) >= unix.SizeofCmsghdr {
		var l int
		if cmsgLenSize == 8 {
			l64 := binary.NativeEndian.Uint64(oob)
			if l64 > uint64(len(oob)) {
				return 0
			}
			l = int(l64)
		} else {
			l = int(binary.NativeEndian.Uint32(oob))
		}
		if l < unix.SizeofCmsghdr || l > len(oob) {
			return 0
		}
		level := int32(binary.NativeEndian.Uint32(oob[cmsgLenSize:]))
		typ := int32(binary.NativeEndian.Uint32(oob[cmsgLenSize+4:]))
		if level == unix.IPPROTO_UDP && typ == unix.UDP_GRO && l >= unix.SizeofCmsghdr+4 {
			return max(0, int(int32(binary.NativeEndian.Uint32(oob[unix.SizeofCmsghdr:]))))
		}
		next := cmsgAlign(l)
		if next >= len(oob) {
			return 0
		}
		oob = oob[next:]
	}
	return 0
}

// putGSO writes a UDP_SEGMENT control message for segSize into b, which
// must hold unix.CmsgSpace(2) bytes.
func putGSO(b []byte, segSize int) {
	clear(b[:unix.CmsgSpace(2)])
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level = unix.IPPROTO_UDP
	h.Type = unix.UDP_SEGMENT
	h.SetLen(unix.CmsgLen(2))
	binary.NativeEndian.PutUint16(b[unix.SizeofCmsghdr:], uint16(segSize))
}
