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
// or 0 if there is none.
func parseGRO(oob []byte) int {
	d, ok := findCmsg(oob, unix.IPPROTO_UDP, unix.UDP_GRO)
	if !ok || len(d) < 4 {
		return 0
	}
	return max(0, int(int32(binary.NativeEndian.Uint32(d))))
}

// parseOverflow returns the socket's count of datagrams dropped for want
// of receive buffer space, from an SO_RXQ_OVFL control message in oob.
func parseOverflow(oob []byte) (uint32, bool) {
	d, ok := findCmsg(oob, unix.SOL_SOCKET, unix.SO_RXQ_OVFL)
	if !ok || len(d) < 4 {
		return 0, false
	}
	return binary.NativeEndian.Uint32(d), true
}

// parseStamp returns the kernel's receive time, in unix nanoseconds, from
// an SCM_TIMESTAMPNS control message in oob, or 0 if there is none.
func parseStamp(oob []byte) int64 {
	d, ok := findCmsg(oob, unix.SOL_SOCKET, unix.SCM_TIMESTAMPNS)
	if !ok || len(d) < 16 {
		return 0
	}
	sec := int64(binary.NativeEndian.Uint64(d))
	nsec := int64(binary.NativeEndian.Uint64(d[8:]))
	if sec <= 0 || nsec < 0 || nsec >= 1e9 || sec > 1<<33 {
		return 0
	}
	return sec*1e9 + nsec
}

// findCmsg returns the data of the first control message of level and typ
// in oob. It reads the headers field by field so that it neither
// allocates nor depends on the alignment of oob.
func findCmsg(oob []byte, level, typ int32) ([]byte, bool) {
	for len(oob) >= unix.SizeofCmsghdr {
		var l int
		if cmsgLenSize == 8 {
			l64 := binary.NativeEndian.Uint64(oob)
			if l64 > uint64(len(oob)) {
				return nil, false
			}
			l = int(l64)
		} else {
			l = int(binary.NativeEndian.Uint32(oob))
		}
		if l < unix.SizeofCmsghdr || l > len(oob) {
			return nil, false
		}
		lv := int32(binary.NativeEndian.Uint32(oob[cmsgLenSize:]))
		ty := int32(binary.NativeEndian.Uint32(oob[cmsgLenSize+4:]))
		if lv == level && ty == typ {
			return oob[unix.SizeofCmsghdr:l], true
		}
		next := cmsgAlign(l)
		if next >= len(oob) {
			return nil, false
		}
		oob = oob[next:]
	}
	return nil, false
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
