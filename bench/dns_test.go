package main

import (
	"strings"
	"testing"
)

func TestParseDNSPerf(t *testing.T) {
	out := `DNS Performance Testing Tool
[Status] Sending queries (to 127.0.0.153:53)
> NOERROR name1.weave.local A 0.000100
> NOERROR name2.weave.local A 0.000300
> NOERROR name3.weave.local A 0.000200
> NOERROR name4.weave.local A 0.002000
Statistics:

  Queries sent:         4
  Queries completed:    4 (100.00%)
  Queries lost:         1 (0.00%)
  Queries per second:   80487.143600
`
	r, err := parseDNSPerf(strings.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	if r.qps != 80487.1436 || r.lost != 1 || r.p50 != 0.0003 || r.p99 != 0.002 {
		t.Errorf("%+v", r)
	}
	if _, err := parseDNSPerf(strings.NewReader("garbage")); err == nil {
		t.Error("no error without a rate")
	}
}
