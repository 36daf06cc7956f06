package dockerfeature

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Endpoint IDs of the fake engine's containers, hexadecimal as Docker's.
const (
	epWeb = "e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1"
	epDB  = "e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2"
)

// aliasEngine is the Docker Engine API with one network of driver
// "wmtest" holding two running containers, one with aliases, and an
// events stream that stays open and quiet.
type aliasEngine struct{}

func (aliasEngine) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/events":
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	case "/networks":
		fmt.Fprint(w, `[{"Id":"n1","Name":"wm"}]`)
	case "/networks/n1":
		fmt.Fprint(w, `{"Id":"n1","Containers":{"c1":{},"c2":{}}}`)
	case "/containers/c1/json":
		fmt.Fprintf(w, `{"Id":"c1c1c1c1c1c1c1c1","Name":"/web","State":{"Running":true},"NetworkSettings":{"Networks":{"wm":
			{"NetworkID":"n1","EndpointID":%q,"IPAddress":"10.40.1.5","GlobalIPv6Address":"fd00::5",
			"Aliases":["www","c1c1c1c1c1c1","api.prod","web"]}}}}`, epWeb)
	case "/containers/c2/json":
		fmt.Fprintf(w, `{"Id":"c2c2c2c2c2c2c2c2","Name":"/db","State":{"Running":true},"NetworkSettings":{"Networks":{"wm":
			{"NetworkID":"n1","EndpointID":%q,"IPAddress":"10.40.1.6","Aliases":null}}}}`, epDB)
	default:
		http.NotFound(w, r)
	}
}

// The plugin registers a container's network aliases in weaveDNS with its
// name, at all its addresses on the network, and removes them all when
// the container leaves the network.
func TestContainerAliases(t *testing.T) {
	noForwarding(t)
	dir := t.TempDir()
	engineSock := filepath.Join(dir, "docker.sock")
	ln, err := net.Listen("unix", engineSock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: aliasEngine{}}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	names := &fakeDNS{on: true}
	sock := filepath.Join(dir, "wmtest.sock")
	f, err := New(Options{Socket: sock, EngineSocket: engineSock})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Open(testHost(t, newFakeIPAM(), names)); err != nil {
		t.Fatal(err)
	}
	if err := f.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer f.Close(context.Background())
	f.Reconcile(context.Background(), nil) // starts following the engine

	want := map[string]string{
		// The short container ID older engines list is no alias.
		epWeb: "web,www,api.prod 10.40.1.5,fd00::5",
		epDB:  "db 10.40.1.6",
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if names.registered(epWeb) == want[epWeb] && names.registered(epDB) == want[epDB] {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("registered web %q, db %q; want %q", names.registered(epWeb), names.registered(epDB), want)
		}
	}

	var resp struct{ Err string }
	call(t, sock, "NetworkDriver.Leave", map[string]any{"NetworkID": "n1", "EndpointID": epWeb}, &resp)
	if resp.Err != "" {
		t.Fatalf("Leave: %s", resp.Err)
	}
	if got := names.registered(epWeb); got != "" {
		t.Errorf("after Leave web is still registered as %q", got)
	}
	if got := names.registered(epDB); !strings.HasPrefix(got, "db ") {
		t.Errorf("after web's Leave db is registered as %q", got)
	}
}
