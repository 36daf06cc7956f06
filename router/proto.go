package router

import (
	"fmt"
	"log/slog"
	"strconv"
	"strings"

	"weavemesh.dev/weave/gossip"
	"weavemesh.dev/weave/peer"
	"weavemesh.dev/weave/sleeve/wire"
)

// protocolRange, when set at build time, replaces the range of sleeve
// protocol versions this build advertises and accepts in peers:
//
//	go build -ldflags "-X weavemesh.dev/weave/router.protocolRange=3..4" ./cmd/weave
//
// Empty (the default) is wire.Version..wire.Version. It exists so that
// upgrades can be tested with two builds of different ranges side by side
// (test/e2e/upgrade_test.go); a release never sets it.
var protocolRange string

// protoMin and protoMax are the range in force; protoErr says why
// protocolRange could not be used, and stops the router at start.
var protoMin, protoMax, protoErr = parseProtocolRange(protocolRange)

// ProtocolRange is the range of sleeve protocol versions this build
// speaks, or why the build's range is unusable.
func ProtocolRange() (lo, hi uint8, err error) { return protoMin, protoMax, protoErr }

func parseProtocolRange(s string) (lo, hi uint8, err error) {
	if s == "" {
		return wire.Version, wire.Version, nil
	}
	a, b, ok := strings.Cut(s, "..")
	x, errA := strconv.ParseUint(a, 10, 8)
	y, errB := strconv.ParseUint(b, 10, 8)
	if !ok || errA != nil || errB != nil || x == 0 || x > y {
		return wire.Version, wire.Version, fmt.Errorf("this build's protocol range %q (set with -ldflags -X weavemesh.dev/weave/router.protocolRange) is not MIN..MAX with 1 <= MIN <= MAX <= 255; rebuild without it", s)
	}
	return uint8(x), uint8(y), nil
}

// compatible reports whether a peer speaking lo..hi shares a protocol
// version with this build.
func compatible(lo, hi uint8) bool { return lo <= protoMax && protoMin <= hi }

// refusalReason says why m, alive in gossip, cannot carry data with us,
// or "" when it can.
func refusalReason(m gossip.Member) string {
	switch {
	case m.MetaErr != nil:
		return fmt.Sprintf("unreadable peer metadata: %v", m.MetaErr)
	case !compatible(m.ProtoMin, m.ProtoMax):
		return fmt.Sprintf("peer speaks protocol %d..%d, we speak %d..%d; upgrade one of them",
			m.ProtoMin, m.ProtoMax, protoMin, protoMax)
	}
	return ""
}

// refusals logs each peer this router refuses to carry data with, once
// when the refusal starts and once when it ends. Only the loop goroutine
// (refresh) uses it.
type refusals struct {
	now map[peer.Name]string // peer -> reason
}

// note compares the members alive in gossip with the last call.
func (f *refusals) note(log *slog.Logger, self peer.Name, members []gossip.Member) {
	next := map[peer.Name]string{}
	for _, m := range members {
		if m.Name == self || (m.State != gossip.Alive && m.State != gossip.Suspect) {
			continue
		}
		if why := refusalReason(m); why != "" {
			next[m.Name] = why
			if f.now[m.Name] != why {
				log.Warn("refusing a peer: no protocol in common or unreadable metadata; it stays listed but carries no traffic",
					"component", "router", "peer", m.Name, "nickname", m.Nickname, "version", m.Version, "reason", why)
			}
		}
	}
	for n := range f.now {
		if _, ok := next[n]; !ok {
			log.Info("no longer refusing a peer", "component", "router", "peer", n)
		}
	}
	f.now = next
}
