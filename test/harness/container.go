package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

var containerSeq atomic.Uint64

// Container is a namespace standing in for a container on a host. It has
// only lo until Attach gives it an ethwe through the host's router.
type Container struct {
	*NS
	Name string
	Host *Host

	seq   uint64     // creation order
	mu    sync.Mutex // guards cidrs
	cidrs []string
}

func sortContainers(cs []*Container) {
	sort.Slice(cs, func(i, j int) bool { return cs[i].seq < cs[j].seq })
}

// Attach runs `weave attach CIDR... <netns>` on the container's host.
func (c *Container) Attach(cidrs ...string) error { return c.AttachArgs(cidrs...) }

// AttachArgs runs `weave attach args... <netns>` on the host, for flags such
// as --name, and remembers the addresses the endpoint got: those weave
// attach prints (allocated ones included), else the arguments that parse as
// IP/prefix.
func (c *Container) AttachArgs(args ...string) error {
	argv := append([]string{"attach"}, args...)
	argv = append(argv, c.NS.Name)
	out, err := c.Host.Weave(argv...)
	if err != nil {
		return fmt.Errorf("%s: weave attach: %w (output %q)", c.Name, err, strings.TrimSpace(out))
	}
	var got []string
	for _, f := range strings.Fields(out) {
		if _, err := netip.ParsePrefix(f); err == nil {
			got = append(got, f)
		}
	}
	if len(got) == 0 {
		for _, a := range args {
			if _, err := netip.ParsePrefix(a); err == nil {
				got = append(got, a)
			}
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, a := range got {
		if !slices.Contains(c.cidrs, a) {
			c.cidrs = append(c.cidrs, a)
		}
	}
	return nil
}

// Detach runs `weave detach <netns>` on the host.
func (c *Container) Detach() error {
	if out, err := c.Host.Weave("detach", c.NS.Name); err != nil {
		return fmt.Errorf("%s: weave detach: %w (output %q)", c.Name, err, strings.TrimSpace(out))
	}
	c.mu.Lock()
	c.cidrs = nil
	c.mu.Unlock()
	return nil
}

// CIDRs returns the addresses given to Attach.
func (c *Container) CIDRs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.cidrs...)
}

// IP returns the container's first attached address without prefix, "" if
// none.
func (c *Container) IP() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.cidrs) == 0 {
		return ""
	}
	p, _ := netip.ParsePrefix(c.cidrs[0])
	return p.Addr().String()
}

// LinkMTU returns the MTU of an interface in the namespace.
func (n *NS) LinkMTU(ctx context.Context, iface string) (int, error) {
	out, err := n.Output(ctx, "cat", "/sys/class/net/"+iface+"/mtu")
	if err != nil {
		return 0, err
	}
	mtu, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil {
		return 0, fmt.Errorf("%s: mtu of %s: %w", n.Name, iface, err)
	}
	return mtu, nil
}

// TransferResult is one TCP transfer made with Transfer.
type TransferResult struct {
	Bytes        int64
	SentSHA256   string
	RecvSHA256   string
	RecvBytes    int64
	Duration     time.Duration
	ThroughputMb float64 // megabits per second, as the receiver saw it
}

// toolResult is what wvtool send and sink print.
type toolResult struct {
	Bytes   int64   `json:"bytes"`
	SHA256  string  `json:"sha256"`
	Seconds float64 `json:"seconds"`
}

// Transfer sends size random bytes over TCP from a program in from to a sink
// listening on port in to, reachable at toIP, and returns both ends' SHA-256.
// It fails if the transfer does not complete within ctx or the hashes differ.
func Transfer(ctx context.Context, from, to *NS, toIP string, port int, size int64) (TransferResult, error) {
	return TransferWith(ctx, from, to, toIP, port, size)
}

// TransferWith is Transfer with more arguments for the sender, wvtool send
// (-marker-file FILE, to stream a file's bytes over and over instead of
// random ones).
func TransferWith(ctx context.Context, from, to *NS, toIP string, port int, size int64, sendArgs ...string) (TransferResult, error) {
	if _, err := netip.ParseAddr(toIP); err != nil {
		return TransferResult{}, fmt.Errorf("transfer to %q: %w", toIP, err)
	}
	tool, err := BuildTool()
	if err != nil {
		return TransferResult{}, err
	}
	timeout := "60s"
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl).Round(time.Second).String()
	}
	type sinkOut struct {
		out string
		err error
	}
	sinkc := make(chan sinkOut, 1)
	sinkCtx, cancelSink := context.WithCancel(ctx)
	defer cancelSink()
	go func() {
		out, err := to.Output(sinkCtx, tool, "sink", "-listen", fmt.Sprintf(":%d", port), "-timeout", timeout)
		sinkc <- sinkOut{out, err}
	}()
	start := time.Now()
	args := append([]string{tool, "send", "-to", net.JoinHostPort(toIP, strconv.Itoa(port)),
		"-bytes", strconv.FormatInt(size, 10), "-timeout", timeout}, sendArgs...)
	sendOut, sendErr := from.Output(ctx, args...)
	res := TransferResult{Duration: time.Since(start)}
	if sendErr != nil {
		cancelSink() // nothing will arrive
		<-sinkc
		return res, fmt.Errorf("send %s -> %s: %w", from.Name, to.Name, sendErr)
	}
	so := <-sinkc
	if so.err != nil {
		return res, fmt.Errorf("sink in %s: %w", to.Name, so.err)
	}
	var s, r toolResult
	if err := json.Unmarshal([]byte(lastLine(sendOut)), &s); err != nil {
		return res, fmt.Errorf("send output %q: %w", sendOut, err)
	}
	if err := json.Unmarshal([]byte(lastLine(so.out)), &r); err != nil {
		return res, fmt.Errorf("sink output %q: %w", so.out, err)
	}
	res.Bytes, res.SentSHA256, res.RecvSHA256, res.RecvBytes = s.Bytes, s.SHA256, r.SHA256, r.Bytes
	if r.Seconds > 0 {
		res.ThroughputMb = float64(r.Bytes) * 8 / r.Seconds / 1e6
	}
	if s.Bytes != size || r.Bytes != size || s.SHA256 != r.SHA256 {
		return res, fmt.Errorf("transfer %s -> %s corrupted: sent %d bytes sha256 %s, received %d bytes sha256 %s",
			from.Name, to.Name, s.Bytes, s.SHA256, r.Bytes, r.SHA256)
	}
	return res, nil
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
