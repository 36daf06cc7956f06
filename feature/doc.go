// Package feature owns the one contract by which features plug into the
// router: what a feature declares (gossip channels, HTTP routes, a status
// section) and the hooks it runs on (its life, and the life of each
// endpoint), and Host, the small view of the router a feature gets. The
// router is the only caller; the mesh core, gossip and the datapaths
// import nothing of it.
package feature
