// Package structure owns the tests of the module's shape rather than its
// behaviour: which layers may import which, that every package says what
// it owns, and that no source file grows past one job. It has no code of
// its own; its tests read the module with go list.
package structure
