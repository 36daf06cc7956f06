package gossip

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// KnownPeersFile is the file in the data directory listing the addresses
// this peer (re)joins. One address per line; a line with only an address
// is a peer named by the user, "ADDR learned TIME" one learned through
// gossip and when it was last seen alive. Lines starting with # are
// comments.
const KnownPeersFile = "known-peers"

// seenResolution is how stale a learned address's last-seen time may get
// on disk before the file is rewritten just to refresh it.
const seenResolution = time.Hour

// knownPeers remembers the addresses to (re)join: peers named by the user
// (command line, Connect), kept until forgotten, and gossip addresses of
// members seen alive, kept for a TTL after they were last seen.
type knownPeers struct {
	path    string
	ttl     time.Duration
	defPort int // for hand-written lines without a port

	saveMu sync.Mutex // serializes writes of the file

	mu        sync.Mutex             // guards the fields below
	entries   map[string]*knownEntry // by normalized host:port
	forgotten map[string]struct{}    // not to be learned again until named
	dirty     bool                   // entries differ from the file
}

type knownEntry struct {
	named     bool
	lastSeen  time.Time // learned: when its member was last seen alive
	savedSeen time.Time // lastSeen as last written
	fails     int       // consecutive failed joins
	nextTry   time.Time // no join attempt before this
}

func newKnownPeers(dir string, ttl time.Duration, defPort int) *knownPeers {
	return &knownPeers{
		path:      filepath.Join(dir, KnownPeersFile),
		ttl:       ttl,
		defPort:   defPort,
		entries:   make(map[string]*knownEntry),
		forgotten: make(map[string]struct{}),
	}
}

// load reads the file; a missing file is an empty list. Lines that do not
// parse are returned as warnings and dropped.
func (k *knownPeers) load() ([]error, error) {
	data, err := os.ReadFile(k.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read known peers: %w", err)
	}
	entries, warnings := parseKnownPeers(data, k.defPort)
	k.mu.Lock()
	defer k.mu.Unlock()
	for addr, e := range entries {
		e.savedSeen = e.lastSeen
		k.entries[addr] = e
	}
	if len(warnings) > 0 {
		k.dirty = true
	}
	return warnings, nil
}

// parseKnownPeers parses the known-peers file format; addresses without a
// port get defPort. It never panics, whatever the input.
func parseKnownPeers(data []byte, defPort int) (map[string]*knownEntry, []error) {
	entries := make(map[string]*knownEntry)
	var warnings []error
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 64*1024)
	for lineNo := 1; sc.Scan(); lineNo++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		addr, err := normalizeAddr(fields[0], defPort)
		if err != nil {
			warnings = append(warnings, fmt.Errorf("line %d: %w", lineNo, err))
			continue
		}
		e := entries[addr]
		if e == nil {
			e = &knownEntry{}
		}
		switch {
		case len(fields) == 1:
			e.named = true
		case len(fields) == 3 && fields[1] == "learned":
			t, err := time.Parse(time.RFC3339, fields[2])
			if err != nil {
				warnings = append(warnings, fmt.Errorf("line %d: last-seen time: %w", lineNo, err))
				continue
			}
			if t.After(e.lastSeen) {
				e.lastSeen = t
			}
		default:
			warnings = append(warnings, fmt.Errorf("line %d: want ADDR or ADDR learned TIME", lineNo))
			continue
		}
		entries[addr] = e
	}
	if err := sc.Err(); err != nil {
		warnings = append(warnings, err)
	}
	return entries, warnings
}

// formatKnownPeers writes entries in the file format, sorted.
func formatKnownPeers(entries map[string]*knownEntry) []byte {
	addrs := make([]string, 0, len(entries))
	for a := range entries {
		addrs = append(addrs, a)
	}
	slices.Sort(addrs)
	var b bytes.Buffer
	b.WriteString("# Peers this weave peer rejoins. One address per line: host:port for a peer\n")
	b.WriteString("# named by the user, or host:port learned TIME for one learned through gossip.\n")
	for _, a := range addrs {
		e := entries[a]
		if e.named {
			fmt.Fprintf(&b, "%s\n", a)
		}
		if !e.lastSeen.IsZero() {
			fmt.Fprintf(&b, "%s learned %s\n", a, e.lastSeen.UTC().Format(time.RFC3339))
		}
	}
	return b.Bytes()
}

// save writes the file atomically if anything changed.
func (k *knownPeers) save() error {
	k.saveMu.Lock()
	defer k.saveMu.Unlock()
	k.mu.Lock()
	if !k.dirty {
		k.mu.Unlock()
		return nil
	}
	snap := make(map[string]*knownEntry, len(k.entries))
	for a, e := range k.entries {
		c := *e
		snap[a] = &c
		e.savedSeen = e.lastSeen
	}
	k.dirty = false
	k.mu.Unlock()

	if err := writeAtomic(k.path, formatKnownPeers(snap)); err != nil {
		k.mu.Lock()
		k.dirty = true
		k.mu.Unlock()
		return fmt.Errorf("save known peers: %w", err)
	}
	return nil
}

