package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/gopacket/pcapgo"
)

var captureSeq atomic.Uint64

// Capture is a tcpdump running on one interface of a namespace.
type Capture struct {
	proc *Proc
	file string
}

// Packet is one captured frame.
type Packet struct {
	Time time.Time
	Data []byte // as captured (the whole frame: tcpdump runs with -s 0)
	Len  int    // length on the wire
}

// Packets is what a capture saw.
type Packets []Packet

// Count is the number of packets.
func (ps Packets) Count() int { return len(ps) }

// Bytes is the sum of their wire lengths.
func (ps Packets) Bytes() int {
	n := 0
	for _, p := range ps {
		n += p.Len
	}
	return n
}

// Containing counts the packets whose bytes contain marker.
func (ps Packets) Containing(marker []byte) int {
	n := 0
	for _, p := range ps {
		if bytes.Contains(p.Data, marker) {
			n++
		}
	}
	return n
}

// Capture starts tcpdump on iface with a pcap filter expression (may be
// empty) and returns once it is capturing. The files live in the cluster dir.
func (n *NS) Capture(ctx context.Context, iface, filter string) (*Capture, error) {
	dir := os.TempDir()
	if n.owner != nil {
		dir = n.owner.Dir
	}
	base := filepath.Join(dir, fmt.Sprintf("cap%d-%s-%s", captureSeq.Add(1), n.Name, iface))
	file := base + ".pcap"
	argv := []string{"tcpdump", "-i", iface, "-n", "-s", "0", "-U", "--immediate-mode", "-Z", "root", "-w", file}
	if filter != "" {
		argv = append(argv, strings.Fields(filter)...)
	}
	p, err := n.Start(base+".log", argv...)
	if err != nil {
		return nil, err
	}
	if err := p.WaitLog(ctx, "listening on"); err != nil {
		_ = p.Kill()
		return nil, fmt.Errorf("tcpdump on %s in %s: %w", iface, n.Name, err)
	}
	return &Capture{proc: p, file: file}, nil
}

// Stop ends tcpdump (SIGINT, so it flushes) and returns what it captured.
func (c *Capture) Stop() (Packets, error) {
	if err := c.proc.Signal(syscall.SIGINT); err != nil {
		return nil, err
	}
	select {
	case <-c.proc.Done():
	case <-time.After(10 * time.Second):
		_ = c.proc.Kill()
	}
	return ReadPcap(c.file)
}

// Snapshot returns what was captured so far without stopping.
func (c *Capture) Snapshot() (Packets, error) { return ReadPcap(c.file) }

// ReadPcap reads a pcap file; a truncated last record (capture still running)
// is ignored.
func ReadPcap(path string) (Packets, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil // header not written yet
		}
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	var ps Packets
	for {
		data, ci, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return ps, nil
		}
		if err != nil {
			return ps, fmt.Errorf("read %s: %w", path, err)
		}
		ps = append(ps, Packet{Time: ci.Timestamp, Data: append([]byte(nil), data...), Len: ci.Length})
	}
}
