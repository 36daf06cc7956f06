// Package chaos runs meshes of full weave routers in network namespaces
// under scripted faults (partitions, underlay loss, SIGKILL and restart,
// a full data disk, floods of garbage and replayed gossip) chosen by a
// seeded random generator, and checks the mesh's promises after every
// step: no address handed out twice, DNS and traffic back within bounds
// after a heal or restart, memory bounded under flood, no goroutine leak,
// nothing acknowledged lost to SIGKILL. It also holds the on-demand soak
// and the 20-router mesh. The tests need root and the weave binary, which
// TestMain builds; see docs/reliability.md for how to run them.
package chaos
