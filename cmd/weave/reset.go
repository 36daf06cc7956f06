package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"weavemesh.dev/weave/api"
	"weavemesh.dev/weave/dns"
	"weavemesh.dev/weave/gossip"
	"weavemesh.dev/weave/ipam"
	"weavemesh.dev/weave/netdev"
	"weavemesh.dev/weave/peer"
	"weavemesh.dev/weave/plugin/docker"
	"weavemesh.dev/weave/router"
)

// dataFiles are what a router keeps in its data dir; reset removes them
// and nothing else.
var dataFiles = []string{peer.NameFile, ipam.DataFile, gossip.KnownPeersFile, "endpoints.json", dns.ManualFile, "lock", logFile}

func (a *app) resetCmd() *cobra.Command {
	dataDir := router.DefaultDataDir
	cmd := &cobra.Command{
		Use:   "reset",
		Short: "Take this host off the mesh for good: detach, hand over the address space, stop, remove everything",
		Long: `Detach every container this router attached, give its address space to a
live peer (so nothing waits for --ipalloc-reclaim-after), stop the router,
and remove what it left on the host: the weave bridge, the VXLAN device and
its data in --data-dir (peer name, IP allocations, known peers, endpoints,
DNS entries, log). The host is then as it was before weave. With no router
running it removes what a crashed one left. Use weave stop to stop a router
and keep its identity and data.`,
		Args: argsExactly(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			c := a.client()
			defer c.CloseIdleConnections()
			resp, err := c.Reset(ctx)
			switch {
			case errors.Is(err, api.ErrNoRouter):
				fmt.Fprintln(a.stdout, "no router running; removing what one left")
			case err != nil:
				return err
			default:
				fmt.Fprintf(a.stdout, "detached %d endpoints\n", len(resp.Detached))
				if resp.HandedTo != "" {
					fmt.Fprintf(a.stdout, "handed %d addresses to peer %s\n", resp.Addresses, resp.HandedTo)
				}
				for _, w := range resp.Warnings {
					fmt.Fprintf(a.stderr, "weave: %s\n", w)
				}
				if err := a.waitStopped(ctx, c); err != nil {
					return err
				}
			}
			return a.removeLeftovers(dataDir)
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", dataDir, "the router's --data-dir, whose files are removed")
	return cmd
}

// removeLeftovers removes the bridge, the VXLAN device, sockets nobody
// answers on and the data files.
func (a *app) removeLeftovers(dataDir string) error {
	var errs []error
	if gone, err := netdev.DeleteBridgeByName(router.BridgeName); err != nil {
		errs = append(errs, err)
	} else if gone {
		fmt.Fprintf(a.stdout, "removed bridge %s\n", router.BridgeName)
	}
	removeFastdpLeftover(a.stderr)
	if removeStaleSocket(docker.DefaultSocket) {
		fmt.Fprintf(a.stdout, "removed the stale plugin socket %s\n", docker.DefaultSocket)
	}
	a.removeStaleAPISocket(a.stdout)
	var removed []string
	for _, name := range dataFiles {
		err := os.Remove(filepath.Join(dataDir, name))
		switch {
		case err == nil:
			removed = append(removed, name)
		case !errors.Is(err, os.ErrNotExist):
			errs = append(errs, err)
		}
	}
	if len(removed) > 0 {
		fmt.Fprintf(a.stdout, "removed %s from %s\n", strings.Join(removed, ", "), dataDir)
	}
	_ = os.Remove(dataDir) // only if nothing else is in it
	return errors.Join(errs...)
}

// removeStaleAPISocket removes the API's unix socket (--http-addr
// unix:///PATH) a crashed router left, saying so on w.
func (a *app) removeStaleAPISocket(w io.Writer) {
	if la, err := api.ParseAddr(a.httpAddr); err == nil && la.Network == "unix" && removeStaleSocket(la.Address) {
		fmt.Fprintf(w, "removed the stale API socket %s\n", la.Address)
	}
}

// removeStaleSocket removes the Docker plugin socket a crashed router left:
// only a socket that nobody answers on.
func removeStaleSocket(path string) bool {
	fi, err := os.Lstat(path)
	if err != nil || fi.Mode()&os.ModeSocket == 0 {
		return false
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close() // a router serves it: not ours to remove
		return false
	}
	return os.Remove(path) == nil
}
