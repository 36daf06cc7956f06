package router

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"

	"weavemesh.dev/weave/api"
	"weavemesh.dev/weave/internal/clock"
	"weavemesh.dev/weave/peer"
	"weavemesh.dev/weave/sleeve/secure"
)

// Defaults for Config fields left zero.
const (
	DefaultPort     = 6783             // gossip, tcp+udp
	DefaultDataDir  = "/var/lib/weave" // peer name, known peers, endpoints
	DefaultHTTPAddr = "127.0.0.1:6784" // HTTP API, loopback only
	DefaultMTU      = 1376             // overlay MTU for a 1500-byte underlay
	DefaultMeshName = "weave"
	MinMTU          = 576
	MaxMTU          = 65000
)

// Config says how to run one peer router. Zero values take the defaults.
type Config struct {
	Name     peer.Name // optional: loaded from or created in DataDir
	Nickname string    // optional: the hostname
	Port     int       // optional: gossip port (tcp+udp), DefaultPort
	DataPort int       // optional: sleeve port (udp), Port+1
	DataDir  string    // optional: DefaultDataDir
	HTTPAddr string    // optional: DefaultHTTPAddr
	// HTTPToken is the API's bearer token: required when HTTPAddr is not
	// loopback, and then asked of every request; on loopback asked of
	// the requests that change state.
	HTTPToken     string
	MTU           int      // optional: DefaultMTU
	AdvertiseAddr string   // optional: address peers should use to reach us (NAT)
	Peers         []string // optional: host or host:port of peers to join
	Version       string   // optional: software version shown in status
	MetricsAddr   string   // optional: where /metrics is served, metrics.DefaultAddr; "off" for none
	// IP allocation (ipamfeature.Options): the range split among the
	// peers, the default subnet of attach, the bootstrap mode, how long a
	// lost peer's space waits to be reclaimed (negative: never), and
	// whether a range overlapping the host's routes is allowed.
	IPAllocRange         netip.Prefix
	IPAllocDefaultSubnet netip.Prefix
	IPAllocInit          string
	IPAllocReclaimAfter  time.Duration
	IPAllocOverlapOK     bool
	// Password, when set, encrypts gossip and every data-plane datagram.
	Password []byte
	// TrustedSubnets are underlay subnets whose peers may exchange data
	// with us unencrypted (both sides must trust each other).
	TrustedSubnets []netip.Prefix
	// MeshName labels gossip so meshes with different names never merge
	// (default DefaultMeshName).
	MeshName string
	// weaveDNS (dnsfeature.Options): the domain answered from the records,
	// an extra listen address in the host's namespace, the TTL of
	// answers, the upstream servers (default: /etc/resolv.conf's), and
	// whether DNS is off altogether.
	DNSDomain        string
	DNSListenAddress string
	DNSTTL           time.Duration
	DNSUpstream      []string
	NoDNS            bool
	// The Docker plugin (plugin/dockerfeature): served on PluginSocket,
	// by default on docker.DefaultSocket when Docker's plugin directory
	// exists, unless NoPlugin.
	PluginSocket string
	NoPlugin     bool
	Logger       *slog.Logger

	// The kernel datapath (router/fastdp.go): --datapath (DatapathAuto,
	// DatapathFastdp or DatapathSleeve; default auto), the VXLAN UDP port
	// (default fastdp.DefaultPort, distinct from Port and DataPort), and
	// whether to turn the device's tx-checksum-ip-generic off.
	Datapath           string
	FastdpPort         int
	FastdpNoTxChecksum bool

	// SleevePipelines is how many send and receive pipelines the sleeve
	// runs, each on its own TAP queue and socket (default
	// DefaultSleevePipelines).
	SleevePipelines int
	// SleeveCipher is the session cipher this peer asks for when it
	// starts a handshake: "auto" (or ""; AES-256-GCM where the CPU has
	// AES instructions, else ChaCha20-Poly1305), "aes-256-gcm" or
	// "chacha20-poly1305" (sleeve/secure ParseCipher).
	SleeveCipher string
	// DataPlane DataPlaneNone runs the router without bridge, TAP, sleeve
	// or kernel datapath: gossip, topology, IP allocation and weaveDNS
	// only, needing neither root nor a network namespace, so that many
	// routers share one process (router/inproc). Empty: the full router.
	DataPlane string
	// BindAddr is the address gossip binds (default gossip.DefaultBindAddr,
	// every address).
	BindAddr string
	// Clock is the time source of the router's and gossip's own rounds
	// (default the real clock).
	Clock clock.Clock
	// GossipTune adjusts memberlist's timings (see gossip.Config.Tune).
	GossipTune func(*memberlist.Config)
	// GossipBytesSent, when set, counts the bytes gossip sends (see
	// gossip.Config.BytesSent).
	GossipBytesSent *atomic.Uint64
}

