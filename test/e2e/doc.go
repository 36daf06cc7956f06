// Package e2e holds the end-to-end tests: real weave routers in simulated
// hosts (network namespaces built by test/harness), driven only through the
// weave CLI as a user would, with real traffic between containers. They need
// root; run them with
//
//	go test ./test/e2e -v -count=1
package e2e
