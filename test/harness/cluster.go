package harness

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"
)

// Defaults for Options fields left zero.
const (
	DefaultHosts        = 2
	DefaultMTU          = 1500
	DefaultReadyTimeout = 30 * time.Second
)

// DefaultUnderlay is the private subnet of the simulated underlay. It exists
// only inside the cluster's namespaces.
var DefaultUnderlay = netip.MustParsePrefix("192.168.77.0/24")

// Options says what cluster to build. Zero values take the defaults.
type Options struct {
	Hosts    int          // number of host namespaces, DefaultHosts
	Prefix   string       // name prefix, NewPrefix(); a fixed one (e.g. "wvdemo-") is for clusters kept on purpose
	Dir      string       // data dirs, logs, captures: <TempDir>/<Prefix>run
	Underlay netip.Prefix // host i gets address i of it, DefaultUnderlay
	MTU      int          // underlay MTU, DefaultMTU
	HostMTU  map[int]int  // per host (1-based) underlay MTU, e.g. to make one path narrower
	// WeaveBinary is the weave program; built with BuildWeave the first time
	// a router or CLI is needed when empty.
	WeaveBinary  string
	ReadyTimeout time.Duration // how long StartRouter waits for ready, DefaultReadyTimeout
	Logger       *slog.Logger
}

func (o Options) withDefaults() (Options, error) {
	if o.Hosts == 0 {
		o.Hosts = DefaultHosts
	}
	if o.Prefix == "" {
		o.Prefix = NewPrefix()
	}
	if len(o.Prefix) > 20 {
		return o, fmt.Errorf("Options.Prefix %q: at most 20 characters", o.Prefix)
	}
	if o.Dir == "" {
		o.Dir = filepath.Join(os.TempDir(), o.Prefix+"run")
	}
	if !o.Underlay.IsValid() {
		o.Underlay = DefaultUnderlay
	}
	if !o.Underlay.Addr().Is4() {
		return o, fmt.Errorf("Options.Underlay %s: want an IPv4 prefix", o.Underlay)
	}
	if max := 1<<(32-o.Underlay.Bits()) - 2; o.Hosts < 1 || o.Hosts > max || o.Hosts > 200 {
		return o, fmt.Errorf("Options.Hosts %d: must be 1-%d", o.Hosts, min(max, 200))
	}
	if o.MTU == 0 {
		o.MTU = DefaultMTU
	}
	if o.MTU < 576 || o.MTU > 9000 {
		return o, fmt.Errorf("Options.MTU %d: must be 576-9000", o.MTU)
	}
	for i, m := range o.HostMTU {
		if i < 1 || i > o.Hosts {
			return o, fmt.Errorf("Options.HostMTU: host %d: must be 1-%d", i, o.Hosts)
		}
		if m < 576 || m > 9000 {
			return o, fmt.Errorf("Options.HostMTU[%d] %d: must be 576-9000", i, m)
		}
	}
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = DefaultReadyTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o, nil
}

// Cluster is an underlay namespace with a bridge and host namespaces
// attached to it, plus whatever was created on top.
type Cluster struct {
	Opts     Options
	Prefix   string
	Dir      string
	Underlay *NS
	Hosts    []*Host // Hosts[0] is host1

	log     *slog.Logger
	cleanup Cleanup

	mu         sync.Mutex // guards containers, weave
	containers map[string]*Container
	weave      string
}

// New builds a cluster. On error everything created so far is removed.
func New(ctx context.Context, opts Options) (*Cluster, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("harness: needs root for network namespaces; run as root")
	}
	cl := &Cluster{
		Opts: opts, Prefix: opts.Prefix, Dir: opts.Dir, log: opts.Logger,
		containers: map[string]*Container{}, weave: opts.WeaveBinary,
	}
	if err := cl.build(ctx); err != nil {
		return nil, errors.Join(err, cl.Close())
	}
	return cl, nil
}

