package router

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"weavemesh.dev/weave/api"
	"weavemesh.dev/weave/feature"
	"weavemesh.dev/weave/internal/netnstest"
	"weavemesh.dev/weave/netdev"
)

// callLog is the hook calls of one test, in order.
type callLog struct {
	mu    sync.Mutex
	calls []string
}

func (l *callLog) add(call string) {
	l.mu.Lock()
	l.calls = append(l.calls, call)
	l.mu.Unlock()
}

func (l *callLog) reset() {
	l.mu.Lock()
	l.calls = nil
	l.mu.Unlock()
}

func (l *callLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.calls, " ")
}

// recHook records its calls and can fail Attached.
type recHook struct {
	name       string
	log        *callLog
	failAttach bool
	addPrefix  string // added by PrepareAttach, as IP allocation does
}

func newHooks(log *callLog, names ...string) (hs []*recHook) {
	for _, n := range names {
		hs = append(hs, &recHook{name: n, log: log})
	}
	return hs
}

func (h *recHook) PrepareAttach(ctx context.Context, p *feature.AttachPlan) error {
	h.log.add(h.name + ".prepare")
	if h.addPrefix != "" {
		p.Prefixes = append(p.Prefixes, netip.MustParsePrefix(h.addPrefix))
	}
	return nil
}

func (h *recHook) AbortAttach(p *feature.AttachPlan) { h.log.add(h.name + ".abort") }

func (h *recHook) Attached(ctx context.Context, p *feature.AttachPlan, ep api.Endpoint) error {
	h.log.add(h.name + ".attached")
	if h.failAttach {
		return errors.New("injected attached failure")
	}
	return nil
}

func (h *recHook) Detached(ctx context.Context, ep api.Endpoint) { h.log.add(h.name + ".detached") }

func (h *recHook) Reconcile(ctx context.Context, eps []api.Endpoint) {}

// attachRouter is a Router with just what Attach needs: a bridge in a
// namespace of the test's own, a registry in a temporary directory, and
// recording hooks. It returns a container namespace to attach.
func attachRouter(t *testing.T, hooks ...*recHook) (*Router, string) {
	t.Helper()
	netnstest.NeedRoot(t)
	base := netnstest.Name("wvrt")
	netnstest.Enter(t, base+"-host")
	br, err := netdev.EnsureBridge(netdev.BridgeOptions{Name: "wvtest0", MTU: 1400})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { br.Delete() })
	eps, err := loadEndpoints(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	r := &Router{cfg: Config{MTU: 1400}, log: slog.New(slog.DiscardHandler), bridge: br, eps: eps}
	for _, h := range hooks {
		r.hooks = append(r.hooks, h)
	}
	r.ready.Store(true)
	return r, netnstest.Add(t, base+"-c")
}

// breakRegistry makes the next registry write fail: the temporary file
// it writes first cannot be created over a directory.
func breakRegistry(t *testing.T, r *Router) (repair func()) {
	t.Helper()
	tmp := r.eps.path + ".tmp"
	if err := os.Mkdir(tmp, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tmp, "x"), nil, 0o600); err != nil { // not an empty directory either
		t.Fatal(err)
	}
	return func() {
		if err := os.RemoveAll(tmp); err != nil {
			t.Fatal(err)
		}
	}
}

func cidrsOf(t *testing.T, r *Router, netns string) []string {
	t.Helper()
	ep, err := r.bridge.Inspect(netns)
	if endpointGone(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	out := prefixStrings(ep.CIDRs)
	slices.Sort(out)
	return out
}

func TestAttachUndoneWhenRegistryWriteFails(t *testing.T) {
	log := &callLog{}
	hs := newHooks(log, "ipam", "dns")
	hs[0].addPrefix = "10.99.7.1/24"
	r, c := attachRouter(t, hs...)
	repair := breakRegistry(t, r)
	_, err := r.Attach(context.Background(), api.AttachRequest{Netns: c, Name: "web"})
	if err == nil {
		t.Fatal("attach succeeded with a broken registry")
	}
	if got, want := log.String(), "ipam.prepare dns.prepare dns.abort ipam.abort"; got != want {
		t.Errorf("hook calls %q, want %q", got, want)
	}
	if got := cidrsOf(t, r, c); got != nil {
		t.Errorf("endpoint left behind with %v", got)
	}
	if recs := r.eps.list(); len(recs) != 0 {
		t.Errorf("registry holds %+v", recs)
	}

	// Once the registry works, the same attach succeeds; a second attach
	// adding an address, failing the same way, leaves the first as it was.
	repair()
	log.reset()
	ep, err := r.Attach(context.Background(), api.AttachRequest{Netns: c, Name: "web"})
	if err != nil {
		t.Fatal(err)
	}
	before, _ := r.eps.get(ep.ID)
	hs[0].addPrefix = "10.99.7.2/24"
	repair = breakRegistry(t, r)
	defer repair()
	log.reset()
	if _, err := r.Attach(context.Background(), api.AttachRequest{Netns: c, Name: "web"}); err == nil {
		t.Fatal("second attach succeeded with a broken registry")
	}
	if got, want := log.String(), "ipam.prepare dns.prepare dns.abort ipam.abort"; got != want {
		t.Errorf("hook calls %q, want %q", got, want)
	}
	if got := cidrsOf(t, r, c); fmt.Sprint(got) != "[10.99.7.1/24]" {
		t.Errorf("endpoint has %v, want only the first attach's 10.99.7.1/24", got)
	}
	if after, ok := r.eps.get(ep.ID); !ok || fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("registry record %+v, want %+v", after, before)
	}
}

func TestAttachUndoneWhenAFeatureFails(t *testing.T) {
	log := &callLog{}
	hs := newHooks(log, "ipam", "dns", "late")
	hs[0].addPrefix = "10.99.8.1/24"
	hs[1].failAttach = true
	r, c := attachRouter(t, hs...)
	if _, err := r.Attach(context.Background(), api.AttachRequest{Netns: c}); err == nil {
		t.Fatal("attach succeeded though a feature failed")
	}
	want := "ipam.prepare dns.prepare late.prepare ipam.attached dns.attached ipam.detached late.abort dns.abort ipam.abort"
	if got := log.String(); got != want {
		t.Errorf("hook calls\n%q, want\n%q", got, want)
	}
	if got := cidrsOf(t, r, c); got != nil {
		t.Errorf("endpoint left behind with %v", got)
	}
	if recs := r.eps.list(); len(recs) != 0 {
		t.Errorf("registry holds %+v", recs)
	}
	// And the file agrees.
	again, err := loadEndpoints(filepath.Dir(r.eps.path))
	if err != nil || len(again.list()) != 0 {
		t.Errorf("registry file holds %+v, %v", again.list(), err)
	}
}
