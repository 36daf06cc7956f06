package e2e

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestReportLiveMesh: weave report on a live 3-host mesh holds every peer,
// every connection established, the three shares of the range and the
// DNS section, under Weave Net's top-level names; -f goes through a
// template.
func TestReportLiveMesh(t *testing.T) {
	cl := startIPAM(t, 3)
	h1 := cl.Host(1)
	out, err := h1.Weave("report")
	if err != nil {
		t.Fatalf("weave report: %v", err)
	}
	var r struct {
		Router struct {
			Name        string
			NickName    string
			Peers       []struct{ Name, State string }
			Connections []struct{ Peer, State, Datapath string }
		}
		IPAM *struct {
			Ready bool
			Peers []struct{ Addresses uint32 }
		}
		DNS *struct{ Domain string }
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("report is not JSON: %v\n%s", err, out)
	}
	if len(r.Router.Peers) != 3 {
		t.Errorf("Router.Peers: %+v", r.Router.Peers)
	}
	est := 0
	for _, c := range r.Router.Connections {
		if c.State == "established" {
			est++
		}
	}
	if est != 2 {
		t.Errorf("Router.Connections: %+v, want 2 established", r.Router.Connections)
	}
	if r.IPAM == nil || !r.IPAM.Ready || len(r.IPAM.Peers) != 3 {
		t.Errorf("IPAM: %+v", r.IPAM)
	}
	if r.DNS == nil || r.DNS.Domain != "weave.local." {
		t.Errorf("DNS: %+v", r.DNS)
	}
	// weave status ends with the IPAM and DNS sections.
	st, err := h1.Weave("status")
	if err != nil || !strings.Contains(st, "IPAM: ready") || !strings.Contains(st, "split among 3 peers") || !strings.Contains(st, "DNS: weave.local.") {
		t.Errorf("weave status lacks the ipam or dns section (%v):\n%s", err, st)
	}
	// host2 was started naming host1: it is one of host2's targets.
	targets, err := cl.Host(2).Weave("status", "targets")
	if err != nil || !strings.Contains(targets, h1.IP.String()) {
		t.Errorf("host2's targets %q (%v) lack host1's address %s", targets, err, h1.IP)
	}
	name, err := h1.Weave("report", "-f", "{{.Router.Name}}")
	if err != nil || strings.TrimSpace(name) != r.Router.Name {
		t.Errorf("report -f: %q %v, want %q", name, err, r.Router.Name)
	}
}
