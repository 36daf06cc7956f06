package main

import (
	"os"
	"testing"
)

func TestParseSNMP(t *testing.T) {
	const s = `Ip: Forwarding DefaultTTL
Ip: 1 64
Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors
Udp: 100 2 7 50 5 0 0 0 0
UdpLite: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors
UdpLite: 0 0 0 0 9 0 0 0 0
`
	m, err := parseSNMP(s, "Udp")
	if err != nil {
		t.Fatal(err)
	}
	if m["RcvbufErrors"] != 5 || m["InErrors"] != 7 || m["InDatagrams"] != 100 {
		t.Errorf("got %v", m)
	}
	if _, err := parseSNMP("Ip: a\nIp: 1\n", "Udp"); err == nil {
		t.Error("missing Udp lines: no error")
	}
}

func TestParseIperf(t *testing.T) {
	tests := []struct {
		name    string
		out     string
		bps     float64
		wantErr bool
	}{
		{"ok", `{"end":{"sum_received":{"bytes":1000,"bits_per_second":8e9},"sum_sent":{"retransmits":3}}}`, 8e9, false},
		{"iperf error", `{"error":"unable to connect to server"}`, 0, true},
		{"garbage", `iperf3: error`, 0, true},
	}
	for _, tt := range tests {
		r, err := parseIperf(tt.out)
		if (err != nil) != tt.wantErr || r.End.SumReceived.BitsPerSecond != tt.bps {
			t.Errorf("%s: %+v, %v", tt.name, r, err)
		}
	}
}

func TestAddRatios(t *testing.T) {
	rs := []Result{
		{Scenario: "underlay", Gbps1: 20, Gbps4: 30},
		{Scenario: referenceKey, Gbps1: 10, Gbps4: 15},
		{Scenario: "sleeve", Gbps1: 5, Gbps4: 7.5},
		{Scenario: "broken", Error: "x"},
	}
	addRatios(rs)
	want := []float64{2, 1, 0.5}
	for i, w := range want {
		if rs[i].Ratio1 == nil || *rs[i].Ratio1 != w || rs[i].Ratio4 == nil || *rs[i].Ratio4 != w {
			t.Errorf("%s: ratios %v %v, want %v", rs[i].Scenario, rs[i].Ratio1, rs[i].Ratio4, w)
		}
	}
	if rs[3].Ratio1 != nil {
		t.Error("failed row got a ratio")
	}
	noRef := []Result{{Scenario: "sleeve", Gbps1: 1}}
	addRatios(noRef)
	if noRef[0].Ratio1 != nil {
		t.Error("ratio without a reference row")
	}
}

func TestProcReaders(t *testing.T) {
	if _, err := procCPU(os.Getpid()); err != nil {
		t.Error(err)
	}
	if m, err := peakRSS(os.Getpid()); err != nil || m <= 0 {
		t.Errorf("peakRSS = %v, %v", m, err)
	}
	if b, err := machineBusy(); err != nil || b <= 0 {
		t.Errorf("machineBusy = %v, %v", b, err)
	}
}

func TestScenarioKeysUnique(t *testing.T) {
	seen := map[string]bool{}
	for _, s := range scenarios {
		if seen[s.Key] || s.Setup == nil || s.Title == "" {
			t.Errorf("scenario %+v: duplicate key or missing field", s.Key)
		}
		seen[s.Key] = true
	}
	if !seen[referenceKey] {
		t.Errorf("reference scenario %q not in the table", referenceKey)
	}
}

func TestLossScenariosExist(t *testing.T) {
	for _, k := range lossScenarios {
		found := false
		for _, s := range scenarios {
			found = found || s.Key == k
		}
		if !found {
			t.Errorf("lossy row %q is not a scenario", k)
		}
	}
	if !validKey(lossKey) {
		t.Errorf("--only %s refused", lossKey)
	}
}

func TestAddedRTT(t *testing.T) {
	rs := []Result{
		{Scenario: underlayKey, RTTms: 0.050, RTTLoadms: 0.200},
		{Scenario: "sleeve", RTTms: 0.120, RTTLoadms: 0.500},
	}
	addRatios(rs)
	if rs[0].AddedIdleUs != nil {
		t.Errorf("underlay row has an added RTT")
	}
	near := func(p *float64, w float64) bool { return p != nil && *p > w-0.001 && *p < w+0.001 }
	if !near(rs[1].AddedIdleUs, 70) || !near(rs[1].AddedLoadUs, 300) {
		t.Errorf("added %v / %v µs, want 70 / 300", *rs[1].AddedIdleUs, *rs[1].AddedLoadUs)
	}
}

func TestStatusField(t *testing.T) {
	s := "Name:\tweave\nvoluntary_ctxt_switches:\t1234\nnonvoluntary_ctxt_switches:\t5\n"
	for _, tc := range []struct {
		name string
		want uint64
		ok   bool
	}{
		{"voluntary_ctxt_switches:", 1234, true},
		{"nonvoluntary_ctxt_switches:", 5, true},
		{"missing:", 0, false},
	} {
		if v, ok := statusField(s, tc.name); v != tc.want || ok != tc.ok {
			t.Errorf("%s: %d %v, want %d %v", tc.name, v, ok, tc.want, tc.ok)
		}
	}
}
