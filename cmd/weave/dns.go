package main

import (
	"fmt"
	"io"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"weavemesh.dev/weave/api"
	"weavemesh.dev/weave/dns"
	"weavemesh.dev/weave/router"
)

// dnsFlags are the weaveDNS flags of weave router and weave launch.
type dnsFlags struct {
	domain   string
	listen   string
	ttl      int
	upstream []string
	off      bool
}

const defaultDNSDomain = "weave.local"

func (f *dnsFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.domain, "dns-domain", defaultDNSDomain, "domain weaveDNS answers for from the names of containers")
	fs.StringVar(&f.listen, "dns-listen-address", "",
		"also answer DNS here in the host's namespace, IP or IP:PORT (default "+router.DefaultDNSListenAddress+
			" when free; containers always reach weaveDNS at "+dns.ContainerNameserver.Addr().String()+")")
	fs.IntVar(&f.ttl, "dns-ttl", int(dns.DefaultTTL/time.Second), "TTL of DNS answers, in seconds")
	fs.StringSliceVar(&f.upstream, "dns-upstream", nil,
		"servers for names outside the domain, IP or IP:PORT,... (default: the nameservers of /etc/resolv.conf)")
	fs.BoolVar(&f.off, "no-dns", false, "turn weaveDNS off")
}

// apply validates the flags into cfg, leaving defaults zero.
func (f *dnsFlags) apply(cfg *router.Config) error {
	cfg.NoDNS = f.off
	if d := strings.TrimSpace(f.domain); d != defaultDNSDomain {
		canon, err := dns.ParseDomain(d)
		if err != nil {
			return fmt.Errorf("--dns-domain: %w", err)
		}
		if canon != dns.DefaultDomain {
			cfg.DNSDomain = strings.TrimSuffix(canon, ".")
		}
	}
	if f.listen != "" {
		ap, err := dns.ParseListenAddr(f.listen)
		if err != nil {
			return fmt.Errorf("--dns-listen-address: %w", err)
		}
		cfg.DNSListenAddress = ap.String()
	}
	maxTTL := int(dns.MaxTTL / time.Second)
	if f.ttl < 1 || f.ttl > maxTTL {
		return fmt.Errorf("--dns-ttl %d: must be 1-%d seconds", f.ttl, maxTTL)
	}
	if f.ttl != int(dns.DefaultTTL/time.Second) {
		cfg.DNSTTL = time.Duration(f.ttl) * time.Second
	}
	for _, u := range f.upstream {
		ap, err := dns.ParseUpstream(u)
		if err != nil {
			return fmt.Errorf("--dns-upstream: %w", err)
		}
		cfg.DNSUpstream = append(cfg.DNSUpstream, ap.String())
	}
	return nil
}

// dnsArgs are the weaveDNS flags of the background router for cfg.
func dnsArgs(cfg router.Config) []string {
	var out []string
	if cfg.NoDNS {
		out = append(out, "--no-dns")
	}
	if cfg.DNSDomain != "" {
		out = append(out, "--dns-domain="+cfg.DNSDomain)
	}
	if cfg.DNSListenAddress != "" {
		out = append(out, "--dns-listen-address="+cfg.DNSListenAddress)
	}
	if cfg.DNSTTL != 0 {
		out = append(out, "--dns-ttl="+strconv.Itoa(int(cfg.DNSTTL/time.Second)))
	}
	if len(cfg.DNSUpstream) > 0 {
		out = append(out, "--dns-upstream="+strings.Join(cfg.DNSUpstream, ","))
	}
	return out
}

// dnsNameArgs splits IP... NAME arguments, checking the addresses.
func dnsNameArgs(args []string) (string, []string, error) {
	name := args[len(args)-1]
	if _, err := netip.ParseAddr(name); err == nil {
		return "", nil, usagef("the last argument is the name, not an address: give IP... NAME")
	}
	var ips []string
	for _, s := range args[:len(args)-1] {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			if _, perr := netip.ParsePrefix(s); perr == nil {
				return "", nil, usagef("%q: give the address without prefix length", s)
			}
			return "", nil, usagef("%q is not an IP address; give IP... NAME", s)
		}
		ips = append(ips, a.Unmap().String())
	}
	return name, ips, nil
}

func (a *app) dnsAddCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "dns-add IP... NAME",
		Short: "Register NAME in weaveDNS at the given addresses",
		Long: `Register NAME (completed with the DNS domain, weave.local by default) at the
given addresses, for every container on the mesh to resolve. The names are
kept by this router (across restarts) and removed with weave dns-remove.`,
		Example: `  weave dns-add 10.32.1.5 db
  weave dns-add 10.32.1.5 10.32.1.6 web.weave.local`,
		Args: argsAtLeast(2, "one or more IP addresses and then NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, ips, err := dnsNameArgs(args)
			if err != nil {
				return err
			}
			c := a.client()
			defer c.CloseIdleConnections()
			_, err = c.DNSAdd(cmd.Context(), api.DNSRequest{Name: name, IPs: ips})
			return err
		},
	}
}

