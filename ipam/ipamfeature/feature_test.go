package ipamfeature

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"weavemesh.dev/weave/api"
	"weavemesh.dev/weave/feature"
	"weavemesh.dev/weave/gossip"
	"weavemesh.dev/weave/peer"
)

// fakeBridge is a feature.Bridge with addresses in memory.
type fakeBridge struct {
	mu       sync.Mutex // guards addrs
	addrs    []netip.Prefix
	overlaps []string
}

func (b *fakeBridge) Addrs() ([]netip.Prefix, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.addrs), nil
}

func (b *fakeBridge) Expose(p netip.Prefix) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.addrs = append(b.addrs, p)
	return nil
}

func (b *fakeBridge) Hide(p netip.Prefix) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.addrs = slices.DeleteFunc(b.addrs, func(q netip.Prefix) bool { return q == p })
	return nil
}

func (b *fakeBridge) Name() string               { return "weave" }
func (b *fakeBridge) MTU() int                   { return 1376 }
func (b *fakeBridge) AddPort(iface string) error { return nil }

func (b *fakeBridge) EndpointAddrs() ([]netip.Addr, error) { return nil, nil }

func (b *fakeBridge) RoutesOverlapping(netip.Prefix) ([]string, error) { return b.overlaps, nil }

const self = peer.Name(0x0a0b0c0d0e0f)

func testHost(t *testing.T, br *fakeBridge) feature.Host {
	return feature.Host{
		Self: self, Nickname: "host1", DataDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler),
		Members: func() []gossip.Member {
			return []gossip.Member{{Name: self, Nickname: "host1", State: gossip.Alive, Since: time.Now()}}
		},
		Ready:     func() error { return nil },
		Endpoints: func() []api.Endpoint { return nil },
		Bridge:    br,
	}
}

// startAlone opens and starts IP allocation on a lone peer, as the
// router does, without gossip.
func startAlone(t *testing.T, br *fakeBridge) *Feature {
	t.Helper()
	f, err := New(Options{Range: netip.MustParsePrefix("10.40.0.0/16"), DefaultSubnet: netip.MustParsePrefix("10.40.1.0/24"),
		ReclaimAfter: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close(context.Background()) })
	if err := f.Open(testHost(t, br)); err != nil {
		t.Fatal(err)
	}
	if chs := f.Channels(); len(chs) != 1 || chs[0].Name != "ipam" || chs[0].State == nil || chs[0].Bind == nil {
		t.Fatalf("channels %+v", chs)
	}
	if err := f.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return f
}

func status(t *testing.T, f *Feature) api.IPAMStatus {
	t.Helper()
	v, err := f.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return v.(api.IPAMStatus)
}

