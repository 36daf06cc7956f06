package cni

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"

	"weavemesh.dev/weave/api"
)

func TestParseConf(t *testing.T) {
	c, err := parseConf([]byte(`{"cniVersion":"1.1.0","name":"w","type":"weave-net","subnet":"10.32.4.9/24"}`), false)
	if err != nil {
		t.Fatal(err)
	}
	if c.API != api.DefaultAddr || c.DataDir != DefaultDataDir || c.Subnet != "10.32.4.0/24" {
		t.Fatalf("conf %+v", c)
	}
	for _, bad := range []string{`{`, `{"subnet":"fd00::/64"}`, `{"subnet":"x"}`, `[]`} {
		_, err := parseConf([]byte(bad), false)
		var e *types.Error
		if !errors.As(err, &e) || (e.Code != types.ErrDecodingFailure && e.Code != types.ErrInvalidNetworkConfig) {
			t.Errorf("%s: %v; want a CNI decoding or config error", bad, err)
		}
	}
	prev := `{"cniVersion":"1.0.0","name":"w","type":"weave-net","prevResult":{"cniVersion":"1.0.0","ips":[{"address":"10.32.0.5/12"}]}}`
	c, err = parseConf([]byte(prev), true)
	if err != nil || c.PrevResult == nil {
		t.Fatalf("prevResult: %+v, %v", c, err)
	}
}

func TestCNIArg(t *testing.T) {
	args := "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0"
	if got := cniArg(args, "K8S_POD_NAME"); got != "web-0" {
		t.Fatalf("K8S_POD_NAME = %q", got)
	}
	if got := cniArg(args, "X"); got != "" {
		t.Fatalf("X = %q", got)
	}
}

func TestAttachmentRecords(t *testing.T) {
	dir := t.TempDir()
	if err := saveAttachment(dir, "ctr_1", "eth0", "/var/run/netns/a"); err != nil {
		t.Fatal(err)
	}
	if err := saveAttachment(dir, "ctr2", "net1", "/proc/5/ns/net"); err != nil {
		t.Fatal(err)
	}
	if got, err := loadAttachment(dir, "ctr_1", "eth0"); err != nil || got != "/var/run/netns/a" {
		t.Fatalf("load = %q, %v", got, err)
	}
	all, err := listAttachments(dir)
	if err != nil || fmt.Sprint(all) != "[{ctr2 net1 /proc/5/ns/net} {ctr_1 eth0 /var/run/netns/a}]" {
		t.Fatalf("list = %v, %v", all, err)
	}
	if err := removeAttachment(dir, "ctr_1", "eth0"); err != nil {
		t.Fatal(err)
	}
	if err := removeAttachment(dir, "ctr_1", "eth0"); err != nil {
		t.Fatalf("second remove: %v", err)
	}
	if got, _ := loadAttachment(dir, "ctr_1", "eth0"); got != "" {
		t.Fatalf("removed record still reads %q", got)
	}
	if err := saveAttachment(dir, "../x", "eth0", "n"); err == nil {
		t.Fatal("a container id with '/' was accepted")
	}
}

func TestRouterErrorCodes(t *testing.T) {
	cases := []struct {
		err  error
		code uint
	}{
		{fmt.Errorf("x: %w", api.ErrNoRouter), types.ErrTryAgainLater},
		{api.NotReady("starting"), types.ErrTryAgainLater},
		{api.Conflict("exhausted"), errRouter},
		{api.BadRequest("bad netns"), errRouter},
		{errors.New("boom"), types.ErrInternal},
	}
	for _, c := range cases {
		var e *types.Error
		if err := routerError("attach", c.err); !errors.As(err, &e) || e.Code != c.code {
			t.Errorf("%v: %v; want code %d", c.err, err, c.code)
		}
	}
}

func TestResult(t *testing.T) {
	args := &skel.CmdArgs{Netns: "/var/run/netns/a", IfName: "eth0"}
	r, err := resultOf(args, api.Endpoint{Iface: "eth0", MAC: "0a:58:0a:20:00:05", MTU: 1376, CIDRs: []string{"10.32.0.5/12"}},
		types.DNS{Nameservers: []string{"127.0.0.153"}, Search: []string{"weave.local"}})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(r)
	for _, want := range []string{`"address":"10.32.0.5/12"`, `"name":"eth0"`, `"sandbox":"/var/run/netns/a"`, `"127.0.0.153"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("result %s lacks %s", b, want)
		}
	}
}

// FuzzConf: any configuration either parses or gives a CNI error; never a
// panic.
func FuzzConf(f *testing.F) {
	f.Add([]byte(`{"cniVersion":"1.1.0","name":"w","type":"weave-net","subnet":"10.32.4.0/24"}`), true)
	f.Add([]byte(`{"cniVersion":"1.0.0","prevResult":{"cniVersion":"1.0.0","ips":[{"address":"10.32.0.5/12"}]}}`), true)
	f.Add([]byte(`{"cni.dev/valid-attachments":[{"containerID":"a","ifname":"eth0"}]}`), false)
	f.Fuzz(func(t *testing.T, data []byte, prev bool) {
		c, err := parseConf(data, prev)
		if err != nil {
			var e *types.Error
			if !errors.As(err, &e) {
				t.Fatalf("%q: error %v is not a CNI error", data, err)
			}
			return
		}
		if c.API == "" || c.DataDir == "" {
			t.Fatalf("%q: defaults missing: %+v", data, c)
		}
	})
}
