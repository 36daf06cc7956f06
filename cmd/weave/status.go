package main

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"weavemesh.dev/weave/api"
)

func (a *app) statusCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status [peers|connections|targets|ipam|dns]",
		Short: "Show the router's status, its peers or its connections",
		Example: `  weave status
  weave status peers
  weave status connections --json`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unknown status report %q; want peers, connections, targets, ipam or dns", args[0])
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			c := a.client()
			defer c.CloseIdleConnections()
			st, err := c.Status(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(a.stdout, st)
			}
			// The router's protocol range; status still works without it.
			var v *api.Version
			if rv, err := c.Version(cmd.Context()); err == nil {
				v = &rv
			}
			formatStatus(a.stdout, st, v)
			if peers, err := c.Peers(cmd.Context()); err == nil {
				warnMixedVersions(a.stdout, peers)
			}
			// The features' sections, when they are on.
			if ip, err := c.IPAMStatus(cmd.Context()); err == nil {
				formatIPAMSummary(a.stdout, ip)
			}
			if d, err := c.DNSStatus(cmd.Context()); err == nil {
				formatDNSSummary(a.stdout, d)
			}
			return nil
		},
	}
	cmd.PersistentFlags().BoolVar(&asJSON, "json", false, "print the API's JSON")
	cmd.AddCommand(&cobra.Command{
		Use:   "targets",
		Short: "List the addresses this router joins and rejoins: given on the command line, or learned",
		Args:  argsExactly(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c := a.client()
			defer c.CloseIdleConnections()
			ts, err := c.Targets(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(a.stdout, ts)
			}
			for _, t := range ts.Targets {
				fmt.Fprintln(a.stdout, t)
			}
			return nil
		},
	}, &cobra.Command{
		Use:   "peers",
		Short: "List the members of the mesh",
		Args:  argsExactly(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c := a.client()
			defer c.CloseIdleConnections()
			peers, err := c.Peers(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(a.stdout, peers)
			}
			formatPeers(a.stdout, peers, a.now())
			return nil
		},
	}, &cobra.Command{
		Use:   "connections",
		Short: "List this router's data-plane connections to other peers",
		Args:  argsExactly(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c := a.client()
			defer c.CloseIdleConnections()
			conns, err := c.Connections(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(a.stdout, conns)
			}
			formatConnections(a.stdout, conns)
			// What the datapath dropped, by reason, under the table.
			if st, err := c.Status(cmd.Context()); err == nil {
				formatDrops(a.stdout, st.Drops)
			}
			return nil
		},
	})
	return cmd
}

// writeJSON prints v indented, as the API sent it.
func writeJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode JSON: %w", err)
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// connectionStates are shown always, in this order; others follow sorted.
var connectionStates = []string{"established", "relayed", "connecting", "failed"}

// formatStatus prints the status summary; v may be nil if /version failed.
func formatStatus(w io.Writer, st api.Status, v *api.Version) {
	ver := st.Version
	if v != nil {
		if ver == "" {
			ver = v.Version
		}
		ver += fmt.Sprintf(" (protocol %d..%d)", v.ProtoMin, v.ProtoMax)
	}
	fmt.Fprintf(w, "Version: %s\n", ver)
	name := st.Name
	if st.Nickname != "" {
		name += " (" + st.Nickname + ")"
	}
	fmt.Fprintf(w, "Name: %s\n", name)
	if !st.Ready {
		fmt.Fprintf(w, "Status: starting (not ready yet)\n")
	}
	enc := "disabled"
	if st.Encryption {
		enc = "enabled"
	}
	fmt.Fprintf(w, "Encryption: %s\n", enc)
	fmt.Fprintf(w, "Peers: %d\n", st.Peers)

	total := 0
	for _, n := range st.Connections {
		total += n
	}
	parts := make([]string, 0, len(connectionStates))
	for _, s := range connectionStates {
		parts = append(parts, fmt.Sprintf("%d %s", st.Connections[s], s))
	}
	for _, s := range sortedKeys(st.Connections) {
		if !contains(connectionStates, s) {
			parts = append(parts, fmt.Sprintf("%d %s", st.Connections[s], s))
		}
	}
	fmt.Fprintf(w, "Connections: %d (%s)\n", total, strings.Join(parts, ", "))

	dps := make([]string, 0, len(st.Datapaths))
	for _, d := range sortedKeys(st.Datapaths) {
		dps = append(dps, fmt.Sprintf("%s %d", d, st.Datapaths[d]))
	}
	if len(dps) == 0 {
		dps = append(dps, "none")
	}
	fmt.Fprintf(w, "Datapath: %s\n", strings.Join(dps, ", "))
	formatFastdp(w, st.Fastdp)
	if st.Sleeve != nil {
		fmt.Fprintf(w, "Sleeve: %d pipelines\n", st.Sleeve.Pipelines)
	}
	fmt.Fprintf(w, "Overlay MTU: %d\n", st.OverlayMTU)

	formatDrops(w, st.Drops)
	failed := make([]string, 0, len(st.DatapathFailures))
	for _, d := range sortedKeys(st.DatapathFailures) {
		failed = append(failed, fmt.Sprintf("%s %d", d, st.DatapathFailures[d]))
	}
	if len(failed) > 0 {
		fmt.Fprintf(w, "Datapath failures: %s\n", strings.Join(failed, ", "))
	}
}

