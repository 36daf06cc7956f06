package harness

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestNewPrefix(t *testing.T) {
	a, b := NewPrefix(), NewPrefix()
	if a == b {
		t.Fatalf("two prefixes are equal: %q", a)
	}
	re := regexp.MustCompile(fmt.Sprintf(`^wv%dx[0-9]+-$`, os.Getpid()))
	for _, p := range []string{a, b} {
		if !re.MatchString(p) {
			t.Errorf("prefix %q does not match %s", p, re)
		}
		pid, ok := CreatorPID(p + "host1")
		if !ok || pid != os.Getpid() {
			t.Errorf("CreatorPID(%q) = %d, %v; want %d", p+"host1", pid, ok, os.Getpid())
		}
	}
}

func TestCreatorPID(t *testing.T) {
	tests := []struct {
		name string
		pid  int
		ok   bool
	}{
		{"wv123x4-host1", 123, true},
		{"wv4194304x99-underlay", 4194304, true},
		{"wv123x4host1", 0, false},
		{"wvdemo-host1", 0, false},
		{"xwv123x4-host1", 0, false},
		{"wv0x1-a", 0, false},
		{"eth0", 0, false},
	}
	for _, tt := range tests {
		pid, ok := CreatorPID(tt.name)
		if pid != tt.pid || ok != tt.ok {
			t.Errorf("CreatorPID(%q) = %d, %v; want %d, %v", tt.name, pid, ok, tt.pid, tt.ok)
		}
	}
}

func TestCleanupOrderAndIdempotence(t *testing.T) {
	var c Cleanup
	var order []int
	for i := 1; i <= 3; i++ {
		c.Add(fmt.Sprint(i), func() error {
			order = append(order, i)
			if i == 2 {
				return errors.New("boom")
			}
			return nil
		})
	}
	err := c.Run()
	if fmt.Sprint(order) != "[3 2 1]" {
		t.Errorf("order = %v, want [3 2 1]", order)
	}
	if err == nil || !strings.Contains(err.Error(), "cleanup 2: boom") {
		t.Errorf("err = %v, want it to name step 2", err)
	}
	if err := c.Run(); err != nil || len(order) != 3 {
		t.Errorf("second Run: err %v, order %v; want a no-op", err, order)
	}
	c.Add("x", func() error { t.Error("forgotten step ran"); return nil })
	c.Forget()
	if err := c.Run(); err != nil {
		t.Error(err)
	}
}

func TestParsePing(t *testing.T) {
	tests := []struct {
		name       string
		out        string
		tx, rx     int
		loss       float64
		avg        time.Duration
		frag, long bool
		mtu        int
		wantErr    bool
	}{
		{
			name: "ok",
			out: `PING 10.32.2.1 (10.32.2.1) 56(84) bytes of data.
64 bytes from 10.32.2.1: icmp_seq=1 ttl=64 time=0.101 ms

--- 10.32.2.1 ping statistics ---
3 packets transmitted, 3 received, 0% packet loss, time 2003ms
rtt min/avg/max/mdev = 0.061/0.250/0.500/0.020 ms`,
			tx: 3, rx: 3, avg: 250 * time.Microsecond,
		},
		{
			name: "loss",
			out: `PING 10.32.2.1 (10.32.2.1) 56(84) bytes of data.

--- 10.32.2.1 ping statistics ---
1 packets transmitted, 0 received, 100% packet loss, time 0ms
`,
			tx: 1, loss: 100,
		},
		{
			name: "frag needed",
			out: `PING 10.32.3.1 (10.32.3.1) 1348(1376) bytes of data.
From 10.32.1.1 icmp_seq=1 Frag needed and DF set (mtu = 1276)

--- 10.32.3.1 ping statistics ---
1 packets transmitted, 0 received, +1 errors, 100% packet loss, time 0ms
`,
			tx: 1, loss: 100, frag: true, mtu: 1276,
		},
		{
			name: "message too long",
			out: `PING 10.32.3.1 (10.32.3.1) 1348(1376) bytes of data.
ping: local error: message too long, mtu=1276

--- 10.32.3.1 ping statistics ---
1 packets transmitted, 0 received, +1 errors, 100% packet loss, time 0ms
`,
			tx: 1, loss: 100, long: true, mtu: 1276,
		},
		{
			name: "sendmsg too long",
			out: `PING 192.168.77.3 (192.168.77.3) 1400(1428) bytes of data.
ping: sendmsg: Message too long

--- 192.168.77.3 ping statistics ---
1 packets transmitted, 0 received, 100% packet loss, time 0ms
`,
			tx: 1, loss: 100, long: true,
		},
		{name: "garbage", out: "ping: unknown host", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := ParsePing(tt.out)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if tt.wantErr {
				return
			}
			if r.Transmitted != tt.tx || r.Received != tt.rx || r.Loss != tt.loss || r.Avg != tt.avg ||
				r.FragNeeded != tt.frag || r.TooLong != tt.long || r.MTU != tt.mtu {
				t.Errorf("got %+v", r)
			}
		})
	}
}

