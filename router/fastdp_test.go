package router

import (
	"strings"
	"testing"
)

func TestFastdpConfig(t *testing.T) {
	tests := []struct {
		name    string
		c       Config
		want    Config
		errText string
	}{
		{name: "defaults", c: Config{Port: 6783, DataPort: 6784},
			want: Config{Port: 6783, DataPort: 6784, Datapath: DatapathAuto, FastdpPort: 6786}},
		{name: "sleeve", c: Config{Port: 6783, DataPort: 6784, Datapath: "sleeve", FastdpPort: 7000},
			want: Config{Port: 6783, DataPort: 6784, Datapath: DatapathSleeve, FastdpPort: 7000}},
		{name: "bad mode", c: Config{Port: 6783, DataPort: 6784, Datapath: "vxlan"}, errText: `--datapath "vxlan"`},
		{name: "data port", c: Config{Port: 6783, DataPort: 6784, FastdpPort: 6784}, errText: "--fastdp-port 6784: must differ"},
		{name: "gossip port", c: Config{Port: 6783, DataPort: 6784, FastdpPort: 6783}, errText: "--fastdp-port 6783: must differ"},
		{name: "range", c: Config{Port: 6783, DataPort: 6784, FastdpPort: 70000}, errText: "--fastdp-port 70000: must be 1-65535"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.c
			err := c.fastdpDefaults()
			if tc.errText != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errText) {
					t.Fatalf("err %v, want %q", err, tc.errText)
				}
				return
			}
			if err != nil || c.Datapath != tc.want.Datapath || c.FastdpPort != tc.want.FastdpPort {
				t.Errorf("got %q %d %v, want %q %d", c.Datapath, c.FastdpPort, err, tc.want.Datapath, tc.want.FastdpPort)
			}
		})
	}
}