func (a *app) dnsRemoveCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "dns-remove [IP...] NAME",
		Short: "Remove NAME's addresses from weaveDNS (all of them if none are given)",
		Long: `Remove the given addresses of NAME that this router registered (with
weave dns-add or weave attach --name), or all of its addresses when none are
given. Removing what is not there is not an error.`,
		Example: `  weave dns-remove 10.32.1.5 db
  weave dns-remove web`,
		Args: argsAtLeast(1, "NAME, optionally after the IP addresses to remove"),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, ips, err := dnsNameArgs(args)
			if err != nil {
				return err
			}
			c := a.client()
			defer c.CloseIdleConnections()
			_, err = c.DNSRemove(cmd.Context(), api.DNSRequest{Name: name, IPs: ips})
			return err
		},
	}
}

func (a *app) dnsLookupCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "dns-lookup NAME|IP",
		Short: "Print the addresses of NAME (or the names of IP) in weaveDNS",
		Example: `  weave dns-lookup web
  weave dns-lookup 10.32.1.5`,
		Args: argsExactly(1, "exactly one NAME or IP"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c := a.client()
			defer c.CloseIdleConnections()
			l, err := c.DNSLookup(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			for _, s := range append(l.IPs, l.Names...) {
				fmt.Fprintln(a.stdout, s)
			}
			return nil
		},
	}
}

func (a *app) dnsArgsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "dns-args",
		Short: "Print docker run flags that make a container use weaveDNS",
		Long: `Print the docker run flags that make a container resolve names with
weaveDNS: its nameserver (answered inside every namespace weave attach
connects) and the DNS domain to search.`,
		Example: `  docker run $(weave dns-args) --name web -d nginx`,
		Args:    argsExactly(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c := a.client()
			defer c.CloseIdleConnections()
			st, err := c.DNSStatus(cmd.Context())
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "--dns=%s --dns-search=%s\n", st.Nameserver, strings.TrimSuffix(st.Domain, "."))
			return nil
		},
	}
}

// withDNSStatus adds `weave status dns` to the status command.
func (a *app) withDNSStatus(status *cobra.Command) *cobra.Command {
	status.AddCommand(&cobra.Command{
		Use:   "dns",
		Short: "List the weaveDNS entries (name, address, peer) and counters",
		Args:  argsExactly(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			asJSON, _ := cmd.Flags().GetBool("json")
			c := a.client()
			defer c.CloseIdleConnections()
			st, err := c.DNSStatus(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(a.stdout, st)
			}
			formatDNS(a.stdout, st)
			return nil
		},
	})
	return status
}

// formatDNS prints the DNS settings, entries and counters.
func formatDNS(w io.Writer, st api.DNSStatus) {
	fmt.Fprintf(w, "Domain: %s (TTL %ds)\n", st.Domain, st.TTL)
	fmt.Fprintf(w, "Nameserver for containers: %s\n", dash(st.Nameserver))
	fmt.Fprintf(w, "Listening on: %s\n", dash(strings.Join(st.Listen, ", ")))
	fmt.Fprintf(w, "Upstream: %s\n", dash(strings.Join(st.Upstream, ", ")))
	ct := st.Counters
	var answers []string
	for _, rc := range sortedKeys(ct.Answers) {
		answers = append(answers, fmt.Sprintf("%d %s", ct.Answers[rc], rc))
	}
	fmt.Fprintf(w, "Queries: %d (%d local, %d forwarded, %d upstream failures, %d truncated, %d malformed)\n",
		ct.Queries, ct.Local, ct.Forwarded, ct.UpstreamFailures, ct.Truncated, ct.Malformed)
	if len(answers) > 0 {
		fmt.Fprintf(w, "Answers: %s\n", strings.Join(answers, ", "))
	}
	fmt.Fprintf(w, "\n")
	entries := append([]api.DNSEntry(nil), st.Entries...)
	sort.SliceStable(entries, func(i, j int) bool {
		if entries[i].Name != entries[j].Name {
			return entries[i].Name < entries[j].Name
		}
		return entries[i].Address < entries[j].Address
	})
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tADDRESS\tPEER\tNICKNAME\tENDPOINT\tSTATE")
	for _, e := range entries {
		state := "ok"
		if e.Hidden {
			state = "hidden (peer gone)"
		}
		endpoint := e.Endpoint
		if endpoint == "" {
			endpoint = "(dns-add)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", e.Name, e.Address, e.Peer, dash(e.Nickname), endpoint, state)
	}
	tw.Flush()
}
