// Package router owns the peer router: it joins the gossip mesh, learns
// which MAC address lives behind which peer, keeps the topology of
// data-plane links, forwards unicast on shortest paths (relaying through a
// third peer when two cannot reach each other), floods broadcast along a
// spanning tree, and chooses a datapath per peer. It also serves the HTTP API.
package router
