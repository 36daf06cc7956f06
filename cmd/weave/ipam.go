package main

import (
	"fmt"
	"io"
	"net/netip"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"weavemesh.dev/weave/api"
	"weavemesh.dev/weave/ipam"
	"weavemesh.dev/weave/router"
)

// ipallocFlags are the IP allocation flags of weave router and launch.
type ipallocFlags struct {
	rng          string
	subnet       string
	init         string
	reclaimAfter time.Duration
	allowOverlap bool
	registered   bool // register ran: a zero reclaimAfter was given
}

func (f *ipallocFlags) register(fs *pflag.FlagSet) {
	f.registered = true
	fs.StringVar(&f.rng, "ipalloc-range", router.DefaultIPAllocRange.String(),
		"address range split among the peers for automatic allocation; the same on every peer")
	fs.StringVar(&f.subnet, "ipalloc-default-subnet", "",
		"subnet of the range that weave attach without an address allocates in (default: the whole range)")
	fs.StringVar(&f.init, "ipalloc-init", "",
		"how the range is first split: consensus=N (wait until N peers agree), seed=PEER,PEER,... (split among these peer names at once) or observer (own nothing, ask others); default: consensus=N with N this peer plus the other peers named on the command line (this host's own address does not count); the split needs a majority of N")
	fs.DurationVar(&f.reclaimAfter, "ipalloc-reclaim-after", router.DefaultIPAllocReclaimAfter,
		"reclaim the space of a peer unreachable this long (0: never; use weave rmpeer)")
	fs.BoolVar(&f.allowOverlap, "ipalloc-allow-overlap", false,
		"start even if --ipalloc-range overlaps a route or address on this host (experts only)")
}

// apply validates the flags into cfg; cfg.Peers must be set. Defaults
// stay zero in cfg, for the router to fill in.
func (f *ipallocFlags) apply(cfg *router.Config) error {
	if f.rng != "" && f.rng != router.DefaultIPAllocRange.String() {
		p, err := netip.ParsePrefix(strings.TrimSpace(f.rng))
		if err != nil {
			return fmt.Errorf("--ipalloc-range %q: want an IPv4 CIDR like %s", f.rng, router.DefaultIPAllocRange)
		}
		cfg.IPAllocRange = p
	}
	if f.subnet != "" {
		s, err := netip.ParsePrefix(strings.TrimSpace(f.subnet))
		if err != nil {
			return fmt.Errorf("--ipalloc-default-subnet %q: want a CIDR inside --ipalloc-range", f.subnet)
		}
		cfg.IPAllocDefaultSubnet = s
	}
	if _, err := ipam.ParseInit(f.init, len(cfg.Peers)+1); err != nil {
		return err
	}
	cfg.IPAllocInit = f.init
	switch {
	case f.reclaimAfter < 0:
		return fmt.Errorf("--ipalloc-reclaim-after %s: must not be negative (0 turns reclaim off)", f.reclaimAfter)
	case f.reclaimAfter == 0 && f.registered:
		cfg.IPAllocReclaimAfter = -1
	case f.reclaimAfter != router.DefaultIPAllocReclaimAfter:
		cfg.IPAllocReclaimAfter = f.reclaimAfter
	}
	cfg.IPAllocOverlapOK = f.allowOverlap
	return nil
}

// ipallocArgs are the IP allocation flags for the background router of
// weave launch; defaults are left out.
func ipallocArgs(cfg router.Config) []string {
	var out []string
	if cfg.IPAllocRange.IsValid() && cfg.IPAllocRange != router.DefaultIPAllocRange {
		out = append(out, "--ipalloc-range="+cfg.IPAllocRange.String())
	}
	if cfg.IPAllocDefaultSubnet.IsValid() {
		out = append(out, "--ipalloc-default-subnet="+cfg.IPAllocDefaultSubnet.String())
	}
	if cfg.IPAllocInit != "" {
		out = append(out, "--ipalloc-init="+cfg.IPAllocInit)
	}
	switch {
	case cfg.IPAllocReclaimAfter < 0:
		out = append(out, "--ipalloc-reclaim-after=0s")
	case cfg.IPAllocReclaimAfter > 0:
		out = append(out, "--ipalloc-reclaim-after="+cfg.IPAllocReclaimAfter.String())
	}
	if cfg.IPAllocOverlapOK {
		out = append(out, "--ipalloc-allow-overlap")
	}
	return out
}

// parseAttachItems checks the address items of attach and expose:
// IP/PREFIX, net:CIDR or net:default.
func parseAttachItems(items []string) ([]string, error) {
	out := make([]string, 0, len(items))
	for _, s := range items {
		if s == "net:default" {
			out = append(out, s)
			continue
		}
		if c, ok := strings.CutPrefix(s, "net:"); ok {
			p, err := netip.ParsePrefix(c)
			if err != nil || !p.Addr().Is4() {
				return nil, fmt.Errorf("%q: want net:CIDR such as net:10.32.4.0/24, or net:default", s)
			}
			out = append(out, "net:"+p.Masked().String())
			continue
		}
		p, err := parseCIDRs([]string{s})
		if err != nil {
			return nil, fmt.Errorf("%w, or net:CIDR, or net:default", err)
		}
		out = append(out, p...)
	}
	return out, nil
}

