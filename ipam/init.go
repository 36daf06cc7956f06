package ipam

import (
	"fmt"
	"strconv"
	"strings"

	"weavemesh.dev/weave/peer"
)

// Mode is how a peer without a ring comes by one.
type Mode int

const (
	// ModeConsensus waits until Quorum peers without a ring agree on the
	// same set of peers, then splits the range among exactly those.
	ModeConsensus Mode = iota
	// ModeSeed splits the range among the named Seeds at once.
	ModeSeed
	// ModeObserver never claims: it adopts a ring from a peer and asks
	// others for space.
	ModeObserver
)

// Init says how a peer bootstraps the ring (--ipalloc-init).
type Init struct {
	Mode   Mode
	Seeds  []peer.Name // ModeSeed
	Quorum int         // ModeConsensus, at least 1
}

// ParseInit parses --ipalloc-init: "consensus=N", "consensus" (N is
// defaultQuorum), "seed=NAME,NAME,..." or "observer". Empty means
// "consensus".
func ParseInit(s string, defaultQuorum int) (Init, error) {
	s = strings.TrimSpace(s)
	switch {
	case s == "" || s == "consensus":
		return Init{Mode: ModeConsensus, Quorum: max(1, defaultQuorum)}, nil
	case s == "observer":
		return Init{Mode: ModeObserver}, nil
	case strings.HasPrefix(s, "consensus="):
		n, err := strconv.Atoi(strings.TrimPrefix(s, "consensus="))
		if err != nil || n < 1 || n > 10000 {
			return Init{}, fmt.Errorf("--ipalloc-init %q: consensus=N wants N from 1 to 10000 peers", s)
		}
		return Init{Mode: ModeConsensus, Quorum: n}, nil
	case strings.HasPrefix(s, "seed="):
		var seeds []peer.Name
		for _, f := range strings.Split(strings.TrimPrefix(s, "seed="), ",") {
			n, err := peer.ParseName(strings.TrimSpace(f))
			if err != nil {
				return Init{}, fmt.Errorf("--ipalloc-init %q: seed %q: %w (give peer names as shown by weave status)", s, f, err)
			}
			seeds = append(seeds, n)
		}
		if len(seeds) == 0 {
			return Init{}, fmt.Errorf("--ipalloc-init %q: name at least one seed peer", s)
		}
		return Init{Mode: ModeSeed, Seeds: sortedNames(seeds)}, nil
	}
	return Init{}, fmt.Errorf("--ipalloc-init %q: want consensus=N, seed=PEER,PEER,... or observer", s)
}

// String is the flag form.
func (i Init) String() string {
	switch i.Mode {
	case ModeSeed:
		parts := make([]string, len(i.Seeds))
		for k, s := range i.Seeds {
			parts[k] = s.String()
		}
		return "seed=" + strings.Join(parts, ",")
	case ModeObserver:
		return "observer"
	}
	return "consensus=" + strconv.Itoa(i.Quorum)
}
