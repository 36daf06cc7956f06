package e2e

import (
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"weavemesh.dev/weave/test/harness"
)

const (
	meshPassword  = "correct horse battery staple"
	otherPassword = "wrong horse battery staple!"
	// secretNick is a nickname no one could guess: it travels in gossip
	// metadata, so finding it on the wire means gossip is in clear.
	secretNick = "nick-7f3a9c-marker"
)

// passwordFile writes pw into the cluster's directory and returns the
// --password-file flag for it.
func passwordFile(t *testing.T, cl *harness.Cluster, name, pw string) string {
	t.Helper()
	p := filepath.Join(cl.Dir, name)
	if err := os.WriteFile(p, []byte(pw+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return "--password-file=" + p
}

// waitEstablished waits until h has n established connections.
func waitEstablished(t *testing.T, h *harness.Host, n int) {
	t.Helper()
	err := harness.PollFor(meshTimeout, fmt.Sprintf("%s to have %d established connections", h.Name, n), func(ctx context.Context) error {
		st, err := h.StatusCtx(ctx)
		if err != nil {
			return err
		}
		if st.Connections["established"] != n {
			return fmt.Errorf("connections %v", st.Connections)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// attachOne adds and attaches one container to h at 10.32.<h>.1/12.
func attachOne(t *testing.T, h *harness.Host) *harness.Container {
	t.Helper()
	c, err := h.AddContainer(fmt.Sprintf("c%d", h.Index))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Attach(fmt.Sprintf("10.32.%d.1/12", h.Index)); err != nil {
		t.Fatal(err)
	}
	return c
}

// markedPings pings dst from c with a recognisable payload while capturing
// on h's underlay, and returns how many captured packets hold the payload
// and how many hold needle (e.g. a gossip marker).
func markedPings(t *testing.T, ctx context.Context, h *harness.Host, c *harness.Container, dst string, seq int, needle string) (payload, other int) {
	t.Helper()
	capt, err := h.Capture(ctx, "eth0", "udp or tcp")
	if err != nil {
		t.Fatal(err)
	}
	pat, marker := pingPattern(seq)
	if err := ping(ctx, c, dst, "-c", "5", "-i", "0.2", "-p", pat); err != nil {
		capt.Stop()
		t.Fatal(err)
	}
	// Let gossip run a round or two while we listen.
	time.Sleep(1500 * time.Millisecond)
	ps, err := capt.Stop()
	if err != nil {
		t.Fatal(err)
	}
	if ps.Count() == 0 {
		t.Fatal("the capture saw nothing")
	}
	return ps.Containing(marker), ps.Containing([]byte(needle))
}

// encryptedPair starts two routers with the mesh password, one container
// on each, and waits for the encrypted connection.
func encryptedPair(t *testing.T) (h1, h2 *harness.Host, c1, c2 *harness.Container) {
	t.Helper()
	cl := newCluster(t, harness.Options{Hosts: 2})
	h1, h2 = cl.Host(1), cl.Host(2)
	pw := passwordFile(t, cl, "pw", meshPassword)
	if err := h1.StartRouter(pw); err != nil {
		t.Fatal(err)
	}
	if err := h2.StartRouter(pw, h1.IP.String()); err != nil {
		t.Fatal(err)
	}
	waitEstablished(t, h2, 1)
	return h1, h2, attachOne(t, h1), attachOne(t, h2)
}

// TestEncryptionHidesEverything: with a password, containers talk, and
// neither their traffic nor gossip (which carries the nicknames) shows up
// in clear on the underlay.
func TestEncryptionHidesEverything(t *testing.T) {
	cl := newCluster(t, harness.Options{Hosts: 2})
	h1, h2 := cl.Host(1), cl.Host(2)
	pw := passwordFile(t, cl, "pw", meshPassword)
	if err := h1.StartRouter(pw, "--nickname="+secretNick); err != nil {
		t.Fatal(err)
	}
	if err := h2.StartRouter(pw, h1.IP.String()); err != nil {
		t.Fatal(err)
	}
	waitEstablished(t, h2, 1)
	st, err := h2.Status()
	if err != nil {
		t.Fatal(err)
	}
	if !st.Encryption {
		t.Fatal("weave status does not say encryption is enabled")
	}
	conns, err := h2.Connections()
	if err != nil {
		t.Fatal(err)
	}
	if len(conns) != 1 || !conns[0].Encrypted || conns[0].Nickname != secretNick {
		t.Fatalf("connections %+v: want one encrypted connection to %s", conns, secretNick)
	}
	c1, c2 := attachOne(t, h1), attachOne(t, h2)
	ctx := ctxFor(t, 2*time.Minute)
	payload, gossip := markedPings(t, ctx, h2, c2, c1.IP(), 0x51, secretNick)
	if payload != 0 || gossip != 0 {
		t.Fatalf("in clear on the underlay: %d packets with the ping payload, %d with the nickname", payload, gossip)
	}
	if _, err := harness.Transfer(ctx, c1.NS, c2.NS, c2.IP(), 5002, 4<<20); err != nil {
		t.Fatal(err)
	}
}

// TestWrongOrNoPasswordCannotJoin: a router with another password, or none,
// stays alone and says why; the others are unaffected.
func TestWrongOrNoPasswordCannotJoin(t *testing.T) {
	cl := newCluster(t, harness.Options{Hosts: 3})
	h1, h2, h3 := cl.Host(1), cl.Host(2), cl.Host(3)
	pw := passwordFile(t, cl, "pw", meshPassword)
	if err := h1.StartRouter(pw); err != nil {
		t.Fatal(err)
	}
	if err := h2.StartRouter(pw, h1.IP.String()); err != nil {
		t.Fatal(err)
	}
	for _, bad := range [][]string{{passwordFile(t, cl, "other", otherPassword)}, nil} {
		// The log accumulates over the rounds: look for new explanations.
		seen3, seen1 := strings.Count(h3.RouterLog(), "same password"), strings.Count(h1.RouterLog(), "same password")
		if err := h3.StartRouter(append(bad, h1.IP.String())...); err != nil {
			t.Fatal(err)
		}
		err := harness.PollFor(30*time.Second, "both sides to report why the stranger cannot join", func(ctx context.Context) error {
			if strings.Count(h3.RouterLog(), "same password") == seen3 || strings.Count(h1.RouterLog(), "same password") == seen1 {
				return fmt.Errorf("not yet")
			}
			return nil
		})
		if err != nil {
			t.Fatalf("%v (args %v):\n%s", err, bad, h3.RouterLog())
		}
		waitEstablished(t, h2, 1)
		for _, h := range []*harness.Host{h1, h2, h3} {
			st, err := h.Status()
			if err != nil {
				t.Fatal(err)
			}
			want := 2
			if h == h3 {
				want = 1
			}
			if st.Peers != want {
				t.Fatalf("%s sees %d peers, want %d (stranger args %v)", h.Name, st.Peers, want, bad)
			}
		}
		if err := h3.Stop(); err != nil {
			t.Fatal(err)
		}
		if err := h3.ResetDataDir(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestReplayAndTamperDropped: a captured data datagram re-sent to its
// receiver is dropped as a replay, one with a flipped bit as a forgery;
// both are counted.
func TestReplayAndTamperDropped(t *testing.T) {
	h1, h2, c1, c2 := encryptedPair(t)
	ctx := ctxFor(t, 2*time.Minute)
	capt, err := h2.Capture(ctx, "eth0", fmt.Sprintf("udp dst port 6784 and src host %s", h1.IP))
	if err != nil {
		t.Fatal(err)
	}
	if err := ping(ctx, c1, c2.IP(), "-c", "3", "-i", "0.2", "-s", "400"); err != nil {
		capt.Stop()
		t.Fatal(err)
	}
	ps, err := capt.Stop()
	if err != nil {
		t.Fatal(err)
	}
	var dgram []byte
	for _, p := range ps {
		// Ethernet 14 + IPv4 20 + UDP 8, then the sealed envelope.
		if len(p.Data) > 42+400 && p.Data[42+1] == 16 {
			dgram = p.Data[42:]
		}
	}
	if dgram == nil {
		t.Fatalf("no sealed data datagram among %d captured", ps.Count())
	}
	tool, err := harness.BuildTool()
	if err != nil {
		t.Fatal(err)
	}
	drops := func() map[string]uint64 {
		st, err := h2.Status()
		if err != nil {
			t.Fatal(err)
		}
		return st.Drops
	}
	to := h2.IP.String() + ":6784"
	before := drops()
	if _, err := h1.Exec(ctx, tool, "udp", "-to", to, "-hex", hex.EncodeToString(dgram)); err != nil {
		t.Fatal(err)
	}
	flipped := append([]byte(nil), dgram...)
	flipped[len(flipped)/2] ^= 0x01
	if _, err := h1.Exec(ctx, tool, "udp", "-to", to, "-hex", hex.EncodeToString(flipped)); err != nil {
		t.Fatal(err)
	}
	err = harness.PollFor(10*time.Second, "replay and forgery counted", func(ctx context.Context) error {
		now := drops()
		if now["replay"] <= before["replay"] || now["auth_failed"] <= before["auth_failed"] {
			return fmt.Errorf("drops before %v, now %v", before, now)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestEncryptedRestartNewKeys: a router killed and restarted makes new
// sessions; traffic resumes with no manual step.
func TestEncryptedRestartNewKeys(t *testing.T) {
	h1, h2, c1, c2 := encryptedPair(t)
	ctx := ctxFor(t, 2*time.Minute)
	if err := ping(ctx, c1, c2.IP()); err != nil {
		t.Fatal(err)
	}
	if err := h2.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := h2.Restart(); err != nil {
		t.Fatal(err)
	}
	waitEstablished(t, h1, 1)
	if err := ping(ctx, c1, c2.IP()); err != nil {
		t.Fatalf("after restart: %v", err)
	}
	if err := ping(ctx, c2, c1.IP()); err != nil {
		t.Fatalf("after restart, other way: %v", err)
	}
}

// TestTrustedSubnets: host1 and host2 trust each other's addresses and
// exchange data in clear; host3 is not trusted, so its traffic stays
// encrypted.
func TestTrustedSubnets(t *testing.T) {
	cl := newCluster(t, harness.Options{Hosts: 3})
	h1, h2, h3 := cl.Host(1), cl.Host(2), cl.Host(3)
	pw := passwordFile(t, cl, "pw", meshPassword)
	trusted := fmt.Sprintf("--trusted-subnets=%s/32,%s/32", h1.IP, h2.IP)
	if err := h1.StartRouter(pw, trusted); err != nil {
		t.Fatal(err)
	}
	for _, h := range []*harness.Host{h2, h3} {
		if err := h.StartRouter(pw, trusted, h1.IP.String()); err != nil {
			t.Fatal(err)
		}
	}
	waitEstablished(t, h1, 2)
	conns, err := h1.Connections()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range conns {
		if want := c.Nickname == h3.Name; c.Encrypted != want {
			t.Fatalf("connection to %s: encrypted %v, want %v", c.Nickname, c.Encrypted, want)
		}
	}
	c1, c2, c3 := attachOne(t, h1), attachOne(t, h2), attachOne(t, h3)
	ctx := ctxFor(t, 2*time.Minute)
	if plain, _ := markedPings(t, ctx, h1, c1, c2.IP(), 0x61, "-"); plain == 0 {
		t.Fatal("trusted pair: payload not seen in clear on the underlay")
	}
	if plain, _ := markedPings(t, ctx, h1, c1, c3.IP(), 0x62, "-"); plain != 0 {
		t.Fatalf("untrusted pair: %d packets with the payload in clear", plain)
	}
}
