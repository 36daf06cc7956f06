package tap

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/songgao/water"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Options configure Open.
type Options struct {
	// Name of the interface; required, at most 15 bytes.
	Name string
	// MTU of the interface; 0 keeps the kernel default (1500).
	MTU int
	// Offload asks for IFF_VNET_HDR with checksum and segmentation
	// offloads. If the kernel refuses, Open falls back to a plain device and
	// logs why; Device.Offload reports the outcome.
	Offload bool
	// Queues is the number of queues to open (IFF_MULTI_QUEUE), each
	// read and written by its own goroutine; 0 or 1 opens one. The kernel
	// hands every frame of one flow to the same queue. Needs Offload; a
	// plain device has one queue.
	Queues int
	// Logger receives the one-time setup messages; nil discards them.
	Logger *slog.Logger
}

// MaxQueues is the most queues Open opens.
const MaxQueues = 16

// Device is an open TAP interface. It is removed from the system when
// closed.
//
// Read and Write may be called from different goroutines at the same time.
// Concurrent calls to Read (or to Write) are serialised.
type Device struct {
	log     *slog.Logger
	name    string
	index   int
	offload bool
	minBuf  int // bytes a Read buffer needs after its offset
	file    *os.File
	raw     syscall.RawConn

	// queues are the further queues of a multi-queue device (Queues);
	// Close closes them too.
	queues []*Device

	// syscalls counts this queue's read and write system calls.
	syscalls atomic.Uint64

	closeOnce sync.Once
	closed    atomic.Bool
	closeErr  error

	rmu sync.Mutex // serialises Read; guards rd
	rd  readState

	wmu sync.Mutex // serialises Write; guards wr
	wr  writeState
}

// readState is the argument block of the raw read callback. It lives in the
// Device so the callback can be bound once and Read does not allocate.
type readState struct {
	fn     func(fd uintptr) bool
	bufs   [][]byte
	sizes  []int
	offset int
	n      int
	err    error
}

// writeState is the argument block of the raw write callback.
type writeState struct {
	fn         func(fd uintptr) bool
	bufs       [][]byte
	offset     int
	i          int    // frame being written
	written    int    // frames the kernel accepted
	pending    []byte // bytes of frame i (or of its current segment) still to write
	segmenting bool   // pending is a segment produced by seg
	firstErr   error
	seg        segmenter
	segBuf     []byte // plain mode: one segment; allocated on first GSO frame
}

// Offload flag sets tried in order: newest kernels accept UDP segmentation
// offload (USO) too; older ones only TCP.
var offloadFlagSets = []int{
	unix.TUN_F_CSUM | unix.TUN_F_TSO4 | unix.TUN_F_TSO6 | unix.TUN_F_TSO_ECN | unix.TUN_F_USO4 | unix.TUN_F_USO6,
	unix.TUN_F_CSUM | unix.TUN_F_TSO4 | unix.TUN_F_TSO6 | unix.TUN_F_TSO_ECN,
	unix.TUN_F_CSUM | unix.TUN_F_TSO4 | unix.TUN_F_TSO6,
}

// Open creates the TAP interface in the calling thread's network
// namespace, sets its MTU and brings it up. The interface is not
// persistent: it disappears when the Device is closed or the process exits.
func Open(o Options) (*Device, error) {
	if o.Name == "" {
		return nil, errors.New("tap: Options.Name is required")
	}
	if len(o.Name) >= unix.IFNAMSIZ {
		return nil, fmt.Errorf("tap: Options.Name %q is longer than %d bytes", o.Name, unix.IFNAMSIZ-1)
	}
	if o.MTU != 0 && (o.MTU < 68 || o.MTU > 65535) {
		return nil, fmt.Errorf("tap: Options.MTU %d out of range 68..65535", o.MTU)
	}
	if o.Queues < 0 || o.Queues > MaxQueues {
		return nil, fmt.Errorf("tap: Options.Queues %d out of range 0..%d", o.Queues, MaxQueues)
	}
	multi := o.Offload && o.Queues > 1
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := &Device{log: log.With("tap", o.Name), name: o.Name}

	if o.Offload {
		f, flags, err := openOffload(o.Name, multi)
		if err != nil && multi {
			// A kernel without multi-queue TAPs: one queue.
			d.log.Warn("TAP queues refused by the kernel; one queue", "queues", o.Queues, "err", err)
			multi = false
			f, flags, err = openOffload(o.Name, false)
		}
		if err == nil {
			d.file, d.offload = f, true
			d.log.Info("TAP offloads enabled", "flags", offloadFlagNames(flags))
		} else {
			d.log.Warn("TAP offloads refused by the kernel; using plain frames, one system call each", "err", err)
		}
	}
	if d.file == nil {
		f, err := openPlain(o.Name)
		if err != nil {
			return nil, err
		}
		d.file = f
	}

	raw, err := d.file.SyscallConn()
	if err == nil {
		d.raw = raw
		err = d.configure(o.MTU)
	}
	if err != nil {
		d.file.Close()
		return nil, err
	}
	d.rd.fn = d.readFn
	d.wr.fn = d.writeFn
	if multi && d.offload {
		for range o.Queues - 1 {
			f, _, err := openOffload(o.Name, true)
			if err != nil {
				d.Close()
				return nil, fmt.Errorf("tap: open another queue: %w", err)
			}
			q, err := d.queue(f)
			if err != nil {
				f.Close()
				d.Close()
				return nil, err
			}
			d.queues = append(d.queues, q)
		}
		d.log.Info("TAP queues open", "queues", len(d.queues)+1)
	}
	return d, nil
}

