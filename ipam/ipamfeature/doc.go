// Package ipamfeature is IP allocation as a router feature
// (feature.Feature): the allocator's gossip channel and data file, the
// addresses of endpoints on attach and detach, the host's own addresses
// (weave expose and hide), and the IPAM HTTP routes. The allocator itself
// is package ipam.
package ipamfeature
