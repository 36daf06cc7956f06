package api

import "time"

// DefaultAddr is where a router's HTTP API listens unless told otherwise.
const DefaultAddr = "127.0.0.1:6784"

// Status is the answer to GET /status.
type Status struct {
	Name       string `json:"name"`
	Nickname   string `json:"nickname"`
	Version    string `json:"version"`
	Ready      bool   `json:"ready"`
	Encryption bool   `json:"encryption"`
	// Port is the gossip port (tcp+udp), DataPort the sleeve port (udp).
	Port       int `json:"port"`
	DataPort   int `json:"data_port"`
	OverlayMTU int `json:"overlay_mtu"`
	// Peers counts the peers this router knows of, itself included.
	Peers int `json:"peers"`
	// Connections counts connections to other peers by state
	// ("established", "relayed", "connecting", "failed").
	Connections map[string]int `json:"connections"`
	// Datapaths counts established and relayed connections by datapath
	// ("sleeve", later "fastdp").
	Datapaths map[string]int `json:"datapaths"`
	// Drops counts frames and datagrams dropped, by reason.
	Drops map[string]uint64 `json:"drops,omitempty"`
	// DatapathFailures counts, by datapath, the times one stopped on an
	// error and had to be restarted (retries of one failure count once).
	DatapathFailures map[string]uint64 `json:"datapath_failures,omitempty"`
	// Fastdp is the kernel datapath on this host (docs/fastdp.md).
	Fastdp *FastdpStatus `json:"fastdp,omitempty"`
	// Sleeve is the user-space datapath on this host.
	Sleeve *SleeveStatus `json:"sleeve,omitempty"`
}

// SleeveStatus is the state of the sleeve's engine on one host.
type SleeveStatus struct {
	// Pipelines is the number of send (and of receive) pipelines, each
	// on its own TAP queue and UDP socket.
	Pipelines int `json:"pipelines"`
	// Datagrams sent and received on the underlay, and the system calls
	// the TAP queues and sockets made for them (reads that found
	// nothing included).
	TxDatagrams uint64 `json:"tx_datagrams"`
	RxDatagrams uint64 `json:"rx_datagrams"`
	Syscalls    uint64 `json:"syscalls"`
}

// FastdpStatus is the state of the kernel VXLAN datapath on one host.
type FastdpStatus struct {
	Mode string `json:"mode"` // --datapath: auto, fastdp or sleeve
	// VXLAN and ESP are what the kernel can do: "available" or
	// "not available: REASON".
	VXLAN string `json:"vxlan"`
	ESP   string `json:"esp"`
	// Device is the VXLAN device's name while the router uses one;
	// otherwise Reason says why there is none.
	Device     string `json:"device,omitempty"`
	Reason     string `json:"reason,omitempty"`
	Port       int    `json:"port,omitempty"` // its UDP port
	VNI        uint32 `json:"vni,omitempty"`
	MAC        string `json:"mac,omitempty"`
	TxChecksum bool   `json:"tx_checksum"` // tx-checksum-ip-generic on
	// Kernel counters of the device: frames sent into and received out
	// of the tunnel.
	TxPackets uint64 `json:"tx_packets"`
	RxPackets uint64 `json:"rx_packets"`
	TxBytes   uint64 `json:"tx_bytes"`
	RxBytes   uint64 `json:"rx_bytes"`
	// Entries is the size of the device's forwarding table.
	Entries int `json:"entries"`
}

// Peer is one member of the mesh as gossip sees it (GET /status/peers).
type Peer struct {
	Name     string    `json:"name"`
	Nickname string    `json:"nickname"`
	Address  string    `json:"address"`   // gossip address host:port
	DataAddr string    `json:"data_addr"` // sleeve address host:port
	State    string    `json:"state"`     // alive, suspect, dead, left
	Since    time.Time `json:"since"`
	Version  string    `json:"version"`
	ProtoMin int       `json:"proto_min"`
	ProtoMax int       `json:"proto_max"`
	Self     bool      `json:"self,omitempty"`
	// Unreachable are the peers this one cannot reach directly, as it
	// gossips them (traffic between them is relayed); it reaches all the
	// others.
	Unreachable []string `json:"unreachable,omitempty"`
}

