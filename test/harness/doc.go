// Package harness owns simulated weave clusters built from Linux network
// namespaces: an underlay namespace holding a bridge, host namespaces wired
// to it by veth pairs, container namespaces, the weave routers running in the
// hosts, underlay path failures (Cut/Heal), packet capture, and the helpers
// that tests, benchmarks and the demo share (polling with deadlines, ping
// parsing, SHA-256 of transfers).
//
// The API returns errors and keeps a cleanup stack so that it works from
// plain programs; NewT wraps it for tests. Every object a run creates is
// named with a prefix "wv<pid>x<N>-" so that parallel runs never collide,
// and Sweep removes what runs whose process has died left behind.
//
// Everything here needs root: namespaces, veths, bridges and nftables are
// kernel objects. Traffic only ever flows between namespaces the harness
// created: the underlay has no route out of its bridge.
package harness
