package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"weavemesh.dev/weave/api"
	"weavemesh.dev/weave/test/harness"
)

// Deadlines. Mesh formation includes gossip joins and data-plane heartbeats.
const (
	meshTimeout = 60 * time.Second
	pingTimeout = 45 * time.Second
)

// newCluster builds a cluster using the weave binary built in TestMain.
func newCluster(t *testing.T, opts harness.Options) *harness.Cluster {
	t.Helper()
	harness.RequireRoot(t)
	if buildErr != nil {
		t.Fatalf("cannot run the programs under test: %v", buildErr)
	}
	opts.WeaveBinary = weaveBin
	return harness.NewT(t, opts)
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// mesh is a cluster with routers on every host and containers attached.
type mesh struct {
	cl   *harness.Cluster
	ctrs [][]*harness.Container // ctrs[h-1][n-1] is c<h><n>, address 10.32.<h>.<n>/12
}

// all returns every container.
func (m *mesh) all() []*harness.Container {
	var out []*harness.Container
	for _, cs := range m.ctrs {
		out = append(out, cs...)
	}
	return out
}

// routerArgs returns the arguments host h is started with: host1 none, the
// others host1's underlay address.
func routerArgs(cl *harness.Cluster, h *harness.Host) []string {
	if h.Index == 1 {
		return nil
	}
	return []string{cl.Host(1).IP.String()}
}

// startMesh starts a router on every host (host1 first, the others joining
// it), attaches perHost containers to each, and waits until every router has
// an established connection to every other.
func startMesh(t *testing.T, opts harness.Options, perHost int) *mesh {
	t.Helper()
	return startMeshWith(t, opts, perHost, func(*harness.Host) []string { return nil })
}

// waitMesh waits until every host knows every peer and has an established
// connection to each.
func waitMesh(t *testing.T, cl *harness.Cluster) {
	t.Helper()
	err := harness.PollFor(meshTimeout, "full mesh", func(ctx context.Context) error {
		for _, h := range cl.Hosts {
			if err := established(h, cl.Hosts); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// established checks that h has an established connection to every other
// host in hosts.
func established(h *harness.Host, hosts []*harness.Host) error {
	cs, err := h.Connections()
	if err != nil {
		return err
	}
	byNick := map[string]api.Connection{}
	for _, c := range cs {
		byNick[c.Nickname] = c
	}
	for _, o := range hosts {
		if o == h {
			continue
		}
		c, ok := byNick[o.Name]
		if !ok {
			return fmt.Errorf("%s has no connection to %s (has %d)", h.Name, o.Name, len(cs))
		}
		if c.State != "established" {
			return fmt.Errorf("%s -> %s: %s %s", h.Name, o.Name, c.State, c.Reason)
		}
	}
	return nil
}

// ping pings dst from c until a reply comes back or ctx ends.
func ping(ctx context.Context, c *harness.Container, dst string, args ...string) error {
	return harness.Poll(ctx, fmt.Sprintf("ping %s -> %s", c.Name, dst), func(ctx context.Context) error {
		_, err := c.Ping(ctx, dst, args...)
		return err
	})
}

// pingAll has every container ping every other (each pair retried until
// the deadline), several pairs at a time, and reports every failing pair.
func pingAll(t *testing.T, ctrs []*harness.Container, timeout time.Duration) {
	t.Helper()
	pingEach(t, ctrs, func(c *harness.Container) string { return c.IP() }, timeout)
}

// pingEach is pingAll with the address of each container given by addr.
func pingEach(t *testing.T, ctrs []*harness.Container, addr func(*harness.Container) string, timeout time.Duration) {
	t.Helper()
	ctx := ctxFor(t, timeout)
	var (
		mu     sync.Mutex
		failed []string
		wg     sync.WaitGroup
	)
	sem := make(chan struct{}, 8)
	for _, a := range ctrs {
		for _, b := range ctrs {
			if a == b {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				sem <- struct{}{}
				defer func() { <-sem }()
				if err := ping(ctx, a, addr(b)); err != nil {
					mu.Lock()
					failed = append(failed, fmt.Sprintf("%s -> %s (%s): %v", a.Name, b.Name, addr(b), err))
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	if len(failed) > 0 {
		t.Errorf("%d of %d pairs cannot ping:\n%s", len(failed), len(ctrs)*(len(ctrs)-1), strings.Join(failed, "\n"))
	}
}

// peersByNick returns h's view of the peers with that nickname (a peer that
// came back with a new identity appears twice).
func peersByNick(h *harness.Host, nick string) ([]api.Peer, error) {
	ps, err := h.Peers()
	if err != nil {
		return nil, err
	}
	var out []api.Peer
	for _, p := range ps {
		if p.Nickname == nick && !p.Self {
			out = append(out, p)
		}
	}
	return out, nil
}

// seesAlive reports whether h sees a peer with that nickname alive.
func seesAlive(h *harness.Host, nick string) (bool, error) {
	ps, err := peersByNick(h, nick)
	if err != nil {
		return false, err
	}
	for _, p := range ps {
		if p.State == "alive" {
			return true, nil
		}
	}
	return false, nil
}

// pingingPair starts the routers of cl's hosts 1 and 2 with args (host 2
// joining host 1), attaches a container on each, and waits until the
// containers ping each other; ctx bounds the rest of the test's traffic.
func pingingPair(t *testing.T, cl *harness.Cluster, args ...string) (h1, h2 *harness.Host, c1, c2 *harness.Container, ctx context.Context) {
	t.Helper()
	h1, h2 = cl.Host(1), cl.Host(2)
	if err := h1.StartRouter(args...); err != nil {
		t.Fatal(err)
	}
	if err := h2.StartRouter(append(args, h1.IP.String())...); err != nil {
		t.Fatal(err)
	}
	waitEstablished(t, h2, 1)
	c1, c2 = attachOne(t, h1), attachOne(t, h2)
	ctx = ctxFor(t, 2*time.Minute)
	if err := ping(ctx, c1, c2.IP()); err != nil {
		t.Fatal(err)
	}
	return h1, h2, c1, c2, ctx
}
