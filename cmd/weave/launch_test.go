package main

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// launchApp is a test app whose launch starts this test binary as a fake
// router (see TestMain).
func launchApp(t *testing.T) (*app, *strings.Builder, *strings.Builder) {
	t.Helper()
	a, _, _ := testApp(t)
	var stdout, stderr strings.Builder
	a.stdout, a.stderr = &stdout, &stderr
	a.executable = os.Executable
	a.environ = func() []string { return append(os.Environ(), fakeRouterEnv+"=1") }
	return a, &stdout, &stderr
}

func TestLaunchStatusStop(t *testing.T) {
	addr := freeAddr(t)
	dataDir := filepath.Join(t.TempDir(), "state")
	a, stdout, stderr := launchApp(t)
	ctx := context.Background()

	code := a.run(ctx, []string{"--http-addr", addr, "launch", "--data-dir", dataDir,
		"--name", "aa:bb:cc:dd:ee:01", "--nickname", "web1", "--wait-peers", "300ms", "10.0.0.2"})
	if code != 0 {
		t.Fatalf("launch: exit %d: %s", code, stderr)
	}
	// No peer answers here: launch says so, and that the router goes on.
	if !strings.Contains(stderr.String(), "waiting for peers 10.0.0.2") || !strings.Contains(stderr.String(), "no peer connected within 300ms") {
		t.Errorf("launch's progress on stderr:\n%s", stderr)
	}
	pid := readPID(t, dataDir)
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			b, _, _ := testApp(t)
			b.run(ctx, []string{"--http-addr", addr, "stop"})
		}
		reap(t, pid)
	})
	if stdout.String() != "aa:bb:cc:dd:ee:01\n" {
		t.Errorf("launch printed %q, want the peer name", stdout)
	}
	if fi, err := os.Stat(dataDir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("data dir: %v %v, want mode 0700", fi.Mode(), err)
	}

	// A second launch finds the first.
	stdout.Reset()
	stderr.Reset()
	code = a.run(ctx, []string{"--http-addr", addr, "launch", "--data-dir", dataDir})
	want := "weave: a router is already running on " + addr + " (peer aa:bb:cc:dd:ee:01); stop it with weave stop\n"
	if code != 1 || stderr.String() != want {
		t.Errorf("second launch: exit %d, stderr %q; want 1, %q", code, stderr, want)
	}

	stdout.Reset()
	if code := a.run(ctx, []string{"--http-addr", addr, "status"}); code != 0 {
		t.Fatalf("status: exit %d: %s", code, stderr)
	}
	if !strings.Contains(stdout.String(), "Name: aa:bb:cc:dd:ee:01 (web1)\n") {
		t.Errorf("status printed %q", stdout)
	}

	stderr.Reset()
	if code := a.run(ctx, []string{"--http-addr", addr, "stop"}); code != 0 {
		t.Fatalf("stop: exit %d: %s", code, stderr)
	}
	stopped = true
	reap(t, pid)

	log, err := os.ReadFile(filepath.Join(dataDir, logFile))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(log), `msg="fake router up" name=aa:bb:cc:dd:ee:01 peers=10.0.0.2`) {
		t.Errorf("router.log lacks the router's output:\n%s", log)
	}
	if code := a.run(ctx, []string{"--http-addr", addr, "stop"}); code != 1 {
		t.Errorf("second stop: exit %d, want 1", code)
	}
}

func TestLaunchChildFails(t *testing.T) {
	addr := freeAddr(t)
	dataDir := t.TempDir()
	// An earlier run's log must not show up in the failure.
	if err := os.WriteFile(filepath.Join(dataDir, logFile), []byte("old run line\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a, stdout, stderr := launchApp(t)
	code := a.run(context.Background(), []string{"--http-addr", addr, "launch", "--data-dir", dataDir, peerFail})
	reap(t, readPID(t, dataDir))
	if code != 1 {
		t.Fatalf("exit %d, want 1; stderr %s", code, stderr)
	}
	if stdout.Len() != 0 {
		t.Errorf("stdout %q", stdout)
	}
	re := regexp.MustCompile(`^weave: router \(pid \d+\) exited with status 1 before it was ready; last lines of ` +
		regexp.QuoteMeta(filepath.Join(dataDir, logFile)) + `:\n(    .*\n)+$`)
	got := stderr.String()
	if !re.MatchString(got) {
		t.Errorf("stderr %q does not match %s", got, re)
	}
	for _, want := range []string{"fake router: cannot join: boom", "weave: boom"} {
		if !strings.Contains(got, want) {
			t.Errorf("stderr lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "old run line") {
		t.Errorf("stderr shows an earlier run's log:\n%s", got)
	}
}

func TestLaunchNotReady(t *testing.T) {
	addr := freeAddr(t)
	dataDir := t.TempDir()
	a, _, stderr := launchApp(t)
	a.launchTimeout = 300 * time.Millisecond
	code := a.run(context.Background(), []string{"--http-addr", addr, "launch", "--data-dir", dataDir, peerSlow})
	pid := readPID(t, dataDir)
	t.Cleanup(func() {
		b, _, _ := testApp(t)
		b.run(context.Background(), []string{"--http-addr", addr, "stop"})
		reap(t, pid)
	})
	if code != 1 || !strings.Contains(stderr.String(), "is not ready after 300ms") ||
		!strings.Contains(stderr.String(), "it is still running") {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
}

func TestLaunchBadFlags(t *testing.T) {
	a, _, stderr := launchApp(t)
	a.executable = func() (string, error) {
		t.Error("launch started a router despite bad flags")
		return "", os.ErrNotExist
	}
	code := a.run(context.Background(), []string{"--http-addr", freeAddr(t), "launch", "--mtu", "10"})
	if code != 1 || !strings.Contains(stderr.String(), "--mtu 10: must be 576-65000") {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
}

func TestLaunchSomethingElseAnswers(t *testing.T) {
	addr := startAPI(t, &fakeBackend{err: context.DeadlineExceeded})
	a, _, stderr := launchApp(t)
	a.executable = func() (string, error) {
		t.Error("launch started a router although the address answers")
		return "", os.ErrNotExist
	}
	code := a.run(context.Background(), []string{"--http-addr", addr, "launch", "--data-dir", t.TempDir()})
	want := "weave: a router is already running on " + addr + " (starting or stopping); stop it with weave stop\n"
	if code != 1 || stderr.String() != want {
		t.Errorf("exit %d, stderr %q; want %q", code, stderr, want)
	}
}
