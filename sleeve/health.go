package sleeve

import (
	"context"
	"time"

	"weavemesh.dev/weave/sleeve/secure"
	"weavemesh.dev/weave/sleeve/wire"
)

// Path-MTU probing. A padded heartbeat of the candidate size is sent up to
// probeTries times, one per tick; an echo of the full size proves the path
// carries it. The search is binary between what is proven and what failed,
// and starts from the local route's MTU so a healthy path is confirmed by
// one round trip. Paths can also grow back: the search reruns every
// reprobeEvery.
const (
	ticksPerBeat = 10
	probeTries   = 3
	reprobeEvery = 10 * time.Minute
)

type probeState struct {
	ifaceMax  int  // largest datagram the local route allows
	searching bool //
	lo, hi    int  // proven size, and the largest size not yet disproven
	cand      int
	tries     int
	next      int64 // unix nanos of the next search
	seq       uint32
}

// healthLoop handles the ticks of t, which Start makes before it returns
// so that a fake clock advanced after Start reaches the loop.
func (e *Engine) healthLoop(ctx context.Context, t Ticker) {
	defer t.Stop()
	b := newBatch(e, e.qs[0].Conn)
	buf := make([]byte, 0, headerArena)
	var n int
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C():
			buf = buf[:0]
			e.healthTick(b, &buf, now.UnixNano(), n%ticksPerBeat == 0)
			b.flush()
			n++
		}
	}
}

// healthTick sends heartbeats (on beat ticks) and probe steps, then
// re-evaluates every link.
func (e *Engine) healthTick(b *batch, buf *[]byte, now int64, beat bool) {
	changed := false
	timeout := int64(e.o.LinkTimeout)
	sec := e.o.Secure
	if sec != nil {
		sec.Tick(time.Unix(0, now))
		if beat {
			sec.Expire()
		}
	}
	for _, p := range *e.peers.Load() {
		hearing := now-p.lastHeard.Load() < timeout
		keyed := true
		if sec != nil {
			if sec.NeedsHandshake(p.name) {
				e.queueHandshake(b, buf, p)
			}
			keyed = sec.Current(p.name) != nil
		}
		if beat && keyed {
			flags := uint8(0)
			if hearing {
				flags = wire.HBHearYou
			}
			e.queueHeartbeat(b, buf, p, now, flags, wire.HeaderLen+wire.HeartbeatLen)
		}
		next := e.linkState(p, now, hearing)
		if LinkState(p.state.Swap(int32(next))) != next {
			changed = true
			e.log.Info("link changed", "peer", p.name, "addr", p.addr, "state", next)
		}
		if next == LinkUp && keyed {
			e.probeStep(b, buf, p, now)
		} else {
			p.probe.searching = false
		}
	}
	if changed && e.o.OnLinkChange != nil {
		e.o.OnLinkChange()
	}
}

func (e *Engine) linkState(p *peerState, now int64, hearing bool) LinkState {
	timeout := int64(e.o.LinkTimeout)
	switch {
	case hearing && now-p.heardUs.Load() < timeout:
		return LinkUp
	case LinkState(p.state.Load()) == LinkConnecting && now-p.added < 2*timeout:
		return LinkConnecting
	default:
		return LinkDown
	}
}

// queueHeartbeat queues a heartbeat to p that is size bytes on the wire
// (sealing included), padded as a probe when larger than needed.
func (e *Engine) queueHeartbeat(b *batch, buf *[]byte, p *peerState, now int64, flags uint8, size int) {
	inner := max(size-e.overhead(p), wire.HeaderLen+wire.HeartbeatLen)
	d := e.scratch(b, buf, inner)
	wire.PutHeader(d, &wire.Header{Version: wire.Version, Type: wire.TypeHeartbeat, TTL: 1, Src: e.self, Dst: p.name})
	p.probe.seq++
	wire.PutHeartbeat(d[wire.HeaderLen:], &wire.Heartbeat{SentNanos: now, Seq: p.probe.seq, Flags: flags, Size: uint16(size)})
	b.raw(p, d)
}

// scratch takes n bytes of the health goroutine's datagram buffer, flushing
// the batch first when the buffer is full.
func (e *Engine) scratch(b *batch, buf *[]byte, n int) []byte {
	if len(*buf)+n > cap(*buf) {
		b.flush()
		*buf = (*buf)[:0]
	}
	d := (*buf)[len(*buf) : len(*buf)+n]
	*buf = (*buf)[:len(*buf)+n]
	return d
}

// queueHandshake starts a session with p.
func (e *Engine) queueHandshake(b *batch, buf *[]byte, p *peerState) {
	sec := e.o.Secure
	d, err := sec.Initiate(e.scratch(b, buf, secure.InitLen), p.name, sec.Trusted(p.addr.Addr()))
	if err != nil {
		e.log.Error("cannot start a handshake", "peer", p.name, "err", err)
		return
	}
	b.rawClear(p, d)
}

// probeStep advances p's path-MTU search by one tick.
func (e *Engine) probeStep(b *batch, buf *[]byte, p *peerState, now int64) {
	s := &p.probe
	if refused := int(p.tooBig.Swap(0)); refused > 0 {
		// The kernel knows the route's path MTU shrank: search below it now.
		s.ifaceMax = clampPMTU(min(s.ifaceMax, refused-1))
		s.searching = false
		s.next = 0
	}
	if !s.searching {
		if now < s.next {
			return
		}
		s.ifaceMax = clampPMTU(min(s.ifaceMax, e.o.PathMTU(p.addr.Addr())))
		*s = probeState{ifaceMax: s.ifaceMax, searching: true, lo: minPMTU, hi: s.ifaceMax, cand: s.ifaceMax, seq: s.seq}
		p.acked.Store(0)
	}
	switch acked := int(p.acked.Load()); {
	case acked >= s.cand:
		s.lo = max(s.lo, acked)
		s.cand, s.tries = (s.lo+s.hi+1)/2, 0
	case s.tries >= probeTries:
		s.hi = s.cand - 1
		s.cand, s.tries = (s.lo+s.hi+1)/2, 0
	}
	if s.hi-s.lo <= pmtuSlack {
		s.searching = false
		s.next = now + int64(reprobeEvery)
		if old := int(p.pmtu.Swap(int32(s.lo))); old != s.lo {
			e.log.Info("path MTU", "peer", p.name, "addr", p.addr, "datagram", s.lo, "overlay_mtu", e.overlayMTUTo(p))
		}
		return
	}
	s.tries++
	e.queueHeartbeat(b, buf, p, now, wire.HBHearYou|wire.HBProbe, s.cand)
}
