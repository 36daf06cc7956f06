package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image/png"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"weavemesh.dev/weave/api"
	"weavemesh.dev/weave/test/harness"
	"weavemesh.dev/weave/ui"
)

// chromiumPath finds Debian's chromium (scripts/deps.sh installs it).
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("chromium not found: install it (scripts/deps.sh, or apt-get install chromium) to test the mesh picture in a browser")
	return ""
}

// chromium runs headless Chromium inside h's namespace, where the router's
// metrics address is 127.0.0.1:6782, with a profile and HOME of its own
// under dir, and returns its stdout.
func chromium(ctx context.Context, t *testing.T, h *harness.Host, bin, dir string, args ...string) string {
	t.Helper()
	argv := append([]string{"env", "HOME=" + dir, bin,
		"--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
		"--user-data-dir=" + filepath.Join(dir, "profile"),
		// Virtual time runs the page's timers at once (its polls
		// included), waiting for each fetch: five polls, in well under a
		// second of real time.
		"--virtual-time-budget=5000",
	}, args...)
	out, err := h.Output(ctx, argv...)
	if err != nil {
		t.Fatalf("chromium %s: %v", strings.Join(args, " "), err)
	}
	return out
}

// element is one drawn element of the dumped DOM: its tag and attributes.
type element map[string]string

var (
	tagRe  = regexp.MustCompile(`<(g|text|tr|body)\s([^>]*)>`)
	attrRe = regexp.MustCompile(`([a-z-]+)="([^"]*)"`)
)

// elements returns the g, text, tr and body elements of a dumped DOM with
// the given class (or all with class ""), attributes unescaped.
func elements(dom, class string) []element {
	var out []element
	for _, m := range tagRe.FindAllStringSubmatch(dom, -1) {
		e := element{"tag": m[1]}
		for _, a := range attrRe.FindAllStringSubmatch(m[2], -1) {
			e[a[1]] = htmlUnescape(a[2])
		}
		if class == "" || e["class"] == class {
			out = append(out, e)
		}
	}
	return out
}

func htmlUnescape(s string) string {
	return strings.NewReplacer("&quot;", `"`, "&lt;", "<", "&gt;", ">", "&amp;", "&").Replace(s)
}

