// Package api owns the router's HTTP API: the JSON types, the server that
// exposes a Backend, and the client the CLI uses. Every CLI verb is one call
// here; docs/api.md lists the endpoints.
package api
