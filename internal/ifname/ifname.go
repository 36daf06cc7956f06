// Package ifname owns the rule for Linux network interface names that the
// packages creating devices (netdev's bridge and veths, fastdp's VXLAN
// device) check their options against before asking the kernel.
package ifname

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

// Valid reports why name cannot name an interface, or nil: the kernel's
// limit of IFNAMSIZ-1 bytes, and no '/', ':', white space, "." or "..".
func Valid(name string) error {
	switch {
	case name == "":
		return errors.New("interface name is empty")
	case len(name) > unix.IFNAMSIZ-1:
		return fmt.Errorf("interface name %q is longer than %d characters", name, unix.IFNAMSIZ-1)
	case name == "." || name == "..":
		return fmt.Errorf("interface name %q is not allowed", name)
	case strings.ContainsAny(name, "/: \t\n\r\v\f"):
		return fmt.Errorf("interface name %q contains '/', ':' or white space", name)
	}
	return nil
}
