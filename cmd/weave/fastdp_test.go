package main

import (
	"bytes"
	"testing"

	"weavemesh.dev/weave/api"
	"weavemesh.dev/weave/router"
)

func TestFormatFastdp(t *testing.T) {
	tests := []struct {
		name string
		st   *api.FastdpStatus
		want string
	}{
		{"old router", nil, ""},
		{"device", &api.FastdpStatus{Mode: "auto", VXLAN: "available", ESP: "not available: no AEAD",
			Device: "weave-vxlan", Port: 6786, VNI: 5561878, TxChecksum: true, Entries: 4, TxPackets: 10, RxPackets: 12},
			`Fastdp: weave-vxlan (udp 6786, VNI 5561878, tx-checksum on), --datapath auto, 4 entries, 10 sent, 12 received
VXLAN: available
ESP: not available: no AEAD
`},
		{"no device", &api.FastdpStatus{Mode: "sleeve", VXLAN: "available", ESP: "available", Reason: "--datapath sleeve"},
			`Fastdp: off (--datapath sleeve), --datapath sleeve
VXLAN: available
ESP: available
`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			formatFastdp(&b, tc.st)
			if b.String() != tc.want {
				t.Errorf("got\n%s\nwant\n%s", b.String(), tc.want)
			}
		})
	}
}

func TestFormatConnectionDatapathReason(t *testing.T) {
	var b bytes.Buffer
	formatConnections(&b, []api.Connection{{Peer: "11:22:33:44:55:66", State: "established", Datapath: "sleeve",
		DatapathReason: "fastdp probes unanswered for 3s (is udp 6786 blocked?)"}})
	if !bytes.Contains(b.Bytes(), []byte("sleeve    -    -    fastdp probes unanswered for 3s (is udp 6786 blocked?)")) {
		t.Errorf("got\n%s", b.String())
	}
}

func TestFastdpArgs(t *testing.T) {
	var f fastdpFlags
	f.datapath, f.port = "auto", 6786
	if got := fastdpArgs(routerConfigFor(t, &f)); len(got) != 0 {
		t.Errorf("defaults give args %q, want none", got)
	}
}

func routerConfigFor(t *testing.T, f *fastdpFlags) (cfg router.Config) {
	cfg.Port = 6783
	t.Helper()
	if err := f.apply(&cfg); err != nil {
		t.Fatal(err)
	}
	return cfg
}
