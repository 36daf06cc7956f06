// Package inproc owns meshes of many real routers in one process: each
// router runs without a data plane (router.DataPlaneNone) on its own
// loopback address (127.NET.x.y, the same gossip port for all), with its
// own data directory, peer name, clock and logger, and no HTTP listener
// (the API answers through Router.ServeHTTP). Gossip, topology, IP
// allocation and weaveDNS run their real code over real sockets; only
// frames are not carried. Tests and bench/scale use it to run hundreds of
// peers on one machine without root.
package inproc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"

	"weavemesh.dev/weave/internal/clock"
	"weavemesh.dev/weave/peer"
	"weavemesh.dev/weave/router"
)

// MaxSize is the most routers one mesh holds: 250 addresses in each of
// the 256 third octets of its 127.NET/16.
const MaxSize = 250 * 256

// Options configures New. Zero values take the defaults.
type Options struct {
	// Dir is the parent of the routers' data directories (required).
	Dir string
	// Size is how many routers the mesh may hold (required): their names
	// are fixed up front.
	Size int
	// Seeds is how many of the first routers IP allocation splits its
	// range among at the start (seed mode, so no consensus round depends
	// on who joined); the others get space by donation when they first
	// allocate, as in a mesh launched with a few initial peers. Optional:
	// 3, or Size if smaller.
	Seeds int
	// Net is the second octet of the routers' loopback addresses;
	// optional: a free one is picked from 16-250.
	Net uint8
	// Port is every router's gossip port; optional: router.DefaultPort.
	// weaveDNS answers on Port+2 of each router's address.
	Port int
	// ReclaimAfter is how long a lost peer's address space waits to be
	// reclaimed (router.Config.IPAllocReclaimAfter); optional.
	ReclaimAfter time.Duration
	// Tune adjusts memberlist's timings of every router; optional.
	Tune func(*memberlist.Config)
	// Clock gives router i its clock; optional: the real clock.
	Clock func(i int) clock.Clock
	// CountBytes counts the gossip bytes each router sends (BytesSent).
	CountBytes bool
	// Logger receives every router's lines, each with "self" naming the
	// router; optional: discards.
	Logger *slog.Logger
}

// Mesh is a set of routers in this process. Its methods are safe for
// concurrent use.
type Mesh struct {
	opts  Options
	seeds string // --ipalloc-init of every router

	sent []atomic.Uint64 // gossip bytes sent by each router (CountBytes)

	mu      sync.Mutex // guards routers and cancels
	routers []*router.Router
	cancels []context.CancelFunc
}

// New validates o and returns a mesh with no router running yet.
func New(o Options) (*Mesh, error) {
	if o.Dir == "" {
		return nil, errors.New("inproc: Options.Dir is required")
	}
	if o.Size < 1 || o.Size > MaxSize {
		return nil, fmt.Errorf("inproc: Options.Size %d: want 1-%d", o.Size, MaxSize)
	}
	if o.Port == 0 {
		o.Port = router.DefaultPort
	}
	if o.Port < 1 || o.Port > 65533 {
		return nil, fmt.Errorf("inproc: Options.Port %d: want 1-65533 (weaveDNS uses Port+2)", o.Port)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Clock == nil {
		o.Clock = func(int) clock.Clock { return clock.Real }
	}
	if o.Net == 0 {
		n, err := freeNet(o.Port)
		if err != nil {
			return nil, err
		}
		o.Net = n
	}
	m := &Mesh{opts: o, routers: make([]*router.Router, o.Size), cancels: make([]context.CancelFunc, o.Size),
		sent: make([]atomic.Uint64, o.Size)}
	if o.Seeds == 0 {
		o.Seeds = min(3, o.Size)
	}
	if o.Seeds < 1 || o.Seeds > o.Size {
		return nil, fmt.Errorf("inproc: Options.Seeds %d: want 1-%d", o.Seeds, o.Size)
	}
	m.opts.Seeds = o.Seeds
	names := make([]string, o.Seeds)
	for i := range names {
		names[i] = m.Name(i).String()
	}
	m.seeds = "seed=" + strings.Join(names, ",")
	return m, nil
}

// freeNet picks a second octet whose first address has the gossip port
// free, so meshes of processes running at once do not meet.
func freeNet(port int) (uint8, error) {
	start := 16 + rand.IntN(235)
	for k := 0; k < 235; k++ {
		n := uint8(16 + (start-16+k)%235)
		ln, err := net.Listen("tcp", net.JoinHostPort(netip.AddrFrom4([4]byte{127, n, 0, 1}).String(), strconv.Itoa(port)))
		if err != nil {
			continue
		}
		ln.Close()
		return n, nil
	}
	return 0, fmt.Errorf("inproc: no 127.NET.0.1:%d free for NET in 16-250", port)
}

// Size is how many routers the mesh may hold.
func (m *Mesh) Size() int { return m.opts.Size }

// Addr is router i's loopback address.
func (m *Mesh) Addr(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{127, m.opts.Net, byte(i / 250), byte(i%250 + 1)})
}

// GossipAddr is router i's gossip address, for joining it.
func (m *Mesh) GossipAddr(i int) string {
	return net.JoinHostPort(m.Addr(i).String(), strconv.Itoa(m.opts.Port))
}

