// Package docker is weave's Docker network plugin "weavemesh": a libnetwork
// remote network driver and a remote IPAM driver served together on one
// unix socket (Plugin.Activate names both). Docker creates networks with
// `docker network create -d weavemesh --ipam-driver weavemesh`; addresses
// come from weave IPAM, each endpoint is a veth on the weave bridge, and
// Docker moves its other end into the container.
//
// The plugin reaches the router only through the Router interface, which
// the router implements. It keeps no state on disk: every call after a
// router restart is answered from the names Docker sends (pool ids carry
// their subnet, veth names derive from endpoint ids), and the router keeps
// the pools' addresses in IPAM across restarts.
package docker
