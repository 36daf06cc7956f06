// Package sleevetest owns in-memory fakes of the sleeve engine's device
// and underlay socket, for tests of the engine and of the packages that
// run one (the router, features, plugins): a Device that stands for the
// TAP, and a Net of Conns that stands for the underlay, with links that
// can be cut or given a smaller MTU. Both can be made to fail a read, as a
// broken device or socket would, to test what happens when a datapath
// pipeline dies. A Clock that moves only when told to stands for time, so
// that links come up and time out because a test advanced it; with
// Net.WaitIdle a test knows when everything a tick set off is done.
// Nothing here is for production use.
package sleevetest