func TestTail(t *testing.T) {
	tests := []struct {
		in   string
		n    int
		want string
	}{
		{"a\nb\nc\n", 2, "b\nc"},
		{"a\nb\nc", 5, "a\nb\nc"},
		{"", 3, ""},
		{"one", 1, "one"},
	}
	for _, tt := range tests {
		if got := Tail(tt.in, tt.n); got != tt.want {
			t.Errorf("Tail(%q, %d) = %q, want %q", tt.in, tt.n, got, tt.want)
		}
	}
}

func TestPoll(t *testing.T) {
	n := 0
	err := PollFor(5*time.Second, "third try", func(context.Context) error {
		n++
		if n < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	if err != nil || n != 3 {
		t.Errorf("err %v after %d tries; want success on the third", err, n)
	}

	sentinel := errors.New("fatal")
	n = 0
	err = PollFor(5*time.Second, "permanent", func(context.Context) error { n++; return Permanent(sentinel) })
	if !errors.Is(err, sentinel) || n != 1 {
		t.Errorf("err %v after %d tries; want the permanent error at once", err, n)
	}

	err = PollFor(200*time.Millisecond, "never", func(context.Context) error { return errors.New("still no") })
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "still no") || !strings.Contains(err.Error(), "never") {
		t.Errorf("err = %v; want a timeout naming what and the last error", err)
	}
}

func TestOptionsValidation(t *testing.T) {
	tests := []struct {
		opts  Options
		field string
	}{
		{Options{Hosts: -1}, "Options.Hosts"},
		{Options{Hosts: 300}, "Options.Hosts"},
		{Options{MTU: 100}, "Options.MTU"},
		{Options{Hosts: 2, HostMTU: map[int]int{3: 1300}}, "Options.HostMTU"},
		{Options{HostMTU: map[int]int{1: 10}}, "Options.HostMTU[1]"},
		{Options{Prefix: strings.Repeat("x", 30)}, "Options.Prefix"},
	}
	for _, tt := range tests {
		_, err := tt.opts.withDefaults()
		if err == nil || !strings.Contains(err.Error(), tt.field) {
			t.Errorf("withDefaults(%+v) = %v; want an error naming %s", tt.opts, err, tt.field)
		}
	}
	o, err := Options{}.withDefaults()
	if err != nil || o.Hosts != DefaultHosts || o.MTU != DefaultMTU || o.Underlay != DefaultUnderlay {
		t.Errorf("defaults: %+v, %v", o, err)
	}
}

func TestReadPcapMissingAndEmpty(t *testing.T) {
	if _, err := ReadPcap(filepath.Join(t.TempDir(), "none.pcap")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	p := filepath.Join(t.TempDir(), "empty.pcap")
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if ps, err := ReadPcap(p); err != nil || len(ps) != 0 {
		t.Errorf("empty file: %v, %v", ps, err)
	}
}

// deadPID returns the pid of a process that has exited.
func deadPID(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	if pidAlive(pid) {
		t.Skipf("pid %d was reused at once", pid)
	}
	return pid
}

func FuzzParsePing(f *testing.F) {
	f.Add("1 packets transmitted, 1 received, 0% packet loss, time 0ms\nrtt min/avg/max/mdev = 0.1/0.2/0.3/0.01 ms")
	f.Add("From 10.32.1.1 icmp_seq=1 Frag needed and DF set (mtu = 99999999999999999999)")
	f.Add("ping: local error: message too long, mtu=1276")
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParsePing(s)
		if err == nil && (r.Transmitted < 0 || r.Received < 0) {
			t.Errorf("negative counts from %q", s)
		}
	})
}