// formatPeers prints the mesh members as a table, this router first.
func formatPeers(w io.Writer, peers []api.Peer, now time.Time) {
	peers = append([]api.Peer(nil), peers...)
	sort.SliceStable(peers, func(i, j int) bool {
		if peers[i].Self != peers[j].Self {
			return peers[i].Self
		}
		return peers[i].Name < peers[j].Name
	})
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tNICKNAME\tADDRESS\tDATA ADDRESS\tSTATE\tSINCE\tVERSION\tPROTOCOL")
	for _, p := range peers {
		nick := dash(p.Nickname)
		if p.Self {
			nick += " (self)"
		}
		proto := "-"
		if p.ProtoMax > 0 {
			proto = fmt.Sprintf("%d..%d", p.ProtoMin, p.ProtoMax)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.Name, nick, dash(p.Address), dash(p.DataAddr),
			dash(p.State), age(p.Since, now), dash(p.Version), proto)
	}
	tw.Flush()
	// Every peer connects to every other but those it says it cannot
	// reach; name those links.
	nicks := map[string]string{}
	for _, p := range peers {
		nicks[p.Name] = p.Name
		if p.Nickname != "" {
			nicks[p.Name] = p.Nickname
		}
	}
	for _, p := range peers {
		if len(p.Unreachable) == 0 {
			continue
		}
		var to []string
		for _, u := range p.Unreachable {
			if n, ok := nicks[u]; ok {
				to = append(to, n)
			} else {
				to = append(to, u)
			}
		}
		fmt.Fprintf(w, "%s cannot reach %s directly (relayed)\n", nicks[p.Name], strings.Join(to, ", "))
	}
}

// formatDrops prints the drop counters on one line, if any is not zero.
func formatDrops(w io.Writer, m map[string]uint64) {
	var drops uint64
	parts := make([]string, 0, len(m))
	for _, r := range sortedKeys(m) {
		if m[r] == 0 {
			continue
		}
		drops += m[r]
		parts = append(parts, fmt.Sprintf("%d %s", m[r], r))
	}
	if drops > 0 {
		fmt.Fprintf(w, "Drops: %d (%s)\n", drops, strings.Join(parts, ", "))
	}
}

// formatConnections prints the data-plane connections as a table.
func formatConnections(w io.Writer, conns []api.Connection) {
	conns = append([]api.Connection(nil), conns...)
	sort.SliceStable(conns, func(i, j int) bool { return conns[i].Peer < conns[j].Peer })
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PEER\tNICKNAME\tADDRESS\tSTATE\tDATAPATH\tMTU\tRTT\tINFO")
	for _, c := range conns {
		dp := dash(c.Datapath)
		switch {
		case c.Encrypted && c.Cipher != "":
			dp += " (encrypted, " + c.Cipher + ")"
		case c.Encrypted:
			dp += " (encrypted)"
		}
		mtu, rtt := "-", "-"
		if c.MTU > 0 {
			mtu = strconv.Itoa(c.MTU)
		}
		if c.RTTMillis > 0 {
			rtt = strconv.FormatFloat(c.RTTMillis, 'f', 1, 64) + "ms"
		}
		var info []string
		if c.Via != "" {
			info = append(info, "via "+c.Via)
		}
		if c.Reason != "" {
			info = append(info, c.Reason)
		}
		if c.DatapathReason != "" {
			info = append(info, c.DatapathReason)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c.Peer, dash(c.Nickname), dash(c.Address),
			dash(c.State), dp, mtu, rtt, dash(strings.Join(info, "; ")))
	}
	tw.Flush()
}

