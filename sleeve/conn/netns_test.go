package conn

import (
	"testing"

	"weavemesh.dev/weave/internal/netnstest"
)

// enterNewNS locks the test goroutine to its OS thread and moves that
// thread into a fresh namespace with loopback up, and returns its name;
// cleanup moves it back and deletes the namespace. Sockets opened by the
// test goroutine live there. It skips the test unless it runs as root.
func enterNewNS(t testing.TB) string {
	t.Helper()
	name := netnstest.Name("wvconn")
	netnstest.Enter(t, name)
	netnstest.Loopback(t)
	return name
}
