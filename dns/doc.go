// Package dns owns weaveDNS: the records that name containers across the
// mesh and the DNS server that answers for them.
//
//   - Store is this peer's replica of the records, a CRDT carried by a
//     gossip channel: each peer writes only its own records (name, address,
//     endpoint, version, tombstones); deltas spread by broadcast, and
//     push-pull exchanges per-peer digests, after which a peer pulls the
//     records whose digests differ over reliable unicast. Records of a peer
//     that died are hidden after a grace period and return with it.
//   - Handler answers DNS queries: A, AAAA and PTR for the weave domain
//     from the Store, everything else through a Forwarder to the upstream
//     servers of the host.
//   - Server runs the Handler on UDP and TCP listeners in the host's
//     network namespace and inside each attached container's namespace.
//     UDP queries are read and answered in batches (recvmmsg, sendmmsg),
//     the common ones by a fast path straight from the query's bytes.
//   - resolv.conf helpers read the host's upstream servers and write the
//     file `ip netns exec` gives a named namespace.
//
// docs/dns.md describes the behaviour and the wire format.
package dns