// queue returns a Device for another queue of d's interface, open on f.
func (d *Device) queue(f *os.File) (*Device, error) {
	raw, err := f.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("tap: %w", err)
	}
	q := &Device{log: d.log, name: d.name, index: d.index, offload: d.offload, minBuf: d.minBuf, file: f, raw: raw}
	q.rd.fn = q.readFn
	q.wr.fn = q.writeFn
	return q, nil
}

// Queues returns the device's queues, d first: one unless Options.Queues
// opened more. Each is a Device to read and write on its own; closing d
// closes them all.
func (d *Device) Queues() []*Device {
	return append([]*Device{d}, d.queues...)
}

// openOffload opens the device with IFF_VNET_HDR itself: songgao/water
// offers no way to pass that flag, and the offloads depend on it.
func openOffload(name string, multi bool) (*os.File, int, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, 0, fmt.Errorf("open /dev/net/tun: %w", err)
	}
	fail := func(what string, err error) (*os.File, int, error) {
		unix.Close(fd)
		return nil, 0, fmt.Errorf("%s on %s: %w", what, name, err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return fail("interface name", err)
	}
	flags := uint16(unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
	if multi {
		flags |= unix.IFF_MULTI_QUEUE
	}
	ifr.SetUint16(flags)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		return fail("TUNSETIFF", err)
	}
	if err := unix.IoctlSetPointerInt(fd, unix.TUNSETVNETHDRSZ, VnetHdrLen); err != nil {
		return fail("TUNSETVNETHDRSZ", err)
	}
	// Fix the header's byte order instead of relying on the host's.
	if err := unix.IoctlSetPointerInt(fd, unix.TUNSETVNETLE, 1); err != nil {
		return fail("TUNSETVNETLE", err)
	}
	var offloads int
	for _, f := range offloadFlagSets {
		if err = unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, f); err == nil {
			offloads = f
			break
		}
	}
	if err != nil {
		return fail("TUNSETOFFLOAD", err)
	}
	return os.NewFile(uintptr(fd), "/dev/net/tun"), offloads, nil
}

// openPlain creates a device without virtio_net_hdr through songgao/water.
func openPlain(name string) (*os.File, error) {
	ifce, err := water.New(water.Config{
		DeviceType:             water.TAP,
		PlatformSpecificParams: water.PlatformSpecificParams{Name: name},
	})
	if err != nil {
		return nil, fmt.Errorf("tap: create %s (needs CAP_NET_ADMIN and /dev/net/tun): %w", name, err)
	}
	f, ok := ifce.ReadWriteCloser.(*os.File)
	if !ok {
		ifce.Close()
		return nil, fmt.Errorf("tap: create %s: unexpected device handle %T", name, ifce.ReadWriteCloser)
	}
	// water opens the device without O_CLOEXEC; a child process holding
	// the descriptor would keep the interface alive after Close.
	if raw, err := f.SyscallConn(); err == nil {
		raw.Control(func(fd uintptr) { unix.CloseOnExec(int(fd)) })
	}
	return f, nil
}

