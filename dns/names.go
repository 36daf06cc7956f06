package dns

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
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
// or the 32-nibble ip6.arpa form) into the address it names.
func reverseAddr(n string) (netip.Addr, bool) {
	switch {
	case strings.HasSuffix(n, reverse4):
		parts := strings.Split(strings.TrimSuffix(n, reverse4), ".")
		if len(parts) != 4 {
			return netip.Addr{}, false
		}
		var a [4]byte
		for i, p := range parts {
			v, err := strconv.ParseUint(p, 10, 8)
			if err != nil || (len(p) > 1 && p[0] == '0') {
				return netip.Addr{}, false
			}
			a[3-i] = byte(v)
		}
		return netip.AddrFrom4(a), true
	case strings.HasSuffix(n, reverse6):
		s := strings.TrimSuffix(n, reverse6)
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

// isReverse reports whether the lower-case name is under in-addr.arpa or ip6.arpa.
func isReverse(n string) bool {
	return strings.HasSuffix(n, reverse4) || strings.HasSuffix(n, reverse6)
}
