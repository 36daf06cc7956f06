package netdev

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// ErrNotNetns reports a path that exists but is not a network namespace file.
var ErrNotNetns = errors.New("not a network namespace file (expected /var/run/netns/NAME, /proc/PID/ns/net or a bind mount of one)")

// nsGetNSType is NS_GET_NSTYPE from linux/nsfs.h: _IO(0xb7, 0x3).
const nsGetNSType = 0xb703

// openNetns opens the namespace file at path and checks that it really is a
// network namespace. The caller closes the returned handle.
func openNetns(path string) (netns.NsHandle, *unix.Stat_t, error) {
	if path == "" {
		return netns.None(), nil, errors.New("network namespace path is empty")
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return netns.None(), nil, fmt.Errorf("open network namespace %s: %w", path, &os.PathError{Op: "open", Path: path, Err: err})
	}
	ns := netns.NsHandle(fd)
	var fs unix.Statfs_t
	if err := unix.Fstatfs(fd, &fs); err != nil {
		ns.Close()
		return netns.None(), nil, fmt.Errorf("network namespace %s: statfs: %w", path, err)
	}
	if fs.Type != unix.NSFS_MAGIC {
		ns.Close()
		return netns.None(), nil, fmt.Errorf("%s: %w", path, ErrNotNetns)
	}
	typ, err := unix.IoctlRetInt(fd, nsGetNSType)
	if err != nil {
		ns.Close()
		return netns.None(), nil, fmt.Errorf("network namespace %s: query namespace type: %w", path, err)
	}
	if typ != unix.CLONE_NEWNET {
		ns.Close()
		return netns.None(), nil, fmt.Errorf("%s is another kind of namespace: %w", path, ErrNotNetns)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		ns.Close()
		return netns.None(), nil, fmt.Errorf("network namespace %s: stat: %w", path, err)
	}
	return ns, &st, nil
}

// EndpointID returns a stable identifier for the network namespace at path:
// 16 hex characters derived from the device and inode numbers of the
// namespace file. Every path naming the same namespace (a /var/run/netns bind
// mount, /proc/PID/ns/net of any process inside it) yields the same ID. The
// kernel may reuse an inode number once a namespace is gone, so an ID is only
// meaningful while its namespace exists.
func EndpointID(path string) (string, error) {
	ns, st, err := openNetns(path)
	if err != nil {
		return "", err
	}
	ns.Close()
	return idFromStat(st), nil
}

func idFromStat(st *unix.Stat_t) string {
	// Hash rather than print dev/ino: nsfs inode numbers share their high
	// digits, and the host interface name uses only the first 8 characters.
	var b [16]byte
	binary.BigEndian.PutUint64(b[0:8], st.Dev)
	binary.BigEndian.PutUint64(b[8:16], st.Ino)
	sum := sha256.Sum256(b[:])
	return hex.EncodeToString(sum[:8])
}

// HostIfaceName is the name of the host end of the veth pair for the
// endpoint with the given ID.
func HostIfaceName(id string) string {
	if len(id) > 8 {
		id = id[:8]
	}
	return HostIfacePrefix + id
}