// MaxSleevePipelines caps Config.SleevePipelines.
const MaxSleevePipelines = 16

// DefaultSleevePipelines is one pipeline per CPU, at most 4: more than
// the flows a host usually carries at full rate gains nothing.
func DefaultSleevePipelines() int { return min(runtime.NumCPU(), 4) }

// DataPlaneNone is Config.DataPlane for a router without a data plane.
const DataPlaneNone = "none"

// APIOff is Config.HTTPAddr for a router whose HTTP API does not listen
// (Router.ServeHTTP still answers in the same process).
const APIOff = "off"

// withDefaults validates c and fills in defaults, naming any bad field.
func (c Config) withDefaults() (Config, error) {
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	if c.Port == 0 {
		c.Port = DefaultPort
	}
	if c.Port < 1 || c.Port > 65535 {
		return c, fmt.Errorf("--port %d: must be 1-65535", c.Port)
	}
	if c.DataPort == 0 {
		c.DataPort = c.Port + 1
	}
	if c.DataPort < 1 || c.DataPort > 65535 || c.DataPort == c.Port {
		return c, fmt.Errorf("--data-port %d: must be 1-65535 and differ from --port", c.DataPort)
	}
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir
	}
	if c.SleevePipelines == 0 {
		c.SleevePipelines = DefaultSleevePipelines()
	}
	if c.SleevePipelines < 1 || c.SleevePipelines > MaxSleevePipelines {
		return c, fmt.Errorf("--sleeve-pipelines %d: must be 1-%d", c.SleevePipelines, MaxSleevePipelines)
	}
	if _, err := secure.ParseCipher(c.SleeveCipher); err != nil {
		return c, fmt.Errorf("--sleeve-cipher: %w", err)
	}
	if c.HTTPAddr == "" {
		c.HTTPAddr = DefaultHTTPAddr
	}
	if c.HTTPAddr != APIOff {
		if _, err := api.ParseAddr(c.HTTPAddr); err != nil {
			return c, fmt.Errorf("--http-addr %w", err)
		}
	}
	switch c.DataPlane {
	case "", DataPlaneNone:
	default:
		return c, fmt.Errorf("router: Config.DataPlane %q: want empty (the full router) or %q", c.DataPlane, DataPlaneNone)
	}
	if c.Clock == nil {
		c.Clock = clock.Real
	}
	if c.MTU == 0 {
		c.MTU = DefaultMTU
	}
	if c.MTU < MinMTU || c.MTU > MaxMTU {
		return c, fmt.Errorf("--mtu %d: must be %d-%d", c.MTU, MinMTU, MaxMTU)
	}
	if c.Nickname == "" {
		h, err := os.Hostname()
		if err != nil {
			h = "weave"
		}
		c.Nickname = h
	}
	if c.Version == "" {
		c.Version = "dev"
	}
	if c.MeshName == "" {
		c.MeshName = DefaultMeshName
	}
	for _, p := range c.Peers {
		if err := validPeerAddr(p); err != nil {
			return c, err
		}
	}
	if err := c.fastdpDefaults(); err != nil {
		return c, err
	}
	return c, nil
}

// validPeerAddr accepts "host" or "host:port".
func validPeerAddr(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		host, port = s, ""
	}
	if host == "" {
		return fmt.Errorf("peer %q: empty host; give host or host:port", s)
	}
	if port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("peer %q: port must be 1-65535", s)
		}
	}
	return nil
}
