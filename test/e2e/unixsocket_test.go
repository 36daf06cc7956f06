package e2e

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"weavemesh.dev/weave/api"
	"weavemesh.dev/weave/test/harness"
)

// TestUnixSocketAPI: a router with --http-addr unix:///PATH serves its
// API on a socket of mode 0600 and on no TCP port; the CLI reaches it by
// flag and by WEAVE_HTTP_ADDR. A router killed with SIGKILL leaves the
// socket, and the next start replaces it; weave stop and weave reset
// remove it, and reset with no router running removes a stale one.
func TestUnixSocketAPI(t *testing.T) {
	cl := newCluster(t, harness.Options{Hosts: 1})
	h := cl.Host(1)
	bin, err := cl.WeaveBinary()
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(cl.Dir, "api", "weave.sock")
	addr := api.UnixScheme + sock
	ctx := ctxFor(t, 3*time.Minute)

	if err := h.StartRouter("--http-addr", addr); err != nil {
		t.Fatal(err)
	}
	checkSocket := func(when string) {
		t.Helper()
		fi, err := os.Lstat(sock)
		if err != nil {
			t.Fatalf("%s: %v", when, err)
		}
		if fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %s has mode %v, want a socket with 0600", when, sock, fi.Mode())
		}
	}
	checkSocket("after start")
	st, err := h.Status() // the harness passes --http-addr
	if err != nil || !st.Ready {
		t.Fatalf("weave status over the socket: %+v %v", st, err)
	}
	out, err := h.Output(ctx, "env", "WEAVE_HTTP_ADDR="+addr, bin, "status")
	if err != nil || !strings.Contains(out, "Name: "+st.Name) {
		t.Errorf("weave status with WEAVE_HTTP_ADDR: %v\n%s", err, out)
	}
	if _, err := h.Output(ctx, bin, "status", "--http-addr", api.DefaultAddr); err == nil {
		t.Errorf("the router also answers on %s", api.DefaultAddr)
	}

	// SIGKILL leaves the socket; the next start replaces it.
	if err := h.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := h.WaitExit(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(sock); err != nil {
		t.Fatalf("a killed router took its socket along (%v); the test cannot check the stale case", err)
	}
	var ee *harness.ExecError
	if _, err := h.Weave("status"); !errors.As(err, &ee) || !strings.Contains(ee.Output, "no router is running on "+addr) {
		t.Errorf("weave status on the stale socket: %v, want no router running on %s", err, addr)
	}
	if err := h.Restart(); err != nil {
		t.Fatalf("start over the stale socket: %v\n%s", err, harness.Tail(h.RouterLog(), 20))
	}
	checkSocket("after restart")
	if st2, err := h.Status(); err != nil || st2.Name != st.Name {
		t.Errorf("after restart: %+v %v", st2, err)
	}

	// weave stop removes it.
	if out, err := h.Weave("stop"); err != nil {
		t.Fatalf("weave stop: %v\n%s", err, out)
	}
	if err := h.WaitExit(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(sock); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket after weave stop: %v, want it gone", err)
	}

	// weave reset with a router running removes it, and so does reset
	// after a crash.
	if err := h.StartRouter("--http-addr", addr); err != nil {
		t.Fatal(err)
	}
	if out, err := h.Weave("reset", "--data-dir", h.DataDir()); err != nil {
		t.Fatalf("weave reset: %v\n%s", err, out)
	}
	if err := h.WaitExit(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(sock); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket after weave reset: %v, want it gone", err)
	}
	if err := h.StartRouter("--http-addr", addr); err != nil {
		t.Fatal(err)
	}
	if err := h.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := h.WaitExit(ctx); err != nil {
		t.Fatal(err)
	}
	out, err = h.Weave("reset", "--data-dir", h.DataDir())
	if err != nil || !strings.Contains(out, "removed the stale API socket "+sock) {
		t.Errorf("weave reset after a crash: %v\n%s", err, out)
	}
	if _, err := os.Lstat(sock); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket after weave reset of a crashed router: %v, want it gone", err)
	}

	// weave launch runs the router in the background on the socket; weave
	// stop after a crash says no router runs and removes the socket.
	if out, err := h.Launch("--http-addr", addr); err != nil {
		t.Fatalf("weave launch: %v\n%s", err, out)
	}
	checkSocket("after weave launch")
	if err := h.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := h.WaitExit(ctx); err != nil {
		t.Fatal(err)
	}
	_, err = h.Weave("stop")
	if !errors.As(err, &ee) || !strings.Contains(ee.Output, "removed the stale API socket "+sock) || !strings.Contains(ee.Output, "no router is running") {
		t.Errorf("weave stop after a crash: %v, want no router running and the socket removed", err)
	}
	if _, err := os.Lstat(sock); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket after weave stop of a crashed router: %v, want it gone", err)
	}
}
