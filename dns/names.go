package dns

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// DefaultDomain is the domain weaveDNS answers for unless told otherwise.
const DefaultDomain = "weave.local."

// Limits of DNS names (RFC 1035).
const (
	maxNameLen  = 253 // presentation form without the trailing dot
	maxLabelLen = 63
)

// ParseDomain validates a domain such as "weave.local" and returns it in
// canonical form: lower case with a trailing dot.
func ParseDomain(s string) (string, error) {
	d := strings.ToLower(strings.TrimSuffix(strings.TrimSpace(s), "."))
	if d == "" {
		return "", errors.New("domain is empty; give one like weave.local")
	}
	if err := checkLabels(d); err != nil {
		return "", fmt.Errorf("domain %q: %w", s, err)
	}
	return d + ".", nil
}

// Normalize turns a name a user gave (web, web.weave.local, WEB.weave.local.)
// into the canonical fully qualified name in domain (canonical, as from
// ParseDomain): lower case, with a trailing dot. A name that does not end
// in the domain gets it appended, so "web.prod" becomes
// "web.prod.weave.local.".
func Normalize(name, domain string) (string, error) {
	n := strings.ToLower(strings.TrimSuffix(strings.TrimSpace(name), "."))
	if n == "" {
		return "", errors.New("name is empty")
	}
	d := strings.TrimSuffix(domain, ".")
	if n == d {
		return "", fmt.Errorf("name %q is the domain itself; give a name inside it, like web.%s", name, d)
	}
	if !strings.HasSuffix(n, "."+d) {
		n += "." + d
	}
	if err := checkLabels(n); err != nil {
		return "", fmt.Errorf("name %q: %w", name, err)
	}
	return n + ".", nil
}

// checkLabels checks a lower-case name without the trailing dot: 1-63
// character labels of letters, digits, '-' and '_', at most 253 in all.
func checkLabels(n string) error {
	if len(n) > maxNameLen {
		return fmt.Errorf("longer than %d characters", maxNameLen)
	}
	for label := range strings.SplitSeq(n, ".") {
		if label == "" {
			return errors.New("has an empty label (two dots in a row)")
		}
		if len(label) > maxLabelLen {
			return fmt.Errorf("label %q is longer than %d characters", label, maxLabelLen)
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("label %q starts or ends with '-'", label)
		}
		for i := 0; i < len(label); i++ {
			if !nameChar(label[i]) {
				return fmt.Errorf("label %q has %q; use letters, digits, '-' and '_'", label, label[i])
			}
		}
	}
	return nil
}

func nameChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

// canonical reports whether s is a name in the form Normalize returns; it
// guards names read from the wire.
func canonical(s string) bool {
	if len(s) < 2 || s[len(s)-1] != '.' {
		return false
	}
	return checkLabels(s[:len(s)-1]) == nil
}

// inDomain reports whether the lower-case name n is domain d or below it.
func inDomain(n, d string) bool {
	if len(n) == len(d) {
		return n == d
	}
	return len(n) > len(d) && n[len(n)-len(d)-1] == '.' && n[len(n)-len(d):] == d
}

// Suffixes of reverse-lookup names.
const (
	reverse4 = ".in-addr.arpa."
	reverse6 = ".ip6.arpa."
)

// reverseAddr parses a lower-case reverse-lookup name (5.1.32.10.in-addr.arpa.
// or the 32-nibble ip6.arpa form) into the address it names. It takes the
// name as a string (the full path) or as bytes (the UDP fast path) and
// allocates neither way: PTR answers on the fast path are allocation-free.
func reverseAddr[T ~string | ~[]byte](n T) (netip.Addr, bool) {
	switch {
	case hasSuffix(n, reverse4):
		s := n[:len(n)-len(reverse4)]
		var a [4]byte
		// Four decimal labels, least significant first, each 0-255
		// without leading zeros.
		for i := 3; i >= 0; i-- {
			end := 0
			for end < len(s) && s[end] != '.' {
				end++
			}
			if (i == 0) != (end == len(s)) {
				return netip.Addr{}, false // too few or too many labels
			}
			v, ok := decimalOctet(s[:end])
			if !ok {
				return netip.Addr{}, false
			}
			a[i] = v
			if i > 0 {
				s = s[end+1:]
			}
		}
		return netip.AddrFrom4(a), true
	case hasSuffix(n, reverse6):
		s := n[:len(n)-len(reverse6)]
		if len(s) != 63 {
			return netip.Addr{}, false
		}
		var a [16]byte
		for i := 0; i < 32; i++ {
			c := s[2*i]
			if i < 31 && s[2*i+1] != '.' {
				return netip.Addr{}, false
			}
			var v byte
			switch {
			case c >= '0' && c <= '9':
				v = c - '0'
			case c >= 'a' && c <= 'f':
				v = c - 'a' + 10
			default:
				return netip.Addr{}, false
			}
			// Nibbles come least significant first.
			idx := 31 - i
			if idx%2 == 0 {
				a[idx/2] |= v << 4
			} else {
				a[idx/2] |= v
			}
		}
		return netip.AddrFrom16(a), true
	}
	return netip.Addr{}, false
}

// decimalOctet parses 0-255 written in decimal without a sign or leading
// zeros, as strconv.ParseUint(p, 10, 8) would with that extra rule.
func decimalOctet[T ~string | ~[]byte](p T) (byte, bool) {
	if len(p) == 0 || len(p) > 3 || (len(p) > 1 && p[0] == '0') {
		return 0, false
	}
	v := 0
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int(c-'0')
	}
	if v > 255 {
		return 0, false
	}
	return byte(v), true
}

// hasSuffix is strings.HasSuffix for a name in a string or in bytes,
// compared byte by byte so that neither form is converted.
func hasSuffix[T ~string | ~[]byte](n T, suffix string) bool {
	if len(n) < len(suffix) {
		return false
	}
	n = n[len(n)-len(suffix):]
	for i := 0; i < len(suffix); i++ {
		if n[i] != suffix[i] {
			return false
		}
	}
	return true
}

// isReverse reports whether the lower-case name is under in-addr.arpa or ip6.arpa.
func isReverse[T ~string | ~[]byte](n T) bool {
	return hasSuffix(n, reverse4) || hasSuffix(n, reverse6)
}
