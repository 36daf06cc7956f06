// Package cni is weave's CNI plugin "weave-net" (CNI spec 1.1, also
// serving 0.4.0 and 1.0.0 configurations): ADD asks the local router's HTTP
// API to attach the container's namespace, as weave attach does, with an
// address from weave IPAM or from a delegated IPAM plugin; DEL detaches it
// and is idempotent; CHECK compares the endpoint with the previous result;
// GC detaches what the runtime no longer lists; STATUS says whether the
// router is up. cmd/weave-net is the binary.
package cni
