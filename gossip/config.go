package gossip

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"

	"weavemesh.dev/weave/peer"
)

// Defaults for Config fields left zero.
const (
	DefaultBindAddr       = "0.0.0.0"
	DefaultPort           = 6783
	DefaultRejoinInterval = 10 * time.Second
	DefaultDeadRetention  = 2 * time.Minute
	DefaultLearnedPeerTTL = 72 * time.Hour
)

// Config says how to run one gossip node.
type Config struct {
	Name     peer.Name // required; also the memberlist node name
	Nickname string    // required; printable, at most MaxNicknameLen bytes
	BindAddr string    // optional: DefaultBindAddr
	Port     int       // optional: gossip port, tcp+udp, DefaultPort

	// AdvertiseAddr (a host name or IP) and AdvertisePort tell other peers
	// how to reach this one when that differs from the bound address
	// (NAT). Both optional; AdvertisePort defaults to Port.
	AdvertiseAddr string
	AdvertisePort int

	DataPort           int    // required: sleeve UDP port, advertised in metadata
	ProtoMin, ProtoMax uint8  // required: sleeve protocol versions spoken, 1 <= ProtoMin <= ProtoMax
	Version            string // optional: software version, advertised in metadata
	// Fastdp, when not zero, advertises this peer's kernel datapath in
	// its metadata (format 2). Optional: zero, sleeve only.
	Fastdp Fastdp

	DataDir string // required: the known-peers file lives here

	// SecretKey, when set (16, 24 or 32 bytes), encrypts and authenticates
	// all gossip; peers without the same key cannot join.
	SecretKey []byte
	// Label, when set, is sent with every packet; meshes with different
	// labels never merge even if their peers meet.
	Label string

	RejoinInterval time.Duration // optional: DefaultRejoinInterval
	// DeadRetention is how long Members keeps listing a dead or left member.
	DeadRetention time.Duration // optional: DefaultDeadRetention
	// LearnedPeerTTL is how long an address learned through gossip is
	// remembered after its member was last seen alive.
	LearnedPeerTTL time.Duration // optional: DefaultLearnedPeerTTL

	Logger *slog.Logger // optional: discards
	// Clock times the rejoin rounds, backoff, expiry and member state
	// changes (not memberlist's own timers); optional: the real clock.
	Clock Clock

	// AntiEntropyInterval is how often this peer sends one random member
	// its digests (gossip/antientropy.go); optional: memberlist's probe
	// interval; negative: never.
	AntiEntropyInterval time.Duration

	// Tune, when set, adjusts memberlist timings (QuickTimings, or
	// memberlist.DefaultWANConfig values for a wide-area mesh). It runs
	// before this package sets the fields it owns (name, addresses,
	// delegates, encryption, label, logging, compression), so it cannot
	// change those.
	Tune func(*memberlist.Config)

	// BytesSent, when set, counts the bytes gossip sends: datagrams, and
	// what it writes to streams whichever side opened them.
	BytesSent *atomic.Uint64
}

// QuickTimings tunes memberlist for peers on one host, as in tests: a dead
// peer is noticed within about a second and state syncs run every second.
func QuickTimings(c *memberlist.Config) {
	c.TCPTimeout = 2 * time.Second
	c.IndirectChecks = 1
	c.RetransmitMult = 3
	c.SuspicionMult = 3
	c.SuspicionMaxTimeoutMult = 2
	c.PushPullInterval = time.Second
	c.ProbeInterval = 200 * time.Millisecond
	c.ProbeTimeout = 100 * time.Millisecond
	c.GossipInterval = 20 * time.Millisecond
	c.GossipToTheDeadTime = 2 * time.Second
	c.DeadNodeReclaimTime = time.Second
	c.AwarenessMaxMultiplier = 2
}