// withIPAMStatus adds "weave status ipam" to the status command.
func (a *app) withIPAMStatus(status *cobra.Command) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "ipam",
		Short: "Show how the address range is split among the peers, and this peer's allocations",
		Args:  argsExactly(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c := a.client()
			defer c.CloseIdleConnections()
			st, err := c.IPAMStatus(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON || jsonFlag(cmd) {
				return writeJSON(a.stdout, st)
			}
			formatIPAM(a.stdout, st)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the API's JSON")
	status.AddCommand(cmd)
	return status
}

// jsonFlag reports a --json given to the parent status command.
func jsonFlag(cmd *cobra.Command) bool {
	f := cmd.Flags().Lookup("json")
	if f == nil {
		f = cmd.InheritedFlags().Lookup("json")
	}
	return f != nil && f.Value.String() == "true"
}

func formatIPAM(w io.Writer, st api.IPAMStatus) {
	reclaim := "off (weave rmpeer only)"
	if st.ReclaimAfterSeconds > 0 {
		reclaim = (time.Duration(st.ReclaimAfterSeconds * float64(time.Second))).String()
	}
	fmt.Fprintf(w, "Range: %s (default subnet %s)\n", st.Range, st.DefaultSubnet)
	fmt.Fprintf(w, "Init: %s; reclaim after: %s\n", st.Init, reclaim)
	if st.RingID != "" {
		fmt.Fprintf(w, "Ring: %s\n", st.RingID)
	}
	if st.Ready {
		fmt.Fprintf(w, "Status: ready\n")
	} else {
		fmt.Fprintf(w, "Status: not ready: %s\n", st.Reason)
	}
	if st.Consensus != "" {
		fmt.Fprintf(w, "Consensus: %s\n", st.Consensus)
	}
	if st.Unverified > 0 {
		fmt.Fprintf(w, "Unverified: %d addresses owned here wait to be checked against the host\n", st.Unverified)
	}
	if st.Quarantined > 0 {
		fmt.Fprintf(w, "Quarantined: %d reclaimed addresses held back until %s, in case their former owner was only cut off\n", st.Quarantined, st.QuarantineUntil)
	}
	if st.PendingClaims > 0 {
		fmt.Fprintf(w, "Claiming back: %d addresses held by endpoints here lie in space other peers own now\n", st.PendingClaims)
	}
	for _, c := range st.Conflicts {
		fmt.Fprintf(w, "CONFLICT: %s\n", c)
	}
	for _, c := range st.AddressConflicts {
		fmt.Fprintf(w, "ADDRESS CONFLICT: %s\n", c)
	}
	if len(st.Peers) > 0 {
		fmt.Fprintln(w)
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "PEER\tNICKNAME\tREACHABLE\tADDRESSES\tSHARE\tSPANS\tALLOCATED")
		for _, p := range st.Peers {
			reach := "yes"
			switch {
			case p.Self:
				reach = "self"
			case p.Removed:
				reach = "removed"
			case !p.Reachable:
				reach = "no"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%.1f%%\t%d\t%d\n", p.Name, p.Nickname, reach, p.Addresses, p.Percent, p.Spans, p.Allocated)
		}
		tw.Flush()
	}
	fmt.Fprintf(w, "\nAllocations on this peer: %d\n", len(st.Allocations))
	if len(st.Allocations) > 0 {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ADDRESS\tOWNER")
		for _, al := range st.Allocations {
			fmt.Fprintf(tw, "%s\t%s\n", al.Address, al.Owner)
		}
		tw.Flush()
	}
}

func (a *app) rmpeerCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "rmpeer PEER...",
		Short: "Reclaim the address space of peers gone for good",
		Long: `Tell the mesh that PEER (a peer name, or the nickname of one peer) is gone
for good, so one surviving peer reclaims its address space at once instead of
after --ipalloc-reclaim-after. Safe to run on several hosts: the space is
reclaimed once. Never run it for a peer that is still running: stop it first.`,
		Example: `  weave rmpeer 0a:58:0a:20:01:05
  weave rmpeer host3`,
		Args: argsAtLeast(1, "at least one PEER"),
		RunE: func(cmd *cobra.Command, peers []string) error {
			c := a.client()
			defer c.CloseIdleConnections()
			resp, err := c.Rmpeer(cmd.Context(), peers)
			if err != nil {
				return err
			}
			for _, m := range resp.Messages {
				fmt.Fprintln(a.stdout, m)
			}
			return nil
		},
	}
}

func (a *app) exposeCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "expose [net:CIDR | net:default | IP/PREFIX]...",
		Short: "Give this host an address on the overlay so it can reach containers",
		Long: `Give the host an address on the weave bridge: allocated in the default
subnet (no argument or net:default) or in net:CIDR, or the IP/PREFIX given.
Exposing a subnet the host already has an address in prints that address.
Prints the host's addresses.`,
		Example: `  weave expose
  weave expose net:10.32.4.0/24`,
		RunE: func(cmd *cobra.Command, args []string) error {
			items, err := parseAttachItems(args)
			if err != nil {
				return usagef("%v", err)
			}
			c := a.client()
			defer c.CloseIdleConnections()
			resp, err := c.Expose(cmd.Context(), items)
			if err != nil {
				return err
			}
			for _, p := range resp.CIDRs {
				fmt.Fprintln(a.stdout, p)
			}
			return nil
		},
	}
}

func (a *app) hideCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "hide [net:CIDR | net:default | IP/PREFIX]...",
		Short: "Take this host's addresses off the overlay",
		Long: `Remove addresses weave expose gave the host: all of them (no argument),
those in a subnet (net:CIDR, net:default) or the one given. Allocated
addresses go back to the pool. Prints the addresses removed.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			items, err := parseAttachItems(args)
			if err != nil {
				return usagef("%v", err)
			}
			c := a.client()
			defer c.CloseIdleConnections()
			resp, err := c.Hide(cmd.Context(), items)
			if err != nil {
				return err
			}
			for _, p := range resp.CIDRs {
				fmt.Fprintln(a.stdout, p)
			}
			return nil
		},
	}
}
