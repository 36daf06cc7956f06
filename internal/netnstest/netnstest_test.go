package netnstest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

func mounted(name string) bool {
	_, err := os.Stat(filepath.Join(Dir, name))
	return err == nil
}

func loUp(t *testing.T) bool {
	t.Helper()
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	return lo.Attrs().Flags&net.FlagUp != 0
}

func TestName(t *testing.T) {
	a, b := Name("wvnt"), Name("wvnt")
	if a == b || !strings.HasPrefix(a, fmt.Sprintf("wvnt-%d-", os.Getpid())) {
		t.Fatalf("names %q %q", a, b)
	}
}

func TestEnter(t *testing.T) {
	NeedRoot(t)
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	name := Name("wvnt")
	t.Run("inside", func(t *testing.T) {
		Enter(t, name)
		cur, err := netns.Get()
		if err != nil {
			t.Fatal(err)
		}
		defer cur.Close()
		if cur.Equal(orig) {
			t.Fatal("still in the original namespace")
		}
		if loUp(t) {
			t.Fatal("lo up in a bare namespace")
		}
		Loopback(t)
		if !loUp(t) {
			t.Fatal("lo not up after Loopback")
		}
	})
	if mounted(name) {
		t.Errorf("%s not deleted at cleanup", name)
	}
}

func TestAddAndDo(t *testing.T) {
	NeedRoot(t)
	name := Name("wvnt")
	var path string
	t.Run("add", func(t *testing.T) {
		path = Add(t, name)
		if !mounted(name) {
			t.Fatal("not mounted")
		}
		var up bool
		if err := Do(path, func() error {
			lo, err := netlink.LinkByName("lo")
			if err != nil {
				return err
			}
			up = lo.Attrs().Flags&net.FlagUp != 0
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if up {
			t.Error("lo up in an added namespace; ip netns add leaves it down")
		}
		if err := Do(path, func() error { return fmt.Errorf("boom") }); err == nil || err.Error() != "boom" {
			t.Errorf("fn's error: %v", err)
		}
	})
	if mounted(name) {
		t.Errorf("%s not deleted at cleanup", name)
	}
	if err := Do(path, func() error { return nil }); err == nil {
		t.Error("Do in a deleted namespace succeeded")
	}
}

func TestSweepDeadRuns(t *testing.T) {
	NeedRoot(t)
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skipf("cannot find a dead PID: %v", err)
	}
	dead := cmd.Process.Pid
	if alive(dead) {
		t.Skip("the PID was reused at once")
	}
	leftover := fmt.Sprintf("wvsweep-%d-1", dead)
	mine := Name("wvsweep")
	if err := create(leftover); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = netns.DeleteNamed(leftover) }) // if sweep missed it
	Add(t, mine)
	sweep("wvsweep")
	if mounted(leftover) {
		t.Error("leftover of a dead process not swept")
	}
	if !mounted(mine) {
		t.Error("this process's namespace swept")
	}
}