// withDefaults validates c and fills in defaults, naming any bad field.
func (c Config) withDefaults() (Config, error) {
	if c.Name == peer.None || c.Name == peer.Broadcast || uint64(c.Name) > uint64(peer.Broadcast) {
		return c, fmt.Errorf("gossip: Config.Name %s: must be a real peer name", c.Name)
	}
	if c.Nickname == "" {
		return c, fmt.Errorf("gossip: Config.Nickname is required")
	}
	if len(c.Nickname) > MaxNicknameLen {
		return c, fmt.Errorf("gossip: Config.Nickname is %d bytes, at most %d allowed", len(c.Nickname), MaxNicknameLen)
	}
	if err := checkText(c.Nickname); err != nil {
		return c, fmt.Errorf("gossip: Config.Nickname %q: %w", c.Nickname, err)
	}
	if len(c.Version) > MaxVersionLen {
		return c, fmt.Errorf("gossip: Config.Version is %d bytes, at most %d allowed", len(c.Version), MaxVersionLen)
	}
	if err := checkText(c.Version); err != nil {
		return c, fmt.Errorf("gossip: Config.Version %q: %w", c.Version, err)
	}
	if c.BindAddr == "" {
		c.BindAddr = DefaultBindAddr
	}
	if _, err := netip.ParseAddr(c.BindAddr); err != nil {
		return c, fmt.Errorf("gossip: Config.BindAddr %q: want an IP address: %w", c.BindAddr, err)
	}
	if c.Port == 0 {
		c.Port = DefaultPort
	}
	if c.Port < 1 || c.Port > 65535 {
		return c, fmt.Errorf("gossip: Config.Port %d: must be 1-65535", c.Port)
	}
	if c.AdvertisePort == 0 {
		c.AdvertisePort = c.Port
	}
	if c.AdvertisePort < 1 || c.AdvertisePort > 65535 {
		return c, fmt.Errorf("gossip: Config.AdvertisePort %d: must be 1-65535", c.AdvertisePort)
	}
	if c.AdvertiseAddr != "" {
		ip, err := resolveAdvertise(c.AdvertiseAddr)
		if err != nil {
			return c, fmt.Errorf("gossip: Config.AdvertiseAddr %q: %w", c.AdvertiseAddr, err)
		}
		c.AdvertiseAddr = ip.String()
	}
	if c.DataPort < 1 || c.DataPort > 65535 {
		return c, fmt.Errorf("gossip: Config.DataPort %d: must be 1-65535", c.DataPort)
	}
	if c.ProtoMin == 0 || c.ProtoMin > c.ProtoMax {
		return c, fmt.Errorf("gossip: Config.ProtoMin %d / ProtoMax %d: want 1 <= ProtoMin <= ProtoMax", c.ProtoMin, c.ProtoMax)
	}
	if c.DataDir == "" {
		return c, fmt.Errorf("gossip: Config.DataDir is required (known peers are kept there)")
	}
	switch len(c.SecretKey) {
	case 0, 16, 24, 32:
	default:
		return c, fmt.Errorf("gossip: Config.SecretKey is %d bytes; want 16, 24 or 32", len(c.SecretKey))
	}
	if len(c.Label) > 255 {
		return c, fmt.Errorf("gossip: Config.Label is %d bytes, at most 255 allowed", len(c.Label))
	}
	if c.RejoinInterval == 0 {
		c.RejoinInterval = DefaultRejoinInterval
	}
	if c.RejoinInterval < 0 {
		return c, fmt.Errorf("gossip: Config.RejoinInterval %s: must be positive", c.RejoinInterval)
	}
	if c.DeadRetention == 0 {
		c.DeadRetention = DefaultDeadRetention
	}
	if c.DeadRetention < 0 {
		return c, fmt.Errorf("gossip: Config.DeadRetention %s: must be positive", c.DeadRetention)
	}
	if c.LearnedPeerTTL == 0 {
		c.LearnedPeerTTL = DefaultLearnedPeerTTL
	}
	if c.LearnedPeerTTL < 0 {
		return c, fmt.Errorf("gossip: Config.LearnedPeerTTL %s: must be positive", c.LearnedPeerTTL)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Clock == nil {
		c.Clock = realClock
	}
	return c, nil
}

// resolveAdvertise turns a host name or IP into one IP: memberlist
// advertises an IP, never a name.
func resolveAdvertise(host string) (netip.Addr, error) {
	if ip, err := netip.ParseAddr(host); err == nil {
		return ip.Unmap(), nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("resolve: %w", err)
	}
	if len(ips) == 0 {
		return netip.Addr{}, fmt.Errorf("resolve: no addresses")
	}
	return ips[0].Unmap(), nil
}

// memberlistConfig builds the memberlist configuration for c, with n
// behind every delegate.
func (c Config) memberlistConfig(n *Node) *memberlist.Config {
	mc := memberlist.DefaultLANConfig()
	// A peer that restarts with a new address (DHCP, a moved VM) may take
	// its name back once its old incarnation has been dead this long.
	mc.DeadNodeReclaimTime = 30 * time.Second
	if c.Tune != nil {
		c.Tune(mc)
	}
	mc.Name = c.Name.String()
	mc.BindAddr = c.BindAddr
	mc.BindPort = c.Port
	mc.AdvertiseAddr = c.AdvertiseAddr
	mc.AdvertisePort = c.AdvertisePort
	// Compression costs CPU on every packet and buys little on our small
	// binary messages.
	mc.EnableCompression = false
	mc.SecretKey = nil
	mc.Keyring = nil
	if len(c.SecretKey) > 0 {
		mc.SecretKey = append([]byte(nil), c.SecretKey...)
		mc.GossipVerifyIncoming = true
		mc.GossipVerifyOutgoing = true
	}
	mc.Label = c.Label
	mc.SkipInboundLabelCheck = false
	mc.Delegate = (*delegate)(n)
	mc.DelegateProtocolVersion = pushPullFormat
	mc.DelegateProtocolMin = pushPullFormat
	mc.DelegateProtocolMax = pushPullFormat
	mc.Events = (*events)(n)
	mc.Alive = (*aliveCheck)(n)
	mc.Conflict = (*conflicts)(n)
	mc.LogOutput = nil
	mc.Logger = newMemberlistLogger(c.Logger, n.logLimit)
	return mc
}

// advertiseHint lists this host's global IPv4 addresses, as candidates for
// --advertise-addr.
func advertiseHint() string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return ""
	}
	var ips []string
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().Is4() && p.Addr().IsGlobalUnicast() {
			ips = append(ips, p.Addr().String())
		}
	}
	if len(ips) == 0 {
		return ""
	}
	return " (this host has " + strings.Join(ips, ", ") + ")"
}
