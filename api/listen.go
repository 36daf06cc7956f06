package api

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// UnixScheme prefixes an API address that is a unix socket path:
// unix:///run/weave/weave.sock.
const UnixScheme = "unix://"

// SocketMode is the permission of the API's unix socket: only its owner
// (root, for a router that manages the host's network) may connect, which
// is what makes a socket safe without a token.
const SocketMode fs.FileMode = 0o600

// Addr is a parsed API address: a TCP host:port or a unix socket path.
type Addr struct {
	// Network is "tcp" or "unix".
	Network string
	// Address is host:port for tcp, the socket's absolute path for unix.
	Address string
}

// ParseAddr parses an --http-addr value: host:port (TCP) or
// unix:///absolute/path (a unix socket).
func ParseAddr(s string) (Addr, error) {
	if path, ok := strings.CutPrefix(s, UnixScheme); ok {
		if path == "" || !filepath.IsAbs(path) {
			return Addr{}, fmt.Errorf("%q: want an absolute socket path, like unix:///run/weave/weave.sock", s)
		}
		if filepath.Clean(path) != path || strings.HasSuffix(path, "/") {
			return Addr{}, fmt.Errorf("%q: want a clean socket path, like unix://%s", s, filepath.Clean(path))
		}
		// sun_path holds 108 bytes, the terminating NUL included.
		if len(path) > 107 {
			return Addr{}, fmt.Errorf("%q: a unix socket path is at most 107 bytes long, this is %d", s, len(path))
		}
		return Addr{Network: "unix", Address: path}, nil
	}
	if strings.Contains(s, "://") {
		return Addr{}, fmt.Errorf("%q: want host:port, like %s, or %s/PATH", s, DefaultAddr, UnixScheme)
	}
	if _, _, err := net.SplitHostPort(s); err != nil {
		return Addr{}, fmt.Errorf("%q: want host:port, like %s, or %s/PATH: %w", s, DefaultAddr, UnixScheme, err)
	}
	return Addr{Network: "tcp", Address: s}, nil
}

// String is the address as --http-addr takes it.
func (a Addr) String() string {
	if a.Network == "unix" {
		return UnixScheme + a.Address
	}
	return a.Address
}

// listenUnix binds the socket at path with SocketMode from the first
// moment: it is bound in a private directory, given its mode, and only
// then linked into place, so no client ever sees it with the umask's
// looser bits. A socket file left by a router that died is replaced; a
// socket that answers is a router that runs, and a path that is not a
// socket is not ours to remove.
func listenUnix(path string) (*net.UnixListener, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create the directory of the API socket: %w", err)
	}
	if err := removeStaleSocket(path); err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp(dir, ".weave-sock-")
	if err != nil {
		return nil, fmt.Errorf("create the API socket in %s: %w", dir, err)
	}
	defer os.RemoveAll(tmp)
	bound := filepath.Join(tmp, "s")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: bound, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listen for the HTTP API on %s: %w", path, err)
	}
	// The listener must not unlink the name it was bound to (removed with
	// the private directory); Server.Close removes the socket at path.
	ln.SetUnlinkOnClose(false)
	if err := os.Chmod(bound, SocketMode); err != nil {
		ln.Close()
		return nil, fmt.Errorf("set the mode of the API socket: %w", err)
	}
	// A link, unlike a rename, never replaces what a router starting at
	// the same moment put there.
	if err := os.Link(bound, path); err != nil {
		ln.Close()
		if errors.Is(err, fs.ErrExist) {
			return nil, &addrInUseError{addr: UnixScheme + path, err: syscall.EADDRINUSE}
		}
		return nil, fmt.Errorf("put the API socket at %s: %w", path, err)
	}
	return ln, nil
}

// removeStaleSocket removes a socket at path that nobody answers on.
func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("check the API socket %s: %w", path, err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("%s exists and is not a socket; move it away or choose another --http-addr", path)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	c, err := (&net.Dialer{}).DialContext(ctx, "unix", path)
	if err == nil {
		c.Close()
		return &addrInUseError{addr: UnixScheme + path, err: syscall.EADDRINUSE}
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("check whether a router answers on %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove the stale API socket %s: %w", path, err)
	}
	return nil
}

// removeSocket removes the socket at path if it is still the one ln
// made, not one a later router put there.
func removeSocket(path string, made os.FileInfo) {
	fi, err := os.Lstat(path)
	if err != nil || (made != nil && !os.SameFile(fi, made)) {
		return
	}
	_ = os.Remove(path)
}
