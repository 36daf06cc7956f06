package docker

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeEngine answers the Docker Engine API calls WatchNames makes: one
// weavemesh network with container c1 running, and an events stream on
// which the test sends connect events.
type fakeEngine struct {
	mu         sync.Mutex
	containers map[string]string // container id -> JSON of /containers/ID/json
	events     chan string
}

func (e *fakeEngine) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/events":
		if !strings.Contains(r.URL.Query().Get("filters"), `"connect"`) {
			http.Error(w, "want a filter on connect", http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		for {
			select {
			case ev := <-e.events:
				fmt.Fprintln(w, ev)
				w.(http.Flusher).Flush()
			case <-r.Context().Done():
				return
			}
		}
	case r.URL.Path == "/networks":
		if !strings.Contains(r.URL.Query().Get("filters"), `"weavemesh"`) {
			fmt.Fprint(w, `[]`)
			return
		}
		fmt.Fprint(w, `[{"Id":"n1","Name":"weave"}]`)
	case r.URL.Path == "/networks/n1":
		fmt.Fprint(w, `{"Id":"n1","Containers":{"c1":{"Name":"web","EndpointID":"e1"},"ep-x":{}}}`)
	case strings.HasPrefix(r.URL.Path, "/containers/"):
		id := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/containers/"), "/json")
		e.mu.Lock()
		body, ok := e.containers[id]
		e.mu.Unlock()
		if !ok {
			http.Error(w, `{"message":"no such container"}`, http.StatusNotFound)
			return
		}
		fmt.Fprint(w, body)
	default:
		http.NotFound(w, r)
	}
}

func containerJSON(name, netID, epID, ip, sandbox string, running bool) string {
	b, _ := json.Marshal(map[string]any{
		"Name":  "/" + name,
		"State": map[string]any{"Running": running},
		"NetworkSettings": map[string]any{"SandboxKey": sandbox,
			"Networks": map[string]any{"weave": map[string]any{"NetworkID": netID, "EndpointID": epID, "IPAddress": ip}}},
	})
	return string(b)
}

// withAliases adds network aliases, an IPv6 address and an ID to a
// containerJSON answer.
func withAliases(body, id, ipv6 string, aliases ...string) string {
	var c map[string]any
	if err := json.Unmarshal([]byte(body), &c); err != nil {
		panic(err)
	}
	c["Id"] = id
	n := c["NetworkSettings"].(map[string]any)["Networks"].(map[string]any)["weave"].(map[string]any)
	n["Aliases"], n["GlobalIPv6Address"] = aliases, ipv6
	b, _ := json.Marshal(c)
	return string(b)
}

func TestContainerNames(t *testing.T) {
	const id = "3f4a5b6c7d8e9f00112233445566778899aabbccddeeff00112233445566778"
	for _, tc := range []struct {
		aliases []string
		want    []string
	}{
		{nil, []string{"web"}},
		{[]string{"www", "api"}, []string{"web", "www", "api"}},
		// Older engines list the short ID; repeats and empties go.
		{[]string{"3f4a5b6c7d8e", "www", "web", "www", ""}, []string{"web", "www"}},
		// Short hex aliases that happen to start the ID are the user's.
		{[]string{"3f4a"}, []string{"web", "3f4a"}},
	} {
		if got := containerNames("web", id, tc.aliases); !slices.Equal(got, tc.want) {
			t.Errorf("aliases %q: names %q, want %q", tc.aliases, got, tc.want)
		}
	}
}

func TestWatchNames(t *testing.T) {
	eng := &fakeEngine{events: make(chan string, 4), containers: map[string]string{
		"c1": containerJSON("web", "n1", "e1", "10.32.0.5", "/var/run/docker/netns/s1", true),
		"c2": withAliases(containerJSON("db", "n1", "e2", "10.32.0.6", "/var/run/docker/netns/s2", true),
			"c2ffffffffffffff", "fd00::6", "c2ffffffffff", "postgres", "sql.prod"),
		"c3": containerJSON("gone", "n1", "e3", "10.32.0.7", "", false),
		"c4": containerJSON("cache", "n1", "e4", "10.32.0.8", "/var/run/docker/netns/s4", true),
	}}
	sock := filepath.Join(t.TempDir(), "docker.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: eng}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	f := newFake()
	p, _ := New(Options{Router: f})
	// cache's endpoint was created with the weave.name option.
	p.endpoints["e4"] = &endpoint{network: "n1", name: "kv", optName: "kv"}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); p.WatchNames(ctx, sock, Name) }()
	t.Cleanup(func() { cancel(); <-done })

	wait := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); !ok(); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s; names %v, DNS %v", what, f.names, f.dns)
			}
		}
	}
	has := func(ep, name, netns string) func() bool {
		return func() bool {
			f.mu.Lock()
			defer f.mu.Unlock()
			return f.names[ep] == name && f.dns[ep] == netns
		}
	}
	// The container running at start, then one that connects.
	wait("web, running at start", has("e1", "web", "/var/run/docker/netns/s1"))
	eng.events <- `{"Type":"network","Action":"connect","Actor":{"ID":"n1","Attributes":{"container":"c2","name":"weave","type":"weavemesh"}}}`
	wait("db, connected later", has("e2", "db", "/var/run/docker/netns/s2"))
	f.mu.Lock()
	if got, want := f.aliases["e2"], []string{"postgres", "sql.prod"}; !slices.Equal(got, want) {
		t.Errorf("db's aliases %q, want %q", got, want)
	}
	if got, want := fmt.Sprint(f.addrs["e2"]), "[10.32.0.6 fd00::6]"; got != want {
		t.Errorf("db's addresses %s, want %s", got, want)
	}
	if got := f.aliases["e1"]; len(got) != 0 {
		t.Errorf("web has aliases %q, want none", got)
	}
	f.mu.Unlock()
	// Other drivers' networks and stopped containers are left alone.
	eng.events <- `{"Type":"network","Action":"connect","Actor":{"ID":"n9","Attributes":{"container":"c2","name":"bridge","type":"bridge"}}}`
	eng.events <- `{"Type":"network","Action":"connect","Actor":{"ID":"n1","Attributes":{"container":"c3","name":"weave","type":"weavemesh"}}}`
	// Events are handled in order: once c4's is, so were those.
	eng.events <- `{"Type":"network","Action":"connect","Actor":{"ID":"n1","Attributes":{"container":"c4","name":"weave","type":"weavemesh"}}}`
	wait("cache, connected last", has("e4", "cache", "/var/run/docker/netns/s4"))
	f.mu.Lock()
	defer f.mu.Unlock()
	if got, want := f.aliases["e4"], []string{"kv"}; !slices.Equal(got, want) {
		t.Errorf("cache's other names %q, want %q: the weave.name option stays a name", got, want)
	}
	if len(f.names) != 3 || f.names["e3"] != "" {
		t.Fatalf("names %v; want web, db and cache only", f.names)
	}
}
