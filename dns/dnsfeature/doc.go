// Package dnsfeature is weaveDNS as a router feature (feature.Feature):
// the records' gossip channel, the DNS server with its listeners on the
// host, on the bridge and inside every attached namespace, the names of
// endpoints, the records added by hand, and the weaveDNS HTTP routes. The
// records, the server and the forwarder themselves are package dns.
package dnsfeature