func (cl *Cluster) build(ctx context.Context) error {
	if err := os.MkdirAll(cl.Dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", cl.Dir, err)
	}
	dir := cl.Dir
	cl.cleanup.Add("dir "+dir, func() error { return os.RemoveAll(dir) })

	u, err := createNS(ctx, cl.Prefix+"underlay", cl)
	if err != nil {
		return err
	}
	cl.Underlay = u
	if err := runAll(ctx, u,
		[]string{"ip", "link", "add", "br0", "type", "bridge"},
		[]string{"ip", "link", "set", "br0", "up"},
	); err != nil {
		return err
	}

	bits := cl.Opts.Underlay.Bits()
	base := cl.Opts.Underlay.Masked().Addr().As4()
	for i := 1; i <= cl.Opts.Hosts; i++ {
		name := "host" + strconv.Itoa(i)
		ns, err := createNS(ctx, cl.Prefix+name, cl)
		if err != nil {
			return err
		}
		a := base
		a[3] += byte(i)
		h := &Host{NS: ns, Name: name, Index: i, IP: netip.AddrFrom4(a), cluster: cl,
			dataDir: filepath.Join(cl.Dir, name)}
		mtu := cl.Opts.MTU
		if m, ok := cl.Opts.HostMTU[i]; ok {
			mtu = m
		}
		h.MTU = mtu
		m := strconv.Itoa(mtu)
		// The veth is created inside the host namespace with its peer in the
		// underlay, so nothing ever appears in the root namespace.
		if err := runAll(ctx, ns,
			[]string{"ip", "link", "add", "eth0", "mtu", m, "type", "veth", "peer", "name", name, "mtu", m, "netns", u.Name},
			[]string{"ip", "addr", "add", fmt.Sprintf("%s/%d", h.IP, bits), "dev", "eth0"},
			[]string{"ip", "link", "set", "eth0", "up"},
		); err != nil {
			return err
		}
		if err := runAll(ctx, u,
			[]string{"ip", "link", "set", name, "master", "br0"},
			[]string{"ip", "link", "set", name, "up"},
		); err != nil {
			return err
		}
		cl.Hosts = append(cl.Hosts, h)
	}
	cl.log.Info("cluster created", "prefix", cl.Prefix, "hosts", cl.Opts.Hosts, "dir", cl.Dir)
	return nil
}

func runAll(ctx context.Context, ns *NS, cmds ...[]string) error {
	for _, c := range cmds {
		if _, err := ns.Exec(ctx, c...); err != nil {
			return err
		}
	}
	return nil
}

// Host returns host i (1-based).
func (cl *Cluster) Host(i int) *Host { return cl.Hosts[i-1] }

// Container returns the container of that name, or nil.
func (cl *Cluster) Container(name string) *Container {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return cl.containers[name]
}

// Containers returns every container, in creation order.
func (cl *Cluster) Containers() []*Container {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	out := make([]*Container, 0, len(cl.containers))
	for _, c := range cl.containers {
		out = append(out, c)
	}
	sortContainers(out)
	return out
}

// OnClose registers fn to run when the cluster is closed, before everything
// created earlier is removed.
func (cl *Cluster) OnClose(what string, fn func() error) { cl.cleanup.Add(what, fn) }

// WeaveBinary returns the weave program, building it on first use.
func (cl *Cluster) WeaveBinary() (string, error) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if cl.weave != "" {
		return cl.weave, nil
	}
	p, err := BuildWeave()
	if err != nil {
		return "", err
	}
	cl.weave = p
	return p, nil
}

// Close kills the processes the cluster started and removes its namespaces
// and directory, in reverse order of creation. It is safe to call twice.
func (cl *Cluster) Close() error {
	err := cl.cleanup.Run()
	if err != nil {
		cl.log.Warn("cluster cleanup", "prefix", cl.Prefix, "err", err)
	}
	return err
}

// Keep makes Close a no-op: the cluster stays up after this process exits,
// and RemovePrefixed(cl.Prefix, ...) takes it down later.
func (cl *Cluster) Keep() { cl.cleanup.Forget() }
