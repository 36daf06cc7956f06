// Package metrics owns the router's Prometheus metrics: their names, help
// and labels (docs/metrics.md), the collector that reads them at scrape
// time from what the router and the other features already count, and
// the listener that serves them (--metrics-addr, default 127.0.0.1:6782),
// along with the live picture of the mesh at /ui (package ui).
// It is a feature (package feature) that registers after the others it
// reads: IP allocation and weaveDNS.
package metrics
