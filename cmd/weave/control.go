package main

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"weavemesh.dev/weave/api"
	"weavemesh.dev/weave/router"
)

func (a *app) connectCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "connect PEER...",
		Short:   "Ask the router to join more peers (host or host:port)",
		Example: `  weave connect 10.0.0.4 10.0.0.5:6783`,
		Args:    argsAtLeast(1, "at least one peer as host or host:port"),
		RunE: func(cmd *cobra.Command, peers []string) error {
			if err := validPeers(peers); err != nil {
				return err
			}
			c := a.client()
			defer c.CloseIdleConnections()
			return c.Connect(cmd.Context(), peers)
		},
	}
}

func (a *app) forgetCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "forget PEER...",
		Short:   "Ask the router to stop connecting to peers it was given",
		Example: `  weave forget 10.0.0.4`,
		Args:    argsAtLeast(1, "at least one peer as host or host:port"),
		RunE: func(cmd *cobra.Command, peers []string) error {
			if err := validPeers(peers); err != nil {
				return err
			}
			c := a.client()
			defer c.CloseIdleConnections()
			return c.Forget(cmd.Context(), peers)
		},
	}
}

func validPeers(peers []string) error {
	for _, p := range peers {
		if err := validHostPort(p); err != nil {
			return fmt.Errorf("peer %w", err)
		}
	}
	return nil
}

func (a *app) attachCmd() *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:   "attach [IP/PREFIX | net:CIDR | net:default]... NETNS",
		Short: "Connect a network namespace to the overlay with given or allocated addresses",
		Long: `Connect a network namespace to the overlay: create a veth pair, put the
ethwe end into NETNS with the given addresses and the other end on the weave
bridge. NETNS is a name under /var/run/netns (ip netns add NAME), a PID (its
/proc/PID/ns/net) or a path to a namespace file. Prints the host interface,
MAC address and addresses of the new endpoint.

With no address, or with net:default, an address is allocated in the default
subnet (--ipalloc-default-subnet); net:CIDR allocates one in that subnet of
the allocation range. Allocated addresses are released by weave detach.`,
		Example: `  weave attach ns1
  weave attach net:10.32.4.0/24 net:default ns1
  weave attach 10.32.1.5/12 ns1
  weave attach 10.32.1.6/12 fd00::6/64 $(docker inspect -f '{{.State.Pid}}' web)`,
		Args: argsAtLeast(1, "NETNS, after any IP/PREFIX, net:CIDR or net:default"),
		RunE: func(cmd *cobra.Command, args []string) error {
			cidrs, err := parseAttachItems(args[:len(args)-1])
			if err != nil {
				return err
			}
			netns, err := a.resolveNetns(args[len(args)-1], true)
			if err != nil {
				return err
			}
			c := a.client()
			defer c.CloseIdleConnections()
			ep, err := c.Attach(cmd.Context(), api.AttachRequest{Netns: netns, CIDRs: cidrs, Name: name})
			if err != nil {
				return err
			}
			formatEndpoint(a.stdout, ep)
			return nil
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "DNS name to register for the endpoint")
	return cmd
}

func (a *app) detachCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "detach NETNS",
		Short: "Remove a network namespace's endpoint from the overlay",
		Long: `Remove the endpoint weave attach made in NETNS (a name under
/var/run/netns, a PID or a path). The namespace need not exist any more.
Prints the host interface, MAC address and addresses of the removed endpoint.`,
		Example: `  weave detach ns1`,
		Args:    argsExactly(1, "exactly one NETNS"),
		RunE: func(cmd *cobra.Command, args []string) error {
			netns, err := a.resolveNetns(args[0], false)
			if err != nil {
				return err
			}
			c := a.client()
			defer c.CloseIdleConnections()
			ep, err := c.Detach(cmd.Context(), api.DetachRequest{Netns: netns})
			if err != nil {
				return err
			}
			formatEndpoint(a.stdout, ep)
			return nil
		},
	}
}

