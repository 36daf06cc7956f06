package sleevetest

import (
	"bytes"
	"net"
	"sync"
)

// Device is a TAP in memory, implementing sleeve.Device. Frames (each a
// virtio_net_hdr then an Ethernet frame) sent on In are read by the engine,
// one per Read; frames the engine writes arrive on Out, copied. Close ends
// a blocked Read with net.ErrClosed.
type Device struct {
	In  chan []byte
	Out chan []byte

	fail      chan error // errors the next Reads return, in order
	done      chan struct{}
	closeOnce sync.Once
}

// NewDevice returns a device with room for 1024 frames in and 4096 out.
func NewDevice() *Device {
	return &Device{
		In: make(chan []byte, 1024), Out: make(chan []byte, 4096),
		fail: make(chan error, 16), done: make(chan struct{}),
	}
}

// FailRead makes a coming Read return err instead of a frame: the next one,
// or a blocked one at once. Errors queue up, one per Read.
func (d *Device) FailRead(err error) { d.fail <- err }

// Read implements sleeve.Device.
func (d *Device) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	select {
	case err := <-d.fail:
		return 0, err
	default:
	}
	select {
	case err := <-d.fail:
		return 0, err
	case f := <-d.In:
		sizes[0] = copy(bufs[0][offset:], f)
		return 1, nil
	case <-d.done:
		return 0, net.ErrClosed
	}
}

// Write implements sleeve.Device. It blocks while Out is full.
func (d *Device) Write(bufs [][]byte, offset int) (int, error) {
	for i, b := range bufs {
		select {
		case d.Out <- bytes.Clone(b[offset:]):
		case <-d.done:
			return i, net.ErrClosed
		}
	}
	return len(bufs), nil
}

// Close implements sleeve.Device. Idempotent.
func (d *Device) Close() error {
	d.closeOnce.Do(func() { close(d.done) })
	return nil
}