// writeAtomic replaces path with data so readers see the old or the new
// file, never a torn one, even across a crash.
func writeAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // fails harmlessly once renamed
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// name remembers addrs as named by the user, and makes them due now.
func (k *knownPeers) name(addrs []string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, a := range addrs {
		delete(k.forgotten, a)
		e := k.entries[a]
		if e == nil {
			e = &knownEntry{}
			k.entries[a] = e
		}
		if !e.named {
			e.named = true
			k.dirty = true
		}
		e.fails, e.nextTry = 0, time.Time{}
	}
}

// learn remembers the gossip address of a member seen alive. It is called
// from memberlist's event callbacks, so it only touches memory.
func (k *knownPeers) learn(addr string, now time.Time) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, ok := k.forgotten[addr]; ok {
		return
	}
	e := k.entries[addr]
	if e == nil {
		e = &knownEntry{}
		k.entries[addr] = e
		k.dirty = true
	}
	e.lastSeen = now
	e.fails, e.nextTry = 0, time.Time{}
	if now.Sub(e.savedSeen) > seenResolution {
		k.dirty = true
	}
}

// forget drops addrs and keeps them from being learned again.
func (k *knownPeers) forget(addrs []string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, a := range addrs {
		k.forgotten[a] = struct{}{}
		if _, ok := k.entries[a]; ok {
			delete(k.entries, a)
			k.dirty = true
		}
	}
}

// expire drops learned addresses not seen alive within the TTL.
func (k *knownPeers) expire(now time.Time) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for a, e := range k.entries {
		if !e.named && now.Sub(e.lastSeen) > k.ttl {
			delete(k.entries, a)
			k.dirty = true
		}
	}
}

// list returns the remembered addresses, sorted.
func (k *knownPeers) list() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := make([]string, 0, len(k.entries))
	for a := range k.entries {
		out = append(out, a)
	}
	slices.Sort(out)
	return out
}

// due returns the addresses whose backoff has passed.
func (k *knownPeers) due(now time.Time) []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []string
	for a, e := range k.entries {
		if !now.Before(e.nextTry) {
			out = append(out, a)
		}
	}
	slices.Sort(out)
	return out
}

// has reports whether addr is still remembered.
func (k *knownPeers) has(addr string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	_, ok := k.entries[addr]
	return ok
}

// result records the outcome of a join attempt and returns the number of
// consecutive failures before it. Failures back off exponentially up to 8
// rounds, so dead addresses cost little while a healed partition is still
// noticed within a few rounds.
func (k *knownPeers) result(addr string, ok bool, now time.Time, interval time.Duration) (prevFails int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	e := k.entries[addr]
	if e == nil {
		return 0
	}
	prevFails = e.fails
	if ok {
		e.fails, e.nextTry = 0, time.Time{}
		return prevFails
	}
	e.fails++
	shift := min(e.fails-1, 3)
	// Half a round early, so ticker jitter never skips a round.
	e.nextTry = now.Add(interval<<shift - interval/2)
	return prevFails
}

// normalizeAddr turns "host" or "host:port" into canonical "host:port";
// defPort 0 requires a port.
func normalizeAddr(s string, defPort int) (string, error) {
	if s == "" {
		return "", errors.New("empty peer address")
	}
	if strings.ContainsAny(s, "/ \t") {
		return "", fmt.Errorf("peer %q: want host or host:port", s)
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		if defPort == 0 {
			return "", fmt.Errorf("peer %q: want host:port: %w", s, err)
		}
		host, port = strings.TrimSuffix(strings.TrimPrefix(s, "["), "]"), strconv.Itoa(defPort)
	}
	if host == "" {
		return "", fmt.Errorf("peer %q: empty host; want host or host:port", s)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 {
		return "", fmt.Errorf("peer %q: port must be 1-65535", s)
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		if ip.Zone() != "" {
			return "", fmt.Errorf("peer %q: zoned addresses are not supported", s)
		}
		return netip.AddrPortFrom(ip.Unmap(), uint16(p)).String(), nil
	}
	if !validHostName(host) {
		return "", fmt.Errorf("peer %q: %q is neither an IP address nor a host name", s, host)
	}
	return net.JoinHostPort(strings.ToLower(host), strconv.Itoa(p)), nil
}

// validHostName accepts DNS names: letters, digits, '-', '_' and dots,
// not starting with a dot or a dash.
func validHostName(h string) bool {
	if len(h) > 253 || h[0] == '.' || h[0] == '-' {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '.':
		default:
			return false
		}
	}
	return true
}
