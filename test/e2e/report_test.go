package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"weavemesh.dev/weave/test/harness"
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
	checkStatusViews(t, cl, r.Router.Name)
}

// checkStatusViews reads every text status view and weave ps on a live
// 3-host mesh and checks what they say, line by line.
func checkStatusViews(t *testing.T, cl *harness.Cluster, self string) {
	t.Helper()
	h1, h2 := cl.Host(1), cl.Host(2)
	weave := func(h *harness.Host, args ...string) string {
		t.Helper()
		out, err := h.Weave(args...)
		if err != nil {
			t.Fatalf("%s: weave %s: %v", h.Name, strings.Join(args, " "), err)
		}
		return out
	}
	st := weave(h1, "status")
	for _, want := range []string{
		"Version: ", " (protocol 2..2)\n", "Name: " + self + " (host1)\n", "Encryption: disabled\n", "Peers: 3\n",
		"Connections: 2 (2 established, 0 relayed, 0 connecting, 0 failed)\n", "Overlay MTU: ",
	} {
		if !strings.Contains(st, want) {
			t.Errorf("weave status lacks %q:\n%s", want, st)
		}
	}
	if strings.Contains(st, "Datapath: none") || strings.Contains(st, "Warning:") {
		t.Errorf("weave status of a healthy mesh of one build:\n%s", st)
	}

	// peers: a header and one row per host, this one first and marked.
	rows := strings.Split(strings.TrimSpace(weave(h1, "status", "peers")), "\n")
	if len(rows) != 4 || !strings.HasPrefix(rows[1], self) || !strings.Contains(rows[1], "host1 (self)") {
		t.Fatalf("weave status peers:\n%s", strings.Join(rows, "\n"))
	}
	for _, h := range cl.Hosts {
		i := slices.IndexFunc(rows, func(r string) bool { return strings.Contains(r, " "+h.Name+" ") })
		if i < 1 {
			t.Errorf("weave status peers has no row for %s:\n%s", h.Name, strings.Join(rows, "\n"))
			continue
		}
		if row := rows[i]; !strings.Contains(row, " alive ") || !strings.HasSuffix(row, "2..2") ||
			!strings.Contains(row, h.IP.String()+":6783") || !strings.Contains(row, h.IP.String()+":6784") {
			t.Errorf("weave status peers row for %s: %q", h.Name, row)
		}
	}

	// connections: one established row per other host, with its MTU.
	rows = strings.Split(strings.TrimSpace(weave(h1, "status", "connections")), "\n")
	if len(rows) != 3 {
		t.Fatalf("weave status connections:\n%s", strings.Join(rows, "\n"))
	}
	for _, h := range cl.Hosts[1:] {
		found := false
		for _, row := range rows[1:] {
			f := strings.Fields(row)
			if len(f) >= 6 && f[1] == h.Name {
				found = true
				if !strings.HasPrefix(f[2], h.IP.String()+":") || f[3] != "established" || (f[4] != "sleeve" && f[4] != "fastdp") || f[5] == "-" || f[5] == "0" {
					t.Errorf("weave status connections row for %s: %q", h.Name, row)
				}
			}
		}
		if !found {
			t.Errorf("weave status connections has no row for %s:\n%s", h.Name, strings.Join(rows, "\n"))
		}
	}

	// ps and dns: a named container on host1, seen by name on host2.
	c, err := h1.AddContainer("sv1")
	if err != nil {
		t.Fatal(err)
	}
	addrs, err := attachAuto(c, "--name", "views")
	if err != nil {
		t.Fatal(err)
	}
	ip := addrs[0].Addr().String()
	ps := weave(h1, "ps")
	if !strings.HasPrefix(ps, "ID") || !strings.Contains(ps, c.NS.Name) || !strings.Contains(ps, addrs[0].String()) {
		t.Errorf("weave ps lacks %s with %s:\n%s", c.NS.Name, addrs[0], ps)
	}
	err = harness.PollFor(20*time.Second, "host2's weave status dns to list views", func(context.Context) error {
		out := weave(h2, "status", "dns")
		for _, line := range strings.Split(out, "\n") {
			if strings.Contains(line, "views.weave.local.") && strings.Contains(line, ip) && strings.Contains(line, "host1") {
				return nil
			}
		}
		return fmt.Errorf("no line with views.weave.local. %s host1:\n%s", ip, out)
	})
	if err != nil {
		t.Error(err)
	}
	// ipam: three owners of a third each, reachable, and host1's one
	// allocation.
	out := weave(h1, "status", "ipam")
	reach := map[string]string{"host1": "self", "host2": "yes", "host3": "yes"}
	var total, owners int
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 7 || reach[f[1]] == "" {
			continue
		}
		owners++
		n, _ := strconv.Atoi(f[3])
		total += n
		wantAlloc := "0"
		if f[1] == "host1" {
			wantAlloc = "1"
		}
		if f[2] != reach[f[1]] || !strings.HasPrefix(f[4], "33.") || f[6] != wantAlloc {
			t.Errorf("weave status ipam row %q: want reachable %s, a third, %s allocated", line, reach[f[1]], wantAlloc)
		}
	}
	if !strings.Contains(out, "Status: ready") || owners != 3 || total != 1<<20 {
		t.Errorf("weave status ipam on host1: %d owners of %d addresses, want 3 of %d:\n%s", owners, total, 1<<20, out)
	}
	if n := strings.TrimSpace(weave(h1, "report", "-f", "{{len .Router.Peers}} {{len .Router.Connections}}")); n != "3 2" {
		t.Errorf("report -f peers and connections: %q, want \"3 2\"", n)
	}
}