// configure sets the MTU, brings the link up and records its index.
func (d *Device) configure(mtu int) error {
	link, err := netlink.LinkByName(d.name)
	if err != nil {
		return fmt.Errorf("tap: look up %s: %w", d.name, err)
	}
	if mtu > 0 {
		if err := netlink.LinkSetMTU(link, mtu); err != nil {
			return fmt.Errorf("tap: set MTU %d on %s: %w", mtu, d.name, err)
		}
	} else {
		mtu = link.Attrs().MTU
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("tap: bring up %s: %w", d.name, err)
	}
	d.index = link.Attrs().Index
	if d.offload {
		d.minBuf = MaxFrameSize
	} else {
		d.minBuf = VnetHdrLen + ethHdrLen + vlanTagLen + mtu
	}
	return nil
}

// Name is the interface name.
func (d *Device) Name() string { return d.name }

// Index is the interface index.
func (d *Device) Index() int { return d.index }

// QueueDrops is the number of frames the kernel dropped on their way into
// the router because the device's queues were full (the interface's
// tx_dropped: the bridge transmits into the TAP).
func (d *Device) QueueDrops() (uint64, error) {
	l, err := netlink.LinkByIndex(d.index)
	if err != nil {
		return 0, fmt.Errorf("tap %s: read counters: %w", d.name, err)
	}
	st := l.Attrs().Statistics
	if st == nil {
		return 0, fmt.Errorf("tap %s: the kernel reported no counters", d.name)
	}
	return st.TxDropped, nil
}

// Syscalls is the number of read and write system calls made on this
// queue so far, reads that found nothing included.
func (d *Device) Syscalls() uint64 { return d.syscalls.Load() }

// Offload reports whether IFF_VNET_HDR with checksum and TCP segmentation
// offloads is active. When false, Read never returns super-frames.
func (d *Device) Offload() bool { return d.offload }

// Read blocks until at least one frame is available, then reads as many as
// are ready without blocking, up to len(bufs). Frame i lands in
// bufs[i][offset:]: a VnetHdrLen-byte virtio_net_hdr (all zero in plain
// mode) followed by the Ethernet frame; sizes[i] is the length of both.
// Each bufs[i][offset:] must hold MaxFrameSize bytes in offload mode (MTU
// plus 28 in plain mode). Read returns the number of frames; after Close it
// returns an error satisfying errors.Is(err, os.ErrClosed).
func (d *Device) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	if len(sizes) < len(bufs) {
		return 0, fmt.Errorf("tap: Read with %d sizes for %d buffers", len(sizes), len(bufs))
	}
	if len(bufs) == 0 {
		return 0, nil
	}
	d.rmu.Lock()
	defer d.rmu.Unlock()
	r := &d.rd
	r.bufs, r.sizes, r.offset, r.n, r.err = bufs, sizes, offset, 0, nil
	err := d.raw.Read(r.fn)
	n, rerr := r.n, r.err
	r.bufs, r.sizes, r.err = nil, nil, nil
	if n > 0 {
		// An error after some frames resurfaces on the next call.
		return n, nil
	}
	if err == nil {
		err = rerr
	}
	if d.closed.Load() {
		return 0, fmt.Errorf("tap %s: read: %w", d.name, os.ErrClosed)
	}
	return 0, fmt.Errorf("tap %s: read: %w", d.name, err)
}

// readFn reads frames until the device is drained or the buffers are full.
// It returns false (wait for readability) only when nothing was read.
func (d *Device) readFn(fd uintptr) bool {
	r := &d.rd
	for r.n < len(r.bufs) {
		b := r.bufs[r.n]
		if r.offset < 0 || len(b)-r.offset < d.minBuf {
			r.err = fmt.Errorf("buffer %d has %d bytes after offset %d, need %d", r.n, len(b)-r.offset, r.offset, d.minBuf)
			return true
		}
		b = b[r.offset:]
		var n int
		var err error
		d.syscalls.Add(1)
		if d.offload {
			n, err = unix.Read(int(fd), b)
		} else {
			n, err = unix.Read(int(fd), b[VnetHdrLen:])
			if err == nil {
				clear(b[:VnetHdrLen])
				n += VnetHdrLen
			}
		}
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return r.n > 0
		case err != nil:
			r.err = err
			return true
		case n <= VnetHdrLen:
			// Nothing after the header: not a frame; skip it.
			continue
		}
		r.sizes[r.n] = n
		r.n++
	}
	return true
}

