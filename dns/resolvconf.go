package dns

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Where iproute2 keeps named namespaces and their per-namespace /etc files:
// `ip netns exec NAME` bind-mounts /etc/netns/NAME/resolv.conf over
// /etc/resolv.conf when it exists.
const (
	DefaultNetnsDir = "/var/run/netns"
	DefaultEtcNetns = "/etc/netns"
)

// resolvMarker starts every resolv.conf this package writes, so it only
// ever rewrites or removes its own files.
const resolvMarker = "# Written by weave"

// ParseUpstream parses an upstream server: "IP", "IP:PORT" or "[IPv6]:PORT";
// the port defaults to 53.
func ParseUpstream(s string) (netip.AddrPort, error) {
	s = strings.TrimSpace(s)
	if ap, err := netip.ParseAddrPort(s); err == nil {
		if ap.Port() == 0 {
			return netip.AddrPort{}, fmt.Errorf("upstream %q: port must be 1-65535", s)
		}
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
	}
	a, err := netip.ParseAddr(strings.Trim(s, "[]"))
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("upstream %q: want IP or IP:PORT (host names cannot be resolved without DNS)", s)
	}
	return netip.AddrPortFrom(a.Unmap(), 53), nil
}

// ParseListenAddr parses a listen address: "IP" or "IP:PORT" (port 53 by
// default).
func ParseListenAddr(s string) (netip.AddrPort, error) {
	ap, err := ParseUpstream(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("listen address %q: want IP or IP:PORT", s)
	}
	return ap, nil
}

// ReadResolvConf returns the nameservers of a resolv.conf, port 53.
func ReadResolvConf(path string) ([]netip.AddrPort, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return parseResolvConf(data), nil
}

func parseResolvConf(data []byte) []netip.AddrPort {
	out := []netip.AddrPort{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || f[0] != "nameserver" {
			continue
		}
		a, err := netip.ParseAddr(f[1])
		if err != nil {
			continue
		}
		out = append(out, netip.AddrPortFrom(a.Unmap(), 53))
	}
	return out
}

// NetnsName returns NAME when path is netnsDir/NAME (or the same under
// /run instead of /var/run), the namespaces `ip netns exec` knows.
func NetnsName(path, netnsDir string) (string, bool) {
	path = filepath.Clean(path)
	for _, dir := range []string{netnsDir, strings.Replace(netnsDir, "/var/run/", "/run/", 1)} {
		dir = filepath.Clean(dir)
		if filepath.Dir(path) == dir {
			name := filepath.Base(path)
			if name != "" && name != "." && name != ".." && name != "/" {
				return name, true
			}
		}
	}
	return "", false
}

// ContainerResolvConf returns the resolv.conf for a namespace: our server
// and the weave domain to search.
func ContainerResolvConf(nsName string, server netip.Addr, domain string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s for network namespace %s; removed when it is detached.\n", resolvMarker, nsName)
	fmt.Fprintf(&b, "nameserver %s\n", server)
	fmt.Fprintf(&b, "search %s\n", strings.TrimSuffix(domain, "."))
	return b.Bytes()
}

// WriteNetnsResolvConf writes etcNetns/NAME/resolv.conf unless a file
// there was written by someone else, which it leaves alone and reports
// with an error wrapping os.ErrExist.
func WriteNetnsResolvConf(etcNetns, nsName string, content []byte) error {
	if err := validNetnsName(nsName); err != nil {
		return err
	}
	dir := filepath.Join(etcNetns, nsName)
	path := filepath.Join(dir, "resolv.conf")
	if old, err := os.ReadFile(path); err == nil {
		if !bytes.HasPrefix(old, []byte(resolvMarker)) {
			return fmt.Errorf("%s exists and was not written by weave; leaving it: %w", path, os.ErrExist)
		}
		if bytes.Equal(old, content) {
			return nil
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	tmp := path + ".weave-tmp"
	if err := os.WriteFile(tmp, content, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// RemoveNetnsResolvConf removes etcNetns/NAME/resolv.conf if weave wrote
// it, and the directory if that leaves it empty. A missing file is not an
// error.
func RemoveNetnsResolvConf(etcNetns, nsName string) error {
	if err := validNetnsName(nsName); err != nil {
		return err
	}
	dir := filepath.Join(etcNetns, nsName)
	path := filepath.Join(dir, "resolv.conf")
	old, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if !bytes.HasPrefix(old, []byte(resolvMarker)) {
		return nil
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	_ = os.Remove(dir) // only succeeds when empty
	return nil
}

// SweepNetnsResolvConf removes the resolv.conf files weave wrote for
// namespaces that no longer exist in netnsDir (left by a router that was
// killed), and returns their namespace names.
func SweepNetnsResolvConf(etcNetns, netnsDir string) ([]string, error) {
	ents, err := os.ReadDir(etcNetns)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var removed []string
	var errs []error
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		if _, err := os.Stat(filepath.Join(netnsDir, e.Name())); err == nil || !errors.Is(err, os.ErrNotExist) {
			continue
		}
		data, err := os.ReadFile(filepath.Join(etcNetns, e.Name(), "resolv.conf"))
		if err != nil || !bytes.HasPrefix(data, []byte(resolvMarker)) {
			continue
		}
		if err := RemoveNetnsResolvConf(etcNetns, e.Name()); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, e.Name())
	}
	return removed, errors.Join(errs...)
}

func validNetnsName(n string) error {
	if n == "" || n == "." || n == ".." || strings.ContainsRune(n, '/') {
		return fmt.Errorf("namespace name %s is not a plain name", strconv.Quote(n))
	}
	return nil
}
