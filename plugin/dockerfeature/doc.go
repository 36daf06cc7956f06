// Package dockerfeature is the Docker plugin as a router feature
// (feature.Feature): it serves the weavemesh network and IPAM plugin of
// package docker on its unix socket, gives Docker's endpoints veths on the
// weave bridge, addresses from IP allocation and names in weaveDNS (both
// found through feature.Host.Feature), keeps the pools' addresses across a
// router restart, and follows the Docker engine for the containers' names.
package dockerfeature
