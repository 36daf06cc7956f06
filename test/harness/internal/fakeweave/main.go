// Command fakeweave stands in for the weave binary in the harness's own
// tests: it follows the CLI contract for router, launch, status and stop
// (a router that serves /status and exits on SIGTERM or /stop), so the
// harness's process handling can be tested without the real router.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"weavemesh.dev/weave/api"
	"weavemesh.dev/weave/peer"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: fakeweave router|launch|status|stop")
		os.Exit(2)
	}
	flags, rest := parse(os.Args[2:])
	addr := flags["--http-addr"]
	if addr == "" {
		addr = api.DefaultAddr
	}
	var err error
	switch os.Args[1] {
	case "router":
		err = router(flags, addr)
	case "launch":
		err = launch(flags, addr)
	case "status":
		err = status(addr, rest)
	case "stop":
		err = post(addr, "/stop")
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// parse splits "--flag value" pairs (and bare "--json") from the rest.
func parse(args []string) (map[string]string, []string) {
	flags := map[string]string{}
	var rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--json":
			flags[a] = "true"
		case strings.HasPrefix(a, "--") && strings.Contains(a, "="):
			k, v, _ := strings.Cut(a, "=")
			flags[k] = v
		case strings.HasPrefix(a, "--") && i+1 < len(args):
			flags[a] = args[i+1]
			i++
		default:
			rest = append(rest, a)
		}
	}
	return flags, rest
}

func router(flags map[string]string, addr string) error {
	dir := flags["--data-dir"]
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	name, err := peer.LoadOrCreate(dir)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", addr, err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(api.Status{Name: name.String(), Nickname: flags["--nickname"], Ready: true, Peers: 1})
	})
	mux.HandleFunc("POST /stop", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusNoContent)
		stop()
	})
	srv := &http.Server{Handler: mux}
	go func() { _ = srv.Serve(ln) }()
	fmt.Fprintln(os.Stderr, "fake router", name, "listening on", addr)
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}

func launch(flags map[string]string, addr string) error {
	if _, err := get(addr); err == nil {
		return fmt.Errorf("a router is already running on %s; stop it with weave stop", addr)
	}
	dir := flags["--data-dir"]
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	log, err := os.OpenFile(filepath.Join(dir, "router.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer log.Close()
	args := []string{"router"}
	for k, v := range flags {
		args = append(args, k, v)
	}
	cmd := exec.Command(os.Args[0], args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := get(addr)
		if err == nil {
			fmt.Println(st.Name)
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("router did not become ready: %w", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func get(addr string) (api.Status, error) {
	var st api.Status
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + addr + "/status")
	if err != nil {
		return st, fmt.Errorf("no router is running on %s; start one with weave launch", addr)
	}
	defer resp.Body.Close()
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

func status(addr string, rest []string) error {
	if len(rest) > 0 {
		return errors.New("fakeweave: only plain status is supported")
	}
	st, err := get(addr)
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(st)
}

func post(addr, path string) error {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Post("http://"+addr+path, "application/json", nil)
	if err != nil {
		return fmt.Errorf("no router is running on %s; start one with weave launch", addr)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return nil
}