func TestAttachAllocatesAndReleases(t *testing.T) {
	f := startAlone(t, &fakeBridge{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// An attach without addresses gets one in the default subnet, and one
	// for each net: item; a hand-picked address is left to the router.
	p := &feature.AttachPlan{ID: "ep1", Netns: "/run/netns/c1", Specs: []string{"net:10.40.7.0/24", "10.9.0.5/24"}}
	if err := f.PrepareAttach(ctx, p); err != nil {
		t.Fatal(err)
	}
	if len(p.Prefixes) != 1 || !netip.MustParsePrefix("10.40.7.0/24").Contains(p.Prefixes[0].Addr()) ||
		!slices.Equal(p.Specs, []string{"10.9.0.5/24"}) {
		t.Fatalf("plan %+v", p)
	}
	// A failed attach gives its allocations back.
	f.AbortAttach(p)
	if st := status(t, f); len(st.Allocations) != 0 {
		t.Errorf("allocations after abort: %+v", st.Allocations)
	}

	p = &feature.AttachPlan{ID: "ep1", Netns: "/run/netns/c1", Auto: true}
	if err := f.PrepareAttach(ctx, p); err != nil {
		t.Fatal(err)
	}
	if len(p.Prefixes) != 1 || !netip.MustParsePrefix("10.40.1.0/24").Contains(p.Prefixes[0].Addr()) {
		t.Fatalf("plan %+v", p)
	}
	ep := api.Endpoint{ID: "ep1", Netns: p.Netns, CIDRs: []string{p.Prefixes[0].String()}}
	if err := f.Attached(ctx, p, ep); err != nil {
		t.Fatal(err)
	}
	st := status(t, f)
	if len(st.Allocations) != 1 || st.Allocations[0] != (api.IPAMAllocation{Address: p.Prefixes[0].Addr().String(), Owner: "ep1"}) {
		t.Errorf("allocations %+v", st.Allocations)
	}
	if st.Range != "10.40.0.0/16" || st.DefaultSubnet != "10.40.1.0/24" || !st.Ready ||
		len(st.Peers) != 1 || !st.Peers[0].Self || st.Peers[0].Nickname != "host1" {
		t.Errorf("status %+v", st)
	}
	f.Detached(ctx, ep)
	if st := status(t, f); len(st.Allocations) != 0 {
		t.Errorf("allocations after detach: %+v", st.Allocations)
	}

	// A subnet outside the range is the request's fault.
	p = &feature.AttachPlan{ID: "ep2", Specs: []string{"net:10.99.0.0/24"}}
	if err := f.PrepareAttach(ctx, p); !errors.Is(err, api.ErrBadRequest) {
		t.Errorf("subnet outside the range: %v", err)
	}
}

func TestExposeAndHide(t *testing.T) {
	br := &fakeBridge{}
	f := startAlone(t, br)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got, err := f.exposeOne(ctx, "net:default")
	if err != nil || !netip.MustParsePrefix("10.40.1.0/24").Contains(got.Addr()) || got.Bits() != 24 {
		t.Fatalf("expose: %v %v", got, err)
	}
	// Exposing the same subnet again keeps the address it has.
	if again, err := f.exposeOne(ctx, "net:default"); err != nil || again != got {
		t.Errorf("expose again: %v %v, want %v", again, err, got)
	}
	if addrs, _ := br.Addrs(); !slices.Equal(addrs, []netip.Prefix{got}) {
		t.Errorf("bridge has %v", addrs)
	}
	// Reconcile keeps an exposed address while the bridge has it.
	f.Reconcile(ctx, nil)
	if st := status(t, f); len(st.Allocations) != 1 || st.Allocations[0].Owner != exposeOwner {
		t.Errorf("allocations after reconcile: %+v", st.Allocations)
	}
	resp, err := f.hide(nil, api.ExposeRequest{})
	if err != nil || !slices.Equal(resp.(api.ExposeResponse).CIDRs, []string{got.String()}) {
		t.Errorf("hide: %+v %v", resp, err)
	}
	if st := status(t, f); len(st.Allocations) != 0 {
		t.Errorf("allocations after hide: %+v", st.Allocations)
	}
}

// A range overlapping the host's routes is refused unless allowed.
func TestOverlapRefused(t *testing.T) {
	f, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close(context.Background())
	if err := f.Open(testHost(t, &fakeBridge{overlaps: []string{"10.32.0.0/16 dev eth1"}})); err == nil {
		t.Fatal("Open accepted an overlapping range")
	}
	f, err = New(Options{OverlapOK: true})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close(context.Background())
	if err := f.Open(testHost(t, &fakeBridge{overlaps: []string{"10.32.0.0/16 dev eth1"}})); err != nil {
		t.Fatalf("Open with the overlap allowed: %v", err)
	}
}

// Another feature allocates, claims and releases under owners of its own,
// and they survive Reconcile only if it claims them back.
func TestServices(t *testing.T) {
	f := startAlone(t, &fakeBridge{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if f.Range().String() != "10.40.0.0/16" || f.DefaultSubnet().String() != "10.40.1.0/24" {
		t.Errorf("range %v, default subnet %v", f.Range(), f.DefaultSubnet())
	}
	p, err := f.Allocate(ctx, "docker:pool1", f.DefaultSubnet())
	if err != nil || !f.DefaultSubnet().Contains(p.Addr()) {
		t.Fatalf("allocate: %v %v", p, err)
	}
	hand := netip.MustParseAddr("10.40.1.200")
	if warn := f.Claim("docker:pool1", hand); warn != "" {
		t.Errorf("claim: %s", warn)
	}
	if warn := f.Claim("docker:pool2", hand); warn == "" {
		t.Error("claimed an address another owner holds")
	}
	if got := f.Allocations(); len(got) != 2 {
		t.Errorf("allocations %+v", got)
	}
	f.ReleaseAddr("docker:pool1", hand)
	if got := f.Release("docker:pool1"); !slices.Equal(got, []netip.Addr{p.Addr()}) {
		t.Errorf("release: %v, want %v", got, p.Addr())
	}
	if got := f.Allocations(); len(got) != 0 {
		t.Errorf("allocations after release %+v", got)
	}
	if _, err := f.Allocate(ctx, "docker:pool1", netip.MustParsePrefix("10.40.9.0/30")); err != nil {
		t.Fatal(err)
	}
	f.Reconcile(ctx, nil)
	if got := f.Allocations(); len(got) != 0 {
		t.Errorf("allocations after reconcile %+v", got)
	}
}
