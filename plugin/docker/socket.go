package docker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// ErrInUse reports that another process answers on the socket path.
var ErrInUse = errors.New("another process serves the plugin socket")

// Server serves a Plugin on a unix socket. Close stops it and removes the
// socket file.
type Server struct {
	path string
	ln   net.Listener
	srv  *http.Server
	ino  uint64 // the socket file's inode, to remove only our own
	done chan struct{}
	once sync.Once
}

// Serve listens on the unix socket path and serves h there until Close.
// A socket file left by a process that is gone is replaced; one that
// another process answers on is left alone, with ErrInUse.
func Serve(path string, h http.Handler) (*Server, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("plugin socket %s: %w", path, err)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("plugin socket %s: %w (is another router running? stop it, or start this one with --no-plugin)", path, ErrInUse)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("plugin socket %s: remove the stale socket: %w", path, err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("plugin socket %s: %w", path, err)
	}
	// The listener must not remove the file on Close: a later router may
	// own it by then. Close removes it only while it is still ours.
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	s := &Server{path: path, ln: ln, done: make(chan struct{}),
		srv: &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}}
	if st, err := os.Stat(path); err == nil {
		s.ino = st.Sys().(*syscall.Stat_t).Ino
	}
	go func() {
		defer close(s.done)
		s.srv.Serve(ln)
	}()
	return s, nil
}

// Path is the socket's path.
func (s *Server) Path() string { return s.path }

// Close stops serving, waiting up to ctx for requests in flight, and
// removes the socket file unless another process has replaced it.
// Idempotent.
func (s *Server) Close(ctx context.Context) error {
	var err error
	s.once.Do(func() {
		if err = s.srv.Shutdown(ctx); err != nil {
			s.srv.Close()
		}
		<-s.done
		if st, serr := os.Stat(s.path); serr == nil && st.Sys().(*syscall.Stat_t).Ino == s.ino {
			if rerr := os.Remove(s.path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
				err = errors.Join(err, fmt.Errorf("remove plugin socket %s: %w", s.path, rerr))
			}
		}
	})
	return err
}