// formatEndpoints prints attached endpoints as a table.
func formatEndpoints(w io.Writer, eps []api.Endpoint) {
	eps = append([]api.Endpoint(nil), eps...)
	sort.SliceStable(eps, func(i, j int) bool { return eps[i].ID < eps[j].ID })
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNETNS\tIFACE\tMAC\tIPS")
	for _, e := range eps {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.ID, dash(e.Netns), dash(e.HostIface), dash(e.MAC),
			dash(strings.Join(e.CIDRs, ",")))
	}
	tw.Flush()
}

// formatEndpoint prints one endpoint on a line: host interface, MAC, IPs.
func formatEndpoint(w io.Writer, e api.Endpoint) {
	fmt.Fprintf(w, "%s %s %s\n", dash(e.HostIface), dash(e.MAC), dash(strings.Join(e.CIDRs, ",")))
}

// age says how long ago t was, coarsely: 45s, 12m, 3h4m, 5d.
func age(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t)
	switch {
	case d < 0:
		return "0s"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d/time.Minute))
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh%dm", int(d/time.Hour), int(d%time.Hour/time.Minute))
	}
	return fmt.Sprintf("%dd", int(d/(24*time.Hour)))
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// formatIPAMSummary is the ipam section of weave status.
func formatIPAMSummary(w io.Writer, st api.IPAMStatus) {
	state := "ready"
	if !st.Ready {
		state = "not ready: " + st.Reason
	}
	var owned uint32
	owners := 0
	for _, p := range st.Peers {
		if p.Self {
			owned = p.Addresses
		}
		if p.Addresses > 0 {
			owners++
		}
	}
	fmt.Fprintf(w, "\nIPAM: %s\n", state)
	fmt.Fprintf(w, "  Range: %s (default subnet %s), split among %d peers\n", st.Range, st.DefaultSubnet, owners)
	fmt.Fprintf(w, "  Here: %d addresses owned, %d allocated\n", owned, len(st.Allocations))
	if st.Quarantined > 0 || st.PendingClaims > 0 {
		fmt.Fprintf(w, "  Reclaim: %d quarantined, %d being claimed back\n", st.Quarantined, st.PendingClaims)
	}
	if n := len(st.Conflicts) + len(st.AddressConflicts); n > 0 {
		fmt.Fprintf(w, "  CONFLICTS: %d (weave status ipam)\n", n)
	}
}

// formatDNSSummary is the dns section of weave status.
func formatDNSSummary(w io.Writer, st api.DNSStatus) {
	fmt.Fprintf(w, "\nDNS: %s, TTL %ds, %d entries\n", st.Domain, st.TTL, len(st.Entries))
	fmt.Fprintf(w, "  Nameserver: %s; upstream %s\n", st.Nameserver, strings.Join(st.Upstream, ", "))
}

// warnMixedVersions says when the live peers run different builds or
// speak different protocol ranges, as during an upgrade: fine for a
// while, but finish it.
func warnMixedVersions(w io.Writer, peers []api.Peer) {
	count, ranges := map[string]int{}, map[string]int{}
	for _, p := range peers {
		if p.State != "alive" && p.State != "suspect" {
			continue
		}
		if p.Version != "" {
			count[p.Version]++
		}
		if p.ProtoMax > 0 {
			ranges[fmt.Sprintf("%d..%d", p.ProtoMin, p.ProtoMax)]++
		}
	}
	if len(count) >= 2 {
		fmt.Fprintf(w, "Warning: the mesh runs mixed versions (%s); finish the upgrade (docs/operations.md)\n", countsOf(count))
	}
	if len(ranges) >= 2 {
		fmt.Fprintf(w, "Warning: the peers speak different protocol ranges (%s); peers with none in common are refused (weave status connections)\n", countsOf(ranges))
	}
}

// countsOf lists "key on n" for each key, sorted.
func countsOf(count map[string]int) string {
	versions := make([]string, 0, len(count))
	for v := range count {
		versions = append(versions, v)
	}
	sort.Strings(versions)
	parts := make([]string, len(versions))
	for i, v := range versions {
		parts[i] = fmt.Sprintf("%s on %d", v, count[v])
	}
	return strings.Join(parts, ", ")
}