// TestUIInChromium: the page at /ui of host1's router, loaded in headless
// Chromium against a live 3-host mesh (host3 on the sleeve only, so both
// datapaths are drawn), shows the three peers with their nicknames, host1's
// two connections with the datapath and state host1 reports, the pair
// host2-host3 from gossip, and the traffic of a transfer on the host1-host3
// edge; it keeps polling; its screenshot is a real picture with the edges
// in their datapath's colour; and once host1 - host3 is cut, it draws that
// connection relayed through host2.
func TestUIInChromium(t *testing.T) {
	bin := chromiumPath(t)
	m := startMeshWith(t, harness.Options{Hosts: 3}, 1, func(h *harness.Host) []string {
		if h.Index == 3 {
			return []string{"--datapath", "sleeve"}
		}
		return nil
	})
	h1, h2, h3 := m.cl.Host(1), m.cl.Host(2), m.cl.Host(3)
	want12 := waitDatapath(t, h1, h2, "fastdp", fastdpTimeout)
	want13 := waitDatapath(t, h1, h3, "sleeve", fastdpTimeout)
	ctx := ctxFor(t, 2*time.Minute)

	// Pings from host1's container to host3's keep the host1 - host3
	// edge busy, so any interval the page's rates cover saw traffic.
	src, dst := m.ctrs[0][0], m.ctrs[2][0]
	pinger, err := src.Start(filepath.Join(m.cl.Dir, "ui-ping.log"), "ping", "-i", "0.2", dst.IP())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pinger.Stop(5 * time.Second) })
	meshJSON := func() (ui.Mesh, error) {
		out, err := h1.Output(ctx, "curl", "-sS", "--max-time", "5", "http://127.0.0.1:6782/ui/mesh.json")
		if err != nil {
			return ui.Mesh{}, fmt.Errorf("GET /ui/mesh.json: %w", err)
		}
		var mj ui.Mesh
		if err := json.Unmarshal([]byte(out), &mj); err != nil {
			return ui.Mesh{}, fmt.Errorf("mesh.json: %w\n%s", err, out)
		}
		return mj, nil
	}
	edgeTo := func(mj ui.Mesh, to string) (ui.Edge, error) {
		for _, e := range mj.Edges {
			if e.Local && e.To == to && e.Traffic != nil {
				return e, nil
			}
		}
		return ui.Edge{}, fmt.Errorf("mesh.json has no edge to %s with traffic: %+v", to, mj.Edges)
	}
	before, err := meshJSON()
	if err != nil {
		t.Fatal(err)
	}
	e13, err := edgeTo(before, want13.Peer)
	if err != nil {
		t.Fatal(err)
	}
	const size = 4 << 20
	if _, err := harness.Transfer(ctx, src.NS, dst.NS, dst.IP(), 5001, size); err != nil {
		t.Fatal(err)
	}
	// The edge counts the transfer (within framing, ACKs and pings), and
	// once an interval has passed since the first look, has a rate.
	err = harness.PollFor(10*time.Second, "a measured rate on host1 -> host3", func(context.Context) error {
		mj, err := meshJSON()
		if err != nil {
			return err
		}
		e, err := edgeTo(mj, want13.Peer)
		if err != nil {
			return err
		}
		if e.Traffic.TxBps == nil || *e.Traffic.TxBps <= 0 {
			return fmt.Errorf("host1 -> host3 traffic %+v: no rate yet", *e.Traffic)
		}
		if d := e.Traffic.TxBytes - e13.Traffic.TxBytes; d < size || d > size*115/100 {
			return fmt.Errorf("host1 -> host3 edge counted %d bytes for a %d-byte transfer", d, size)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	began := time.Now()
	dom := chromium(ctx, t, h1, bin, dir, "--dump-dom", "http://127.0.0.1:6782/ui")
	t.Logf("chromium dumped the DOM in %v", time.Since(began).Round(time.Millisecond))

	peers, err := h1.Peers()
	if err != nil {
		t.Fatal(err)
	}
	nameOf := map[string]string{} // nickname -> peer name
	for _, p := range peers {
		nameOf[p.Nickname] = p.Name
	}
	nodes := elements(dom, "node")
	if len(nodes) != 3 {
		t.Fatalf("%d nodes drawn, want 3:\n%s", len(nodes), dom)
	}
	for _, n := range nodes {
		nick := n["data-nickname"]
		if nameOf[nick] == "" || n["data-peer"] != nameOf[nick] || n["data-state"] != "alive" {
			t.Errorf("node %v: want one of host1..3 by the name gossip gives it, alive", n)
		}
		if (nick == "host1") != (n["data-self"] == "true") {
			t.Errorf("node %v: only host1 is this router", n)
		}
		if !strings.Contains(dom, ">"+nick+"</text>") {
			t.Errorf("node %s: its nickname is not drawn", nick)
		}
	}

	edges := map[string]element{}
	for _, e := range elements(dom, "edge") {
		edges[e["data-from"]+" "+e["data-to"]] = e
	}
	self := nameOf["host1"]
	for _, w := range []struct {
		from, to, state, datapath, local string
	}{
		{self, want12.Peer, "established", "fastdp", "true"},
		{self, want13.Peer, "established", "sleeve", "true"},
		{min(nameOf["host2"], nameOf["host3"]), max(nameOf["host2"], nameOf["host3"]), "established", ui.DatapathUnknown, "false"},
	} {
		e, ok := edges[w.from+" "+w.to]
		if !ok {
			t.Errorf("no edge %s - %s drawn; edges: %v", w.from, w.to, edges)
			continue
		}
		if e["data-state"] != w.state || e["data-datapath"] != w.datapath || e["data-local"] != w.local {
			t.Errorf("edge %s - %s: %v; want state %s, datapath %s, local %s", w.from, w.to, e, w.state, w.datapath, w.local)
		}
	}
	if len(edges) != 3 {
		t.Errorf("%d edges drawn, want 3: %v", len(edges), edges)
	}

	// The transfer's rate on the host1 - host3 label: a number, not the
	// placeholder of an unmeasured rate.
	var label string
	for _, l := range elements(dom, "edge-label") {
		if l["data-from"] == self && l["data-to"] == want13.Peer {
			label = labelText(dom, l)
		}
	}
	if !regexp.MustCompile(`↑ [1-9][0-9.]* (B|kB|MB|GB)/s`).MatchString(label) {
		t.Errorf("host1 - host3 label %q: want the traffic's rate, more than 0", label)
	}
	body := elements(dom, "")
	for _, b := range body {
		if b["tag"] == "body" {
			if n, _ := strconv.Atoi(b["data-updates"]); n < 2 {
				t.Errorf("the page polled %s times in 5 s of virtual time; want it to keep polling", b["data-updates"])
			}
		}
	}

	shot := filepath.Join(dir, "mesh.png")
	began = time.Now()
	chromium(ctx, t, h1, bin, dir, "--window-size=1200,900", "--screenshot="+shot, "http://127.0.0.1:6782/ui")
	t.Logf("chromium took the screenshot in %v", time.Since(began).Round(time.Millisecond))
	checkScreenshot(t, shot, 1200, 900)
	// WEAVE_UI_SCREENSHOT=FILE keeps the picture, to look at it.
	if keep := os.Getenv("WEAVE_UI_SCREENSHOT"); keep != "" {
		if raw, err := os.ReadFile(shot); err != nil || os.WriteFile(keep, raw, 0o644) != nil {
			t.Errorf("WEAVE_UI_SCREENSHOT=%s: cannot copy the screenshot there", keep)
		}
	}

	// With the underlay between host1 and host3 cut, the page draws
	// host1's connection to host3 relayed through host2.
	if err := m.cl.Cut(h1, h3); err != nil {
		t.Fatal(err)
	}
	err = harness.PollFor(meshTimeout, "host1 -> host3 relayed", func(context.Context) error {
		c, err := h1.ConnectionTo(h3)
		if err != nil {
			return err
		}
		if c.State != "relayed" || c.Via != nameOf["host2"] {
			return fmt.Errorf("host1 -> host3: %s via %q (%s); want relayed via host2 (%s)", c.State, c.Via, c.Reason, nameOf["host2"])
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	dom = chromium(ctx, t, h1, bin, dir, "--dump-dom", "http://127.0.0.1:6782/ui")
	found := false
	for _, e := range elements(dom, "edge") {
		if e["data-from"] == self && e["data-to"] == want13.Peer {
			found = true
			if e["data-state"] != "relayed" || e["data-via"] != nameOf["host2"] {
				t.Errorf("edge host1 - host3 after the cut: %v; want relayed via host2 (%s)", e, nameOf["host2"])
			}
		}
	}
	if !found {
		t.Errorf("no edge host1 - host3 drawn after the cut:\n%s", dom)
	}
}

// labelText is the text of the edge label element l in dom.
func labelText(dom string, l element) string {
	re := regexp.MustCompile(`<text class="edge-label" data-from="` + regexp.QuoteMeta(l["data-from"]) +
		`" data-to="` + regexp.QuoteMeta(l["data-to"]) + `"[^>]*>([^<]*)</text>`)
	if m := re.FindStringSubmatch(dom); m != nil {
		return htmlUnescape(m[1])
	}
	return ""
}

// checkScreenshot decodes the PNG and checks that it is the window's size,
// far from one colour, and shows the fastdp and sleeve edges in their
// colours (mesh.css).
func checkScreenshot(t *testing.T, path string, w, h int) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("no screenshot: %v", err)
	}
	img, err := png.Decode(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("screenshot %s is no PNG: %v", path, err)
	}
	b := img.Bounds()
	if b.Dx() != w || b.Dy() != h {
		t.Errorf("screenshot %dx%d, want %dx%d", b.Dx(), b.Dy(), w, h)
	}
	colours := map[[3]uint32]int{}
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			colours[[3]uint32{r >> 8, g >> 8, bl >> 8}]++
		}
	}
	if len(colours) < 16 {
		t.Errorf("screenshot has %d colours; want a drawn picture", len(colours))
	}
	for _, c := range []struct {
		what string
		rgb  [3]uint32
	}{{"sleeve edge", [3]uint32{0x1f, 0x77, 0xb4}}, {"fastdp edge", [3]uint32{0x2c, 0xa0, 0x2c}}} {
		// A legend swatch is 2.2em x 3px, about 90 pixels; an edge
		// hundreds more.
		if n := colours[c.rgb]; n < 300 {
			t.Errorf("screenshot has %d pixels of the %s's colour #%02x%02x%02x; want an edge drawn", n, c.what, c.rgb[0], c.rgb[1], c.rgb[2])
		}
	}
}

// TestUIPeerStringsStayText: nicknames are chosen by any peer and arrive
// by gossip. Served to headless Chromium (on loopback, from a page with
// nicknames made of markup), they are drawn as text: no element of theirs
// appears and no script of theirs runs.
func TestUIPeerStringsStayText(t *testing.T) {
	bin := chromiumPath(t)
	hostile := []string{
		`<img src=x onerror="document.body.dataset.pwned='img'">`,
		`"><svg onload="document.body.dataset.pwned='svg'">`,
		`</text><script>document.body.dataset.pwned='script'</script>`,
	}
	peers := []api.Peer{{Name: "02:00:00:00:00:01", Nickname: "host1", State: "alive", Self: true}}
	var conns []api.Connection
	for i, n := range hostile {
		p := api.Peer{Name: fmt.Sprintf("02:00:00:00:00:%02d", i+2), Nickname: n, State: "alive"}
		peers = append(peers, p)
		conns = append(conns, api.Connection{Peer: p.Name, Nickname: n, State: "established", Datapath: "sleeve", Reason: n})
	}
	h, err := ui.New(ui.Options{Self: peers[0].Name,
		Peers:       func(context.Context) ([]api.Peer, error) { return peers, nil },
		Connections: func(context.Context) ([]api.Connection, error) { return conns, nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	h.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	dir := t.TempDir()
	ctx := ctxFor(t, time.Minute)
	cmd := exec.CommandContext(ctx, bin, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
		"--user-data-dir="+filepath.Join(dir, "profile"), "--virtual-time-budget=3000", "--dump-dom", srv.URL+"/ui/")
	cmd.Env = append(os.Environ(), "HOME="+dir)
	cmd.WaitDelay = 5 * time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium: %v\n%s", err, harness.Tail(stderr.String(), 20))
	}
	dom := string(out)
	if n := len(elements(dom, "node")); n != len(peers) {
		t.Fatalf("%d nodes drawn, want %d:\n%s", n, len(peers), dom)
	}
	for _, tag := range []string{"<img", "<script>document", "<svg onload"} {
		if strings.Contains(dom, tag) {
			t.Errorf("a nickname became markup: the DOM has %s", tag)
		}
	}
	for _, b := range elements(dom, "") {
		if b["tag"] == "body" && b["data-pwned"] != "" {
			t.Errorf("a nickname's script ran (%s)", b["data-pwned"])
		}
	}
	if !strings.Contains(dom, "&lt;img src=x onerror=") {
		t.Errorf("the nickname is not drawn as text:\n%s", dom)
	}
}
