package sleeve

import (
	"net/netip"
	"testing"
	"time"

	"weavemesh.dev/weave/sleeve/conn"
	"weavemesh.dev/weave/sleeve/sleevetest"
)

// expectFrame waits for a frame on d's output that satisfies match.
func expectFrame(t *testing.T, d *sleevetest.Device, what string, match func([]byte) bool) []byte {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case f := <-d.Out:
			if match(f) {
				return f
			}
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
			return nil
		}
	}
}

// noFrame checks that nothing matching arrives within d.
func noFrame(t *testing.T, dev *sleevetest.Device, what string, wait time.Duration, match func([]byte) bool) {
	t.Helper()
	deadline := time.After(wait)
	for {
		select {
		case f := <-dev.Out:
			if match(f) {
				t.Fatalf("unexpected %s", what)
			}
		case <-deadline:
			return
		}
	}
}

func packet(b []byte, from netip.AddrPort) conn.Packet {
	return conn.Packet{Buf: b, Addr: from}
}
