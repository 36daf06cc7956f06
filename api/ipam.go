package api

import (
	"context"
	"net/http"
	"net/netip"
	"strings"
)

// IPAMStatus is the answer to GET /status/ipam.
type IPAMStatus struct {
	Range         string `json:"range"`
	DefaultSubnet string `json:"default_subnet"`
	// Init is the bootstrap mode: "consensus=N", "seed=..." or "observer".
	Init string `json:"init"`
	// ReclaimAfterSeconds is --ipalloc-reclaim-after; 0 when off.
	ReclaimAfterSeconds float64 `json:"reclaim_after_seconds"`
	// RingID identifies the split of the range; empty before it exists.
	RingID string `json:"ring_id,omitempty"`
	// Ready is set when this peer can allocate; Reason says why not.
	Ready  bool   `json:"ready"`
	Reason string `json:"reason,omitempty"`
	// Peers is each peer's share of the range.
	Peers []IPAMPeer `json:"peers"`
	// Allocations are this peer's addresses and who holds them.
	Allocations []IPAMAllocation `json:"allocations"`
	// Unverified counts owned addresses not yet checked against the host.
	Unverified uint64 `json:"unverified,omitempty"`
	// Consensus says how the initial split stands while there is none:
	// how many peers are needed, how many were heard from.
	Consensus string `json:"consensus,omitempty"`
	// Quarantined counts reclaimed addresses held back, in case their
	// former owner was only cut off, until QuarantineUntil at the latest.
	Quarantined     uint64 `json:"quarantined,omitempty"`
	QuarantineUntil string `json:"quarantine_until,omitempty"`
	// PendingClaims counts addresses this peer's endpoints hold in space
	// other peers own now, being claimed back.
	PendingClaims int `json:"pending_claims,omitempty"`
	// Conflicts describe separately initialised rings met on the mesh,
	// with the steps to resolve them.
	Conflicts []string `json:"conflicts,omitempty"`
	// AddressConflicts describe addresses found handed out twice.
	AddressConflicts []string `json:"address_conflicts,omitempty"`
	// Counters count what this peer's allocator did since it started.
	Counters IPAMCounters `json:"counters"`
}

// IPAMCounters count a peer's IPAM events since it started.
type IPAMCounters struct {
	Donated      uint64 `json:"donated"`
	Received     uint64 `json:"received"`
	Reclaims     uint64 `json:"reclaims"`
	HandedBack   uint64 `json:"handed_back"`
	ClaimedBack  uint64 `json:"claimed_back"`
	Conflicts    uint64 `json:"conflicts"`
	RingsAdopted uint64 `json:"rings_adopted"`
}

// IPAMPeer is one peer's share of the range.
type IPAMPeer struct {
	Name      string  `json:"name"`
	Nickname  string  `json:"nickname,omitempty"`
	Self      bool    `json:"self,omitempty"`
	Reachable bool    `json:"reachable"`
	Removed   bool    `json:"removed,omitempty"`
	Addresses uint32  `json:"addresses"`
	Percent   float64 `json:"percent"`
	Spans     int     `json:"spans"`
	Allocated uint32  `json:"allocated"`
}

// IPAMAllocation is one allocated address. Owner is an endpoint id,
// "weave:expose" for the host, or "recovered:ADDR" for an address found in
// use on the host after its record was lost.
type IPAMAllocation struct {
	Address string `json:"address"`
	Owner   string `json:"owner"`
}

// RmpeerRequest is the body of POST /ipam/rmpeer.
type RmpeerRequest struct {
	Peers []string `json:"peers"`
}

// Validate checks the request before it reaches the router.
func (r RmpeerRequest) Validate() error {
	if len(r.Peers) == 0 {
		return BadRequest("peers: give at least one peer name")
	}
	for _, p := range r.Peers {
		if strings.TrimSpace(p) == "" {
			return BadRequest("peers: empty peer name")
		}
	}
	return nil
}

// RmpeerResponse says what became of each removed peer.
type RmpeerResponse struct {
	Messages []string `json:"messages"`
}

// ExposeRequest is the body of POST /expose and POST /hide: items as for
// attach ("net:CIDR", "net:default" or IP/PREFIX); none means the default
// subnet (expose) or every exposed address (hide).
type ExposeRequest struct {
	CIDRs []string `json:"cidrs"`
}

// Validate checks the request before it reaches the router.
func (r ExposeRequest) Validate() error {
	for _, c := range r.CIDRs {
		if err := validAddressItem(c); err != nil {
			return err
		}
	}
	return nil
}

// ExposeResponse lists the host's addresses added (expose) or removed
// (hide).
type ExposeResponse struct {
	CIDRs []string `json:"cidrs"`
}

// validAddressItem accepts IP/PREFIX, "net:default" and "net:CIDR".
func validAddressItem(c string) error {
	if c == "net:default" {
		return nil
	}
	if s, ok := strings.CutPrefix(c, "net:"); ok {
		if _, err := netip.ParsePrefix(s); err != nil {
			return BadRequest("cidrs: %q: want net:CIDR such as net:10.32.4.0/24, or net:default", c)
		}
		return nil
	}
	if _, err := netip.ParsePrefix(c); err != nil {
		return BadRequest("cidrs: %q is not an address with prefix length (like 10.32.1.5/12), net:CIDR or net:default", c)
	}
	return nil
}

// IPAMStatus returns GET /status/ipam.
func (c *Client) IPAMStatus(ctx context.Context) (IPAMStatus, error) {
	var s IPAMStatus
	return s, c.do(ctx, http.MethodGet, "/status/ipam", nil, &s)
}

// Rmpeer asks the router to reclaim the space of peers gone for good
// (POST /ipam/rmpeer).
func (c *Client) Rmpeer(ctx context.Context, peers []string) (RmpeerResponse, error) {
	var r RmpeerResponse
	return r, c.do(ctx, http.MethodPost, "/ipam/rmpeer", RmpeerRequest{Peers: peers}, &r)
}

// Expose gives the host addresses on the overlay (POST /expose).
func (c *Client) Expose(ctx context.Context, cidrs []string) (ExposeResponse, error) {
	var r ExposeResponse
	return r, c.do(ctx, http.MethodPost, "/expose", ExposeRequest{CIDRs: cidrs}, &r)
}

// Hide takes host addresses off the overlay (POST /hide).
func (c *Client) Hide(ctx context.Context, cidrs []string) (ExposeResponse, error) {
	var r ExposeResponse
	return r, c.do(ctx, http.MethodPost, "/hide", ExposeRequest{CIDRs: cidrs}, &r)
}
