// Package ipam owns IP address management: the allocation range split
// into spans owned by peers (the Ring, a CRDT carried by the gossip layer),
// bootstrap of the split (seed, consensus, observer), donations of space
// between peers, reclaim of lost peers' space, and this peer's durable
// record of its share and its allocations (a bbolt data file). A peer
// allocates from its own verified share without asking anyone; docs/ipam.md
// explains the rules and why no address is handed out twice.
package ipam