func (a *app) psCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "ps",
		Short: "List attached endpoints with their MAC and IP addresses",
		Args:  argsExactly(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c := a.client()
			defer c.CloseIdleConnections()
			eps, err := c.Endpoints(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(a.stdout, eps)
			}
			formatEndpoints(a.stdout, eps)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the API's JSON")
	return cmd
}

func (a *app) versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of this binary and of the running router",
		Args:  argsExactly(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			protoMin, protoMax, _ := router.ProtocolRange()
			fmt.Fprintf(a.stdout, "weave %s (protocol %d..%d, %s)\n", a.version, protoMin, protoMax, runtime.Version())
			c := a.client()
			defer c.CloseIdleConnections()
			v, err := c.Version(cmd.Context())
			switch {
			case errors.Is(err, api.ErrNoRouter):
				fmt.Fprintf(a.stdout, "router: none running on %s\n", c.Addr())
				return nil
			case err != nil:
				return err
			}
			fmt.Fprintf(a.stdout, "router %s (protocol %d..%d, %s) on %s\n", v.Version, v.ProtoMin, v.ProtoMax, v.Go, c.Addr())
			return nil
		},
	}
}

// parseCIDRs checks the IP/PREFIX arguments of attach and normalises them.
func parseCIDRs(args []string) ([]string, error) {
	out := make([]string, 0, len(args))
	for _, s := range args {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("%q: want an address with prefix length, like 10.32.1.5/12", s)
		}
		addr := p.Addr()
		switch {
		case addr.Is4In6():
			return nil, fmt.Errorf("%q: write IPv4 addresses as a.b.c.d/n", s)
		case addr.IsUnspecified(), addr.IsLoopback(), addr.IsMulticast():
			return nil, fmt.Errorf("%q: not a unicast host address", s)
		case p.Bits() == 0:
			return nil, fmt.Errorf("%q: prefix length 0 would route everything to the overlay", s)
		}
		if addr.Is4() && p.Bits() <= 30 {
			if addr == p.Masked().Addr() {
				return nil, fmt.Errorf("%q is the network address of %s; pick a host address", s, p.Masked())
			}
			if addr == lastAddr(p) {
				return nil, fmt.Errorf("%q is the broadcast address of %s; pick a host address", s, p.Masked())
			}
		}
		out = append(out, p.String())
	}
	return out, nil
}

// lastAddr is the highest address of an IPv4 prefix.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// resolveNetns turns NETNS (a name under netnsDir, a PID, or a path) into
// the absolute path of a namespace file the router can open. With
// mustExist, the file has to be there.
func (a *app) resolveNetns(arg string, mustExist bool) (string, error) {
	var path, what string
	switch {
	case arg == "":
		return "", fmt.Errorf("NETNS is empty; give a name under %s, a PID or a path", a.netnsDir)
	case strings.ContainsRune(arg, '/'):
		abs, err := filepath.Abs(arg)
		if err != nil {
			return "", fmt.Errorf("NETNS %q: %w", arg, err)
		}
		path, what = abs, "network namespace file "+abs
	case isDigits(arg):
		pid, err := strconv.Atoi(arg)
		if err != nil || pid < 1 {
			return "", fmt.Errorf("NETNS %q: not a valid PID", arg)
		}
		path = filepath.Join(a.procDir, strconv.Itoa(pid), "ns", "net")
		what = "process " + strconv.Itoa(pid)
	case arg == "." || arg == "..":
		return "", fmt.Errorf("NETNS %q: not a namespace name", arg)
	default:
		path = filepath.Join(a.netnsDir, arg)
		what = "network namespace " + strconv.Quote(arg)
	}
	if !mustExist {
		return path, nil
	}
	if _, err := os.Stat(path); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			switch {
			case isDigits(arg):
				return "", fmt.Errorf("no %s: %s does not exist", what, path)
			case strings.ContainsRune(arg, '/'):
				return "", fmt.Errorf("%s does not exist", path)
			}
			return "", fmt.Errorf("no %s: %s does not exist; create it with ip netns add %s, or give a PID or path", what, path, arg)
		}
		return "", fmt.Errorf("NETNS %q: %w", arg, err)
	}
	return path, nil
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
