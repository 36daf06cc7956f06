package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"weavemesh.dev/weave/test/harness"
)

// markerLen is the size of the random markers the security tests hide in
// container traffic: long enough that finding one on the wire cannot be
// chance, short enough that a whole copy fits in every TCP segment.
const markerLen = 1024

// fragmentLen is the shortest piece of a marker that counts as a leak.
const fragmentLen = 32

// newMarker writes markerLen random bytes to a file in the cluster's
// directory (which the tools in the namespaces see) and returns both.
func newMarker(t *testing.T, cl *harness.Cluster, name string) ([]byte, string) {
	t.Helper()
	m := make([]byte, markerLen)
	if _, err := rand.Read(m); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(cl.Dir, name)
	if err := os.WriteFile(p, m, 0o644); err != nil {
		t.Fatal(err)
	}
	return m, p
}

// leaks counts, in the captured packets, those holding a whole copy of
// marker at any rotation (a stream of the marker repeated is cut into
// segments anywhere) and those holding any fragmentLen-byte piece of it.
func leaks(ps harness.Packets, marker []byte) (whole, fragments int) {
	mm := append(append([]byte(nil), marker...), marker...)
	starts := make(map[string]int, len(marker))
	for k := range marker {
		starts[string(mm[k:k+fragmentLen])] = k
	}
	for _, p := range ps {
		foundWhole, foundFrag := false, false
		for i := 0; i+fragmentLen <= len(p.Data) && !foundWhole; i++ {
			k, ok := starts[string(p.Data[i:i+fragmentLen])]
			if !ok {
				continue
			}
			foundFrag = true
			if i+len(marker) <= len(p.Data) && bytes.Equal(p.Data[i:i+len(marker)], mm[k:k+len(marker)]) {
				foundWhole = true
			}
		}
		if foundWhole {
			whole++
		}
		if foundFrag {
			fragments++
		}
	}
	return whole, fragments
}

// markedTransfer streams size bytes of the marker file repeated from c1 to
// a sink in c2 and checks that they arrived intact.
func markedTransfer(ctx context.Context, c1, c2 *harness.Container, port int, markerFile string, size int64) error {
	_, err := harness.TransferWith(ctx, c1.NS, c2.NS, c2.IP(), port, size, "-marker-file", markerFile)
	return err
}

// TestMarkersOnTheWire: a 1 KiB random marker streamed over TCP and another
// sent as ICMP echo payload between containers on two hosts, with the
// underlay captured on the sender's veth for the whole exchange. With a
// password no packet holds even a 32-byte piece of either; the control run
// without one finds both whole, which shows the check can fail.
func TestMarkersOnTheWire(t *testing.T) {
	for _, tc := range []struct {
		name      string
		encrypted bool
	}{{"encrypted", true}, {"control without password", false}} {
		t.Run(tc.name, func(t *testing.T) {
			cl := newCluster(t, harness.Options{Hosts: 2})
			var args []string
			if tc.encrypted {
				args = append(args, passwordFile(t, cl, "pw", meshPassword))
			}
			h1, _, c1, c2, ctx := pingingPair(t, cl, args...)
			tcpMarker, tcpFile := newMarker(t, cl, "tcp-marker")
			icmpMarker, icmpFile := newMarker(t, cl, "icmp-marker")
			capt, err := h1.Capture(ctx, "eth0", "")
			if err != nil {
				t.Fatal(err)
			}
			tool, err := harness.BuildTool()
			if err != nil {
				t.Fatal(err)
			}
			out, err := c1.Output(ctx, tool, "icmp", "-to", c2.IP(), "-payload-file", icmpFile, "-count", "5")
			if err != nil {
				capt.Stop()
				t.Fatal(err)
			}
			var echo struct{ Sent, Received int }
			if err := json.Unmarshal([]byte(out), &echo); err != nil || echo.Received == 0 {
				capt.Stop()
				t.Fatalf("marked pings: %q (%v): no reply carried the payload back", out, err)
			}
			if err := markedTransfer(ctx, c1, c2, 5011, tcpFile, 1<<20); err != nil {
				capt.Stop()
				t.Fatal(err)
			}
			ps, err := capt.Stop()
			if err != nil {
				t.Fatal(err)
			}
			tw, tf := leaks(ps, tcpMarker)
			iw, ifr := leaks(ps, icmpMarker)
			t.Logf("%d packets, %d bytes captured; TCP marker whole in %d, pieces in %d; ICMP marker whole in %d, pieces in %d (%d/%d echoes answered)",
				ps.Count(), ps.Bytes(), tw, tf, iw, ifr, echo.Received, echo.Sent)
			if tc.encrypted {
				if tf+ifr != 0 {
					t.Errorf("with a password, %d packets hold pieces of the TCP marker and %d of the ICMP marker", tf, ifr)
				}
				return
			}
			// Offloads carry the stream in super-frames of up to 64 KiB,
			// so a few dozen packets hold it; ICMP requests and replies
			// both pass.
			if tw == 0 || iw < echo.Received {
				t.Errorf("without a password the markers should be on the wire: TCP in %d packets, ICMP in %d", tw, iw)
			}
		})
	}
}

