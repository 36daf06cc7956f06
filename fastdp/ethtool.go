package fastdp

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Device features by name, through the SIOCETHTOOL ioctl, as
// `ethtool -k/-K DEV NAME on|off` does. The feature bits are looked up by
// name at each call (ETH_SS_FEATURES strings), since their numbering is the
// kernel's and changes between versions. The netlink library has no
// ethtool-netlink support; the ioctl works on every kernel that has
// ETHTOOL_SFEATURES (2.6.39 on).

// featTxChecksumIPGeneric is NETIF_F_HW_CSUM: the device computes
// checksums of any protocol for the stack. On a VXLAN device it is what
// lets the kernel hand over packets with their checksum left to be filled.
const featTxChecksumIPGeneric = "tx-checksum-ip-generic"

// From linux/ethtool.h.
const (
	ethtoolGStrings  = 0x1b
	ethtoolGSSetInfo = 0x37
	ethtoolGFeatures = 0x3a
	ethtoolSFeatures = 0x3b
	ethSSFeatures    = 4
	ethGStringLen    = 32
)

// ifreqData is struct ifreq with ifr_data: the name, then a pointer (kept
// as unsafe.Pointer so the collector sees it), padded to sizeof(ifreq).
type ifreqData struct {
	name [unix.IFNAMSIZ]byte
	data unsafe.Pointer
	_    [24 - unsafe.Sizeof(uintptr(0))]byte
}

func ethtool(fd int, ifname string, buf []byte) error {
	var ifr ifreqData
	copy(ifr.name[:unix.IFNAMSIZ-1], ifname)
	ifr.data = unsafe.Pointer(&buf[0])
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr)))
	runtime.KeepAlive(buf)
	if errno != 0 {
		return errno
	}
	return nil
}

var ne = binary.NativeEndian

// featureIndex returns the bit number of the named feature on ifname and
// the number of features.
func featureIndex(fd int, ifname, feature string) (idx, count int, err error) {
	// struct ethtool_sset_info: cmd, reserved, sset_mask (u64), data[1].
	info := make([]byte, 4+4+8+4)
	ne.PutUint32(info[0:], ethtoolGSSetInfo)
	ne.PutUint64(info[8:], 1<<ethSSFeatures)
	if err := ethtool(fd, ifname, info); err != nil {
		return 0, 0, fmt.Errorf("ETHTOOL_GSSET_INFO: %w", err)
	}
	if ne.Uint64(info[8:]) == 0 {
		return 0, 0, fmt.Errorf("the device lists no features")
	}
	count = int(ne.Uint32(info[16:]))
	// struct ethtool_gstrings: cmd, string_set, len, data[len*32].
	strs := make([]byte, 12+count*ethGStringLen)
	ne.PutUint32(strs[0:], ethtoolGStrings)
	ne.PutUint32(strs[4:], ethSSFeatures)
	ne.PutUint32(strs[8:], uint32(count))
	if err := ethtool(fd, ifname, strs); err != nil {
		return 0, 0, fmt.Errorf("ETHTOOL_GSTRINGS: %w", err)
	}
	for i := range count {
		s := strs[12+i*ethGStringLen : 12+(i+1)*ethGStringLen]
		if n := bytes.IndexByte(s, 0); n >= 0 {
			s = s[:n]
		}
		if string(s) == feature {
			return i, count, nil
		}
	}
	return 0, 0, fmt.Errorf("the kernel knows no feature %q", feature)
}

// features reads ETHTOOL_GFEATURES: per 32 features, the available,
// requested, active and never-changed masks.
func features(fd int, ifname string, count int) ([]byte, error) {
	blocks := (count + 31) / 32
	buf := make([]byte, 8+blocks*16)
	ne.PutUint32(buf[0:], ethtoolGFeatures)
	ne.PutUint32(buf[4:], uint32(blocks))
	if err := ethtool(fd, ifname, buf); err != nil {
		return nil, fmt.Errorf("ETHTOOL_GFEATURES: %w", err)
	}
	return buf, nil
}

// getFeature reports whether the named feature is active on ifname.
func getFeature(fd int, ifname, feature string) (bool, error) {
	idx, count, err := featureIndex(fd, ifname, feature)
	if err != nil {
		return false, err
	}
	buf, err := features(fd, ifname, count)
	if err != nil {
		return false, err
	}
	active := ne.Uint32(buf[8+(idx/32)*16+8:])
	return active&(1<<(idx%32)) != 0, nil
}

// setFeature switches the named feature on ifname, if it is not already
// in that state, and checks that the kernel did.
func setFeature(fd int, ifname, feature string, on bool) error {
	idx, count, err := featureIndex(fd, ifname, feature)
	if err != nil {
		return err
	}
	buf, err := features(fd, ifname, count)
	if err != nil {
		return err
	}
	blk := 8 + (idx/32)*16
	bit := uint32(1) << (idx % 32)
	available, active := ne.Uint32(buf[blk:]), ne.Uint32(buf[blk+8:])
	if (active&bit != 0) == on {
		return nil
	}
	if available&bit == 0 {
		return fmt.Errorf("%s cannot be changed on this device (fixed)", feature)
	}
	// struct ethtool_sfeatures: cmd, size, then per block valid, requested.
	blocks := (count + 31) / 32
	set := make([]byte, 8+blocks*8)
	ne.PutUint32(set[0:], ethtoolSFeatures)
	ne.PutUint32(set[4:], uint32(blocks))
	ne.PutUint32(set[8+(idx/32)*8:], bit)
	if on {
		ne.PutUint32(set[8+(idx/32)*8+4:], bit)
	}
	if err := ethtool(fd, ifname, set); err != nil {
		return fmt.Errorf("ETHTOOL_SFEATURES: %w", err)
	}
	got, err := getFeature(fd, ifname, feature)
	if err != nil {
		return err
	}
	if got != on {
		return fmt.Errorf("the kernel kept %s %s (it depends on another feature)", feature, onOff(got))
	}
	return nil
}