// DNSAddr is where router i answers DNS.
func (m *Mesh) DNSAddr(i int) netip.AddrPort {
	return netip.AddrPortFrom(m.Addr(i), uint16(m.opts.Port+2))
}

// Name is router i's peer name.
func (m *Mesh) Name(i int) peer.Name {
	return peer.Name(0x02_00_00_00_00_00 | uint64(m.opts.Net)<<24 | uint64(i+1))
}

// Index returns the index of the router named n.
func (m *Mesh) Index(n peer.Name) (int, bool) {
	i := int(uint64(n)&0xffffff) - 1
	if i < 0 || i >= m.opts.Size || m.Name(i) != n {
		return 0, false
	}
	return i, true
}

// Config is router i's configuration, joining the routers join.
func (m *Mesh) Config(i int, join ...int) router.Config {
	peers := make([]string, len(join))
	for k, j := range join {
		peers[k] = m.GossipAddr(j)
	}
	addr := m.Addr(i).String()
	return router.Config{
		Name: m.Name(i), Nickname: "r" + strconv.Itoa(i), Version: "inproc",
		Port: m.opts.Port, BindAddr: addr, Peers: peers,
		DataDir:   filepath.Join(m.opts.Dir, "r"+strconv.Itoa(i)),
		DataPlane: router.DataPlaneNone, HTTPAddr: router.APIOff, MetricsAddr: "off", NoPlugin: true,
		MeshName:            "inproc-" + strconv.Itoa(int(m.opts.Net)),
		IPAllocInit:         m.seeds,
		IPAllocReclaimAfter: m.opts.ReclaimAfter,
		DNSListenAddress:    m.DNSAddr(i).String(),
		// Nothing asks for other names; should anything, it stays on
		// this router's own address.
		DNSUpstream: []string{net.JoinHostPort(addr, strconv.Itoa(m.opts.Port+3))},
		Clock:       m.opts.Clock(i),
		GossipTune:  m.opts.Tune, GossipBytesSent: m.bytesSent(i),
		Logger: m.opts.Logger,
	}
}

// Start starts router i, joining the routers join, and returns once it is
// ready. It runs until Stop, Kill or Close; ctx bounds the start only.
func (m *Mesh) Start(ctx context.Context, i int, join ...int) (*router.Router, error) {
	if i < 0 || i >= m.opts.Size {
		return nil, fmt.Errorf("inproc: router %d: want 0-%d", i, m.opts.Size-1)
	}
	m.mu.Lock()
	running := m.routers[i] != nil
	m.mu.Unlock()
	if running {
		return nil, fmt.Errorf("inproc: router %d is running", i)
	}
	life, cancel := context.WithCancel(context.Background())
	stopStart := context.AfterFunc(ctx, cancel)
	r, err := router.Start(life, m.Config(i, join...))
	stopped := !stopStart()
	if err == nil && stopped {
		// ctx ended during the start: the router is on its way out.
		err = ctx.Err()
		r.Kill()
		r.Wait()
	}
	if err != nil {
		cancel()
		return nil, fmt.Errorf("inproc: start router %d: %w", i, err)
	}
	m.mu.Lock()
	m.routers[i], m.cancels[i] = r, cancel
	m.mu.Unlock()
	return r, nil
}

// Router returns router i, or nil when it is not running.
func (m *Mesh) Router(i int) *router.Router {
	m.mu.Lock()
	defer m.mu.Unlock()
	if i < 0 || i >= len(m.routers) {
		return nil
	}
	return m.routers[i]
}

// Running lists the indexes of the running routers.
func (m *Mesh) Running() []int {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []int
	for i, r := range m.routers {
		if r != nil {
			out = append(out, i)
		}
	}
	return out
}

// take removes router i from the mesh's table.
func (m *Mesh) take(i int) (*router.Router, context.CancelFunc) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if i < 0 || i >= len(m.routers) {
		return nil, nil
	}
	r, c := m.routers[i], m.cancels[i]
	m.routers[i], m.cancels[i] = nil, nil
	return r, c
}

// Stop stops router i cleanly (it leaves the mesh) and waits.
func (m *Mesh) Stop(i int) {
	r, cancel := m.take(i)
	if r == nil {
		return
	}
	cancel()
	r.Wait()
}

// Kill stops router i without leaving, as a crash would, and waits.
func (m *Mesh) Kill(i int) {
	r, cancel := m.take(i)
	if r == nil {
		return
	}
	r.Kill()
	r.Wait()
	cancel()
}

// Close kills every running router, in parallel, and waits for all.
func (m *Mesh) Close() {
	var wg sync.WaitGroup
	for _, i := range m.Running() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.Kill(i)
		}()
	}
	wg.Wait()
}

// RemoveData deletes router i's data directory (a host that lost its
// disk); the router must not be running.
func (m *Mesh) RemoveData(i int) error {
	if m.Router(i) != nil {
		return fmt.Errorf("inproc: router %d is running", i)
	}
	return os.RemoveAll(filepath.Join(m.opts.Dir, "r"+strconv.Itoa(i)))
}