// Connection is this router's data-plane view of one other peer
// (GET /status/connections).
type Connection struct {
	Peer     string `json:"peer"`
	Nickname string `json:"nickname"`
	Address  string `json:"address"` // sleeve address host:port
	// State is "established" (direct path healthy), "relayed" (direct path
	// down, traffic goes via Via), "connecting" (no heartbeat exchanged
	// yet) or "failed" (unreachable; Reason says why).
	State     string `json:"state"`
	Via       string `json:"via,omitempty"`
	Reason    string `json:"reason,omitempty"`
	Datapath  string `json:"datapath"`
	Encrypted bool   `json:"encrypted"`
	// Cipher is the sleeve session's cipher while Encrypted ("aes-256-gcm"
	// or "chacha20-poly1305"), once the handshake has finished.
	Cipher    string  `json:"cipher,omitempty"`
	MTU       int     `json:"mtu"` // largest overlay frame payload the path carries
	RTTMillis float64 `json:"rtt_ms"`
	// DatapathReason says why a direct pair is on the sleeve rather than
	// fastdp ("fastdp" or "sleeve" is Datapath).
	DatapathReason string `json:"datapath_reason,omitempty"`
	// Traffic on the sleeve link to the peer since the router started:
	// Ethernet frames and bytes sent to it (or through it, when it
	// relays), and received from it. A fastdp pair's unicast frames go
	// through the kernel and are not counted here.
	TxFrames uint64 `json:"tx_frames"`
	RxFrames uint64 `json:"rx_frames"`
	TxBytes  uint64 `json:"tx_bytes"`
	RxBytes  uint64 `json:"rx_bytes"`
}

// PeersRequest is the body of POST /connect and POST /forget.
type PeersRequest struct {
	Peers []string `json:"peers"`
}

// AttachRequest is the body of POST /attach.
type AttachRequest struct {
	// Netns is a path to a network namespace file (/var/run/netns/NAME,
	// /proc/PID/ns/net, ...). The CLI resolves names and PIDs to paths.
	Netns string `json:"netns"`
	// CIDRs are addresses with prefix, e.g. "10.32.1.5/12".
	CIDRs []string `json:"cidrs"`
	// Name, when set, is the DNS name to register for the endpoint.
	Name string `json:"name,omitempty"`
	// Iface, when set, names the interface inside the namespace (default
	// ethwe), as CNI's CNI_IFNAME does. It counts only when the endpoint
	// is made.
	Iface string `json:"iface,omitempty"`
}

// DetachRequest is the body of POST /detach.
type DetachRequest struct {
	Netns string `json:"netns"`
}

// Endpoint is one container interface attached to the weave bridge.
type Endpoint struct {
	ID        string   `json:"id"`
	Netns     string   `json:"netns"`
	HostIface string   `json:"host_iface"`
	Iface     string   `json:"iface"`
	MAC       string   `json:"mac"`
	CIDRs     []string `json:"cidrs"`
	MTU       int      `json:"mtu"`
	Name      string   `json:"name,omitempty"`
}

// Version is the answer to GET /version.
type Version struct {
	Version  string `json:"version"`
	ProtoMin int    `json:"proto_min"`
	ProtoMax int    `json:"proto_max"`
	Go       string `json:"go"`
}

// Error is the body of every non-2xx answer.
type Error struct {
	Error string `json:"error"`
}

// ResetResponse answers POST /reset: what the router did before it
// stopped (weave reset then removes what it left on the host).
type ResetResponse struct {
	// Detached are the namespaces whose endpoints were detached.
	Detached []string `json:"detached"`
	// HandedTo is the peer that got this peer's address space, with
	// Addresses of it; empty when it owned none (or IP allocation is off).
	HandedTo  string `json:"handed_to,omitempty"`
	Addresses uint32 `json:"addresses,omitempty"`
	// Warnings say what could not be done (no live peer to hand the
	// space to: the others reclaim it later).
	Warnings []string `json:"warnings,omitempty"`
}

// Targets answers GET /status/targets: the addresses this router (re)joins,
// those it was given and those it learned of peers seen alive.
type Targets struct {
	Targets []string `json:"targets"`
}
