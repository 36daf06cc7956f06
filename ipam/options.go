package ipam

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"weavemesh.dev/weave/peer"
)

// Member is one peer as the membership layer sees it.
type Member struct {
	Name     peer.Name
	Nickname string
	Alive    bool
}

// Transport carries the Allocator's messages, with the contract of every
// feature's replicated state (dns.Transport likewise): Broadcast gossips
// a delta to every peer (best effort; push-pull repairs losses), and
// SendAsync queues a message for one peer, never blocks and reports false
// when it dropped it, as gossip.Channel's methods of those names do.
// Members is the membership view, read-only: it may be shared between
// calls.
type Transport interface {
	Broadcast(key string, delta []byte) error
	SendAsync(to peer.Name, msg []byte) bool
	Members() []Member
}

// Defaults for Options fields left zero.
const (
	DefaultSettle    = 10 * time.Second
	donateTimeout    = 5 * time.Second
	refuseMemory     = 10 * time.Second // a donor that said "full"
	busyMemory       = time.Second      // a donor that said "not ready" (or fenced, syncing)
	beatEvery        = 10 * time.Second
	rescanEvery      = 30 * time.Second
	askEvery         = 3 * time.Second
	claimEvery       = 3 * time.Second
	recoveredPrefix  = "recovered:"
	maxConflictsKept = 8
)

// Options configure an Allocator.
type Options struct {
	Self  peer.Name    // required
	Range netip.Prefix // required: IPv4, /8 to /30
	// DefaultSubnet is where an allocation without a subnet goes; the
	// whole Range if zero.
	DefaultSubnet netip.Prefix
	Init          Init
	// ReclaimAfter is how long a ring owner must be unreachable before a
	// survivor takes its spans; 0 turns automatic reclaim off.
	ReclaimAfter time.Duration
	// Settle is how long a reclaimed span is held before use, so a
	// conflicting claim from a peer on the same side of the mesh is seen
	// first. DefaultSettle if zero.
	Settle time.Duration
	// Quarantine is how long space reclaimed automatically stays unused
	// after the reclaim, so a live peer that was only cut off can come
	// back and claim the addresses its containers hold. ReclaimAfter if
	// zero.
	Quarantine time.Duration
	Store      Store     // required
	Transport  Transport // required
	// Scan lists the addresses in use on this host (endpoints on the
	// bridge, the bridge's own). Space this peer learns it owns without
	// having claimed it itself (a lost data file) is checked against it
	// before use. Nil means nothing is in use.
	Scan   func() ([]netip.Addr, error)
	Now    func() time.Time // optional: time.Now
	Logger *slog.Logger     // optional: discards
}

func (o *Options) validate() error {
	if o.Self == peer.None || o.Self == peer.Broadcast {
		return errors.New("ipam: Options.Self must be a real peer name")
	}
	if err := checkRange(o.Range); err != nil {
		return fmt.Errorf("ipam: Options.Range: %w", err)
	}
	o.Range = o.Range.Masked()
	if !o.DefaultSubnet.IsValid() {
		o.DefaultSubnet = o.Range
	}
	o.DefaultSubnet = o.DefaultSubnet.Masked()
	if !o.DefaultSubnet.Addr().Is4() || !o.Range.Contains(o.DefaultSubnet.Addr()) || o.DefaultSubnet.Bits() < o.Range.Bits() {
		return fmt.Errorf("ipam: Options.DefaultSubnet %s must lie inside the range %s", o.DefaultSubnet, o.Range)
	}
	switch o.Init.Mode {
	case ModeConsensus:
		if o.Init.Quorum < 1 {
			return errors.New("ipam: Options.Init.Quorum must be at least 1")
		}
	case ModeSeed:
		if len(o.Init.Seeds) == 0 {
			return errors.New("ipam: Options.Init.Seeds is empty")
		}
	case ModeObserver:
	default:
		return fmt.Errorf("ipam: Options.Init.Mode %d is unknown", o.Init.Mode)
	}
	if o.ReclaimAfter < 0 {
		return errors.New("ipam: Options.ReclaimAfter must not be negative")
	}
	if o.Settle == 0 {
		o.Settle = DefaultSettle
	}
	if o.Quarantine < 0 {
		return errors.New("ipam: Options.Quarantine must not be negative")
	}
	if o.Quarantine == 0 {
		o.Quarantine = o.ReclaimAfter
	}
	if o.Store == nil || o.Transport == nil {
		return errors.New("ipam: Options.Store and Options.Transport are required")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Errors an allocation can end with.
var (
	// ErrExhausted: every address of the subnet is in use.
	ErrExhausted = errors.New("address space exhausted")
	// ErrUnavailable: no space now (no ring yet, peers unreachable, this
	// peer fenced); it may come later.
	ErrUnavailable = errors.New("no address space available now")
	// errWaiting: a donation is on its way; try again when notified.
	errWaiting = errors.New("waiting for a donation")
)
