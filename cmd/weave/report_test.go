package main

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"weavemesh.dev/weave/api"
)

func TestReport(t *testing.T) {
	f := &fakeBackend{status: goldenStatus, peers: goldenPeers, conns: goldenConns, endpoints: goldenEndpoints}
	addr := startAPI(t, f)
	run := func(args ...string) (int, string, string) {
		a, stdout, stderr := testApp(t)
		code := a.run(context.Background(), append([]string{"--http-addr", addr, "report"}, args...))
		return code, stdout.String(), stderr.String()
	}
	code, out, errOut := run()
	if code != 0 {
		t.Fatalf("weave report: %d %s", code, errOut)
	}
	var doc map[string]any
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	router, _ := doc["Router"].(map[string]any)
	if router["Name"] != goldenStatus.Name || router["NickName"] != goldenStatus.Nickname {
		t.Errorf("Router.Name/NickName: %v", router)
	}
	if peers, _ := router["Peers"].([]any); len(peers) != len(goldenPeers) {
		t.Errorf("Router.Peers: %v", router["Peers"])
	}
	if conns, _ := router["Connections"].([]any); len(conns) != len(goldenConns) {
		t.Errorf("Router.Connections: %v", router["Connections"])
	}
	if _, ok := doc["IPAM"]; ok {
		t.Error("an IPAM section without IP allocation")
	}

	code, out, _ = run("-f", `{{.Router.Name}} {{len .Router.Connections}} {{json .Router.NickName}}`)
	if want := goldenStatus.Name + " " + itoa(len(goldenConns)) + ` "` + goldenStatus.Nickname + `"`; code != 0 || out != want {
		t.Errorf("-f: %d %q, want %q", code, out, want)
	}
	if code, _, errOut := run("-f", "{{.Router.Nope"); code != 2 || !strings.Contains(errOut, "-f") {
		t.Errorf("bad template: %d %s", code, errOut)
	}
	if code, _, errOut := run("-f", "{{.Router.Nope}}"); code != 1 || !strings.Contains(errOut, "Nope") {
		t.Errorf("unknown field: %d %s", code, errOut)
	}
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

func TestWarnMixedVersions(t *testing.T) {
	var b strings.Builder
	warnMixedVersions(&b, goldenPeers)
	if b.Len() != 0 {
		t.Errorf("one version, yet: %s", b.String())
	}
	mixed := append(goldenPeers[:2:2], api.Peer{Name: "x", State: "alive", Version: "1.4"})
	warnMixedVersions(&b, mixed)
	if got := b.String(); !strings.Contains(got, "1.4 on 1, dev on 2") || strings.Contains(got, "protocol") {
		t.Errorf("got %q", got)
	}
	b.Reset()
	ranged := append([]api.Peer(nil), goldenPeers...)
	for i := range ranged {
		ranged[i].ProtoMin, ranged[i].ProtoMax = 2, 2
	}
	ranged[0].ProtoMax = 3
	ranged = append(ranged, api.Peer{Name: "gone", State: "dead", ProtoMin: 4, ProtoMax: 4})
	warnMixedVersions(&b, ranged)
	if got := b.String(); !strings.Contains(got, "different protocol ranges (2..2 on 2, 2..3 on 1)") || strings.Contains(got, "mixed versions") {
		t.Errorf("got %q", got)
	}
}

func TestFormatPeersUnreachable(t *testing.T) {
	peers := append([]api.Peer(nil), goldenPeers...)
	peers[0].Unreachable = []string{"02:00:00:00:00:03", "ff:00:00:00:00:09"}
	var b strings.Builder
	formatPeers(&b, peers, testNow)
	if !strings.Contains(b.String(), "host2 cannot reach 02:00:00:00:00:03, ff:00:00:00:00:09 directly (relayed)") {
		t.Errorf("got:\n%s", b.String())
	}
}

func TestRemoveStaleSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	if removeStaleSocket(path) {
		t.Fatal("removed a socket someone serves")
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	if !removeStaleSocket(path) {
		t.Fatal("kept a stale socket")
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatal("the socket is still there")
	}
	if removeStaleSocket(filepath.Join(t.TempDir(), "none")) {
		t.Fatal("removed what is not there")
	}
}