// TestTamperedDatagramsDroppedByReason: sealed data datagrams from host1,
// captured at host2 while host2's firewall kept them from the router, are
// injected afterwards newest first. Reordered within the replay window
// they are accepted; the same again are dropped as replays, one per
// datagram; with a bit flipped, or cut short, each is dropped as failing
// authentication. The counters of `weave status`
// say so, reason by reason.
func TestTamperedDatagramsDroppedByReason(t *testing.T) {
	h1, h2, c1, c2 := encryptedPair(t)
	ctx := ctxFor(t, 2*time.Minute)
	if err := ping(ctx, c1, c2.IP()); err != nil {
		t.Fatal(err)
	}
	capt, err := h2.Capture(ctx, "eth0", fmt.Sprintf("udp dst port 6784 and src host %s", h1.IP))
	if err != nil {
		t.Fatal(err)
	}
	// The capture sees frames before the firewall drops them: the router
	// never does.
	if err := h2.BlockFrom(ctx, h1.IP); err != nil {
		capt.Stop()
		t.Fatal(err)
	}
	_, _ = c1.Ping(ctx, c2.IP(), "-c", "4", "-i", "0.2", "-s", "400", "-W", "1")
	if err := h2.UnblockFrom(ctx, h1.IP); err != nil {
		capt.Stop()
		t.Fatal(err)
	}
	ps, err := capt.Stop()
	if err != nil {
		t.Fatal(err)
	}
	var dgrams [][]byte
	for _, p := range ps {
		// Ethernet 14 + IPv4 20 + UDP 8, then the sealed envelope: data
		// datagrams carry the 400-byte pings.
		if len(p.Data) > 42+400 && p.Data[42+1] == 16 {
			dgrams = append(dgrams, p.Data[42:])
		}
	}
	if len(dgrams) < 2 {
		t.Fatalf("%d sealed data datagrams among %d captured, want at least 2", len(dgrams), ps.Count())
	}
	tool, err := harness.BuildTool()
	if err != nil {
		t.Fatal(err)
	}
	to := h2.IP.String() + ":6784"
	send := func(d []byte) {
		t.Helper()
		if _, err := h1.Exec(ctx, tool, "udp", "-to", to, "-hex", hex.EncodeToString(d)); err != nil {
			t.Fatal(err)
		}
	}
	drops := func() map[string]uint64 {
		t.Helper()
		st, err := h2.Status()
		if err != nil {
			t.Fatal(err)
		}
		return st.Drops
	}
	n := uint64(len(dgrams))
	expect := func(what string, before map[string]uint64, want map[string]uint64) {
		t.Helper()
		var now map[string]uint64
		err := harness.PollFor(10*time.Second, what, func(context.Context) error {
			now = drops()
			for r, d := range want {
				if now[r]-before[r] != d {
					return fmt.Errorf("%s: %d more, want %d", r, now[r]-before[r], d)
				}
			}
			return nil
		})
		if err != nil {
			t.Errorf("%v (before %v, now %v)", err, before, now)
		}
	}

	before := drops()
	for i := len(dgrams) - 1; i >= 0; i-- {
		send(dgrams[i])
	}
	expect("reordered datagrams accepted", before, map[string]uint64{"replay": 0, "auth_failed": 0})

	before = drops()
	for _, d := range dgrams {
		send(d)
	}
	expect("replays dropped", before, map[string]uint64{"replay": n, "auth_failed": 0})

	before = drops()
	for i, d := range dgrams {
		f := append([]byte(nil), d...)
		f[len(f)/2+i] ^= 0x80
		send(f)
	}
	expect("forgeries dropped", before, map[string]uint64{"auth_failed": n, "replay": 0})

	// Cut short, inside the envelope or in the sealed part: what cannot
	// be opened fails authentication, whatever is missing.
	before = drops()
	for i, d := range dgrams {
		send(d[:[]int{3, len(d) - 1}[i%2]])
	}
	expect("truncated datagrams dropped", before, map[string]uint64{"auth_failed": n, "replay": 0})
}
