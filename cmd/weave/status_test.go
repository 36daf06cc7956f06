package main

import (
	"bytes"
	"testing"
	"time"

	"weavemesh.dev/weave/api"
)

var (
	goldenStatus = api.Status{Name: "aa:bb:cc:dd:ee:ff", Nickname: "host1", Version: "dev", Ready: true,
		Port: 6783, DataPort: 6784, OverlayMTU: 1376, Peers: 3,
		Connections: map[string]int{"established": 2},
		Datapaths:   map[string]int{"sleeve": 2}}
	goldenPeers = []api.Peer{
		{Name: "11:22:33:44:55:66", Nickname: "host2", Address: "10.0.0.2:6783", DataAddr: "10.0.0.2:6784",
			State: "alive", Since: testNow.Add(-3*time.Hour - 4*time.Minute), Version: "dev", ProtoMin: 1, ProtoMax: 1},
		{Name: "aa:bb:cc:dd:ee:ff", Nickname: "host1", Address: "10.0.0.1:6783", DataAddr: "10.0.0.1:6784",
			State: "alive", Since: testNow.Add(-50 * time.Hour), Version: "dev", ProtoMin: 1, ProtoMax: 1, Self: true},
		{Name: "02:00:00:00:00:03", Nickname: "", Address: "10.0.0.3:6783", State: "suspect",
			Since: testNow.Add(-42 * time.Second)},
	}
	goldenConns = []api.Connection{
		{Peer: "11:22:33:44:55:66", Nickname: "host2", Address: "10.0.0.2:6784", State: "established",
			Datapath: "sleeve", MTU: 1376, RTTMillis: 0.42},
		{Peer: "02:00:00:00:00:03", Address: "10.0.0.3:6784", State: "relayed", Via: "11:22:33:44:55:66",
			Datapath: "sleeve", Encrypted: true, MTU: 1376, RTTMillis: 12.345},
		{Peer: "02:00:00:00:00:04", Nickname: "host4", Address: "10.0.0.4:6784", State: "failed",
			Reason: "no heartbeat for 30s"},
	}
	goldenEndpoints = []api.Endpoint{
		{ID: "ep2", Netns: "/proc/4321/ns/net", HostIface: "vwe0a0b0c0d", Iface: "ethwe", MAC: "0a:58:0a:20:01:06",
			CIDRs: []string{"10.32.1.6/12", "fd00::6/64"}},
		{ID: "ep1", Netns: "/var/run/netns/ns1", HostIface: "vwe01020304", Iface: "ethwe", MAC: "0a:58:0a:20:01:05",
			CIDRs: []string{"10.32.1.5/12"}},
	}
)

func TestFormatStatus(t *testing.T) {
	v := &api.Version{Version: "dev", ProtoMin: 1, ProtoMax: 1}
	tests := []struct {
		name string
		st   api.Status
		v    *api.Version
		want string
	}{
		{"example", goldenStatus, v, `Version: dev (protocol 1..1)
Name: aa:bb:cc:dd:ee:ff (host1)
Encryption: disabled
Peers: 3
Connections: 2 (2 established, 0 relayed, 0 connecting, 0 failed)
Datapath: sleeve 2
Overlay MTU: 1376
`},
		{"busy", api.Status{Name: "aa:bb:cc:dd:ee:ff", Version: "1.0", Ready: false, Encryption: true,
			OverlayMTU: 1400, Peers: 9,
			Connections:      map[string]int{"established": 3, "relayed": 1, "connecting": 2, "failed": 1, "odd": 1},
			Datapaths:        map[string]int{"sleeve": 3, "fastdp": 1},
			Drops:            map[string]uint64{"ttl": 2, "no-route": 5, "zero": 0},
			DatapathFailures: map[string]uint64{"sleeve": 2}}, nil,
			`Version: 1.0
Name: aa:bb:cc:dd:ee:ff
Status: starting (not ready yet)
Encryption: enabled
Peers: 9
Connections: 8 (3 established, 1 relayed, 2 connecting, 1 failed, 1 odd)
Datapath: fastdp 1, sleeve 3
Overlay MTU: 1400
Drops: 7 (5 no-route, 2 ttl)
Datapath failures: sleeve 2
`},
		{"alone", api.Status{Name: "aa:bb:cc:dd:ee:ff", Nickname: "h", Ready: true, Peers: 1, OverlayMTU: 1376}, v,
			`Version: dev (protocol 1..1)
Name: aa:bb:cc:dd:ee:ff (h)
Encryption: disabled
Peers: 1
Connections: 0 (0 established, 0 relayed, 0 connecting, 0 failed)
Datapath: none
Overlay MTU: 1376
`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			formatStatus(&b, tc.st, tc.v)
			if b.String() != tc.want {
				t.Errorf("got\n%s\nwant\n%s", b.String(), tc.want)
			}
		})
	}
}

func TestFormatPeers(t *testing.T) {
	var b bytes.Buffer
	formatPeers(&b, goldenPeers, testNow)
	want := `NAME               NICKNAME      ADDRESS        DATA ADDRESS   STATE    SINCE  VERSION  PROTOCOL
aa:bb:cc:dd:ee:ff  host1 (self)  10.0.0.1:6783  10.0.0.1:6784  alive    2d     dev      1..1
02:00:00:00:00:03  -             10.0.0.3:6783  -              suspect  42s    -        -
11:22:33:44:55:66  host2         10.0.0.2:6783  10.0.0.2:6784  alive    3h4m   dev      1..1
`
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}

func TestFormatConnections(t *testing.T) {
	var b bytes.Buffer
	formatConnections(&b, goldenConns)
	want := `PEER               NICKNAME  ADDRESS        STATE        DATAPATH            MTU   RTT     INFO
02:00:00:00:00:03  -         10.0.0.3:6784  relayed      sleeve (encrypted)  1376  12.3ms  via 11:22:33:44:55:66
02:00:00:00:00:04  host4     10.0.0.4:6784  failed       -                   -     -       no heartbeat for 30s
11:22:33:44:55:66  host2     10.0.0.2:6784  established  sleeve              1376  0.4ms   -
`
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}

func TestFormatEndpoints(t *testing.T) {
	var b bytes.Buffer
	formatEndpoints(&b, goldenEndpoints)
	want := `ID   NETNS               IFACE        MAC                IPS
ep1  /var/run/netns/ns1  vwe01020304  0a:58:0a:20:01:05  10.32.1.5/12
ep2  /proc/4321/ns/net   vwe0a0b0c0d  0a:58:0a:20:01:06  10.32.1.6/12,fd00::6/64
`
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
	b.Reset()
	formatEndpoints(&b, nil)
	if b.String() != "ID  NETNS  IFACE  MAC  IPS\n" {
		t.Errorf("empty table %q", b.String())
	}
}

func TestAge(t *testing.T) {
	tests := []struct {
		ago  time.Duration
		want string
	}{
		{0, "0s"}, {-time.Second, "0s"}, {59 * time.Second, "59s"}, {time.Minute, "1m"},
		{59*time.Minute + 59*time.Second, "59m"}, {time.Hour, "1h0m"}, {25 * time.Hour, "1d"},
	}
	for _, tc := range tests {
		if got := age(testNow.Add(-tc.ago), testNow); got != tc.want {
			t.Errorf("age(%v) = %q, want %q", tc.ago, got, tc.want)
		}
	}
	if got := age(time.Time{}, testNow); got != "-" {
		t.Errorf("age(zero) = %q", got)
	}
}