// Write writes frames; each bufs[i][offset:] is a virtio_net_hdr followed by
// an Ethernet frame. In plain mode GSO super-frames are segmented and
// FlagNeedsCsum frames get their checksum completed in software (in place,
// in the caller's buffer). Every frame is attempted: Write returns how many
// the kernel accepted and the first error, which names the frame. After
// Close it returns an error satisfying errors.Is(err, os.ErrClosed).
func (d *Device) Write(bufs [][]byte, offset int) (int, error) {
	if len(bufs) == 0 {
		return 0, nil
	}
	d.wmu.Lock()
	defer d.wmu.Unlock()
	w := &d.wr
	w.bufs, w.offset, w.i, w.written, w.pending, w.segmenting, w.firstErr = bufs, offset, 0, 0, nil, false, nil
	err := d.raw.Write(w.fn)
	written, ferr := w.written, w.firstErr
	w.bufs, w.pending, w.firstErr = nil, nil, nil
	if err != nil {
		if d.closed.Load() {
			return written, fmt.Errorf("tap %s: write: %w", d.name, os.ErrClosed)
		}
		return written, fmt.Errorf("tap %s: write: %w", d.name, err)
	}
	return written, ferr
}

// writeFn writes frames from d.wr, resuming where it stopped if it had to
// wait for the device to become writable.
func (d *Device) writeFn(fd uintptr) bool {
	w := &d.wr
	for w.i < len(w.bufs) {
		if w.pending == nil {
			p, err := d.prepare(w.bufs[w.i])
			if err != nil {
				w.fail(err)
				w.i++
				continue
			}
			w.pending = p
		}
		d.syscalls.Add(1)
		_, err := unix.Write(int(fd), w.pending)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return false
		case err != nil:
			w.fail(err)
			w.pending, w.segmenting = nil, false
			w.i++
			continue
		}
		if w.segmenting {
			if seg := w.seg.next(w.segBuf); seg != nil {
				w.pending = seg
				continue
			}
			w.segmenting = false
		}
		w.pending = nil
		w.written++
		w.i++
	}
	return true
}

// prepare returns the bytes to hand to the kernel for one frame, finishing
// offload work in software in plain mode.
func (d *Device) prepare(b []byte) ([]byte, error) {
	w := &d.wr
	if w.offset < 0 || len(b)-w.offset <= VnetHdrLen {
		return nil, malformed("%d bytes after offset %d hold no frame", len(b)-w.offset, w.offset)
	}
	b = b[w.offset:]
	if d.offload {
		return b, nil
	}
	var h VnetHdr
	h.Decode(b)
	frame := b[VnetHdrLen:]
	if h.GSOType != GSONone {
		if w.segBuf == nil {
			w.segBuf = make([]byte, MaxFrameSize)
		}
		if err := w.seg.reset(b, len(w.segBuf)-VnetHdrLen); err != nil {
			return nil, err
		}
		w.segmenting = true
		return w.seg.next(w.segBuf), nil
	}
	if h.Flags&FlagNeedsCsum != 0 {
		if err := completeChecksum(frame, &h); err != nil {
			return nil, err
		}
	}
	return frame, nil
}

func (w *writeState) fail(err error) {
	if w.firstErr == nil {
		w.firstErr = fmt.Errorf("frame %d: %w", w.i, err)
	}
}

// Close closes the queue, and on the first Device, every queue, which
// removes the interface. It is idempotent and unblocks Read.
func (d *Device) Close() error {
	d.closeOnce.Do(func() {
		d.closed.Store(true)
		var errs []error
		for _, q := range d.queues {
			errs = append(errs, q.Close())
		}
		if err := d.file.Close(); err != nil {
			errs = append(errs, fmt.Errorf("tap %s: close: %w", d.name, err))
		}
		d.closeErr = errors.Join(errs...)
	})
	return d.closeErr
}

func offloadFlagNames(f int) []string {
	names := []struct {
		bit  int
		name string
	}{
		{unix.TUN_F_CSUM, "csum"}, {unix.TUN_F_TSO4, "tso4"}, {unix.TUN_F_TSO6, "tso6"},
		{unix.TUN_F_TSO_ECN, "tso_ecn"}, {unix.TUN_F_USO4, "uso4"}, {unix.TUN_F_USO6, "uso6"},
	}
	var out []string
	for _, n := range names {
		if f&n.bit != 0 {
			out = append(out, n.name)
		}
	}
	return out
}
