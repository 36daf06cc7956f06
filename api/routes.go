package api

import "net/http"

// Route is one HTTP route a feature adds to the API. Features declare
// their routes as a list of these and the router registers each with
// Server.Handle; that is the one way the API is extended (the core routes
// are the server's own, over Backend). docs/api.md lists every route.
type Route struct {
	// Pattern is in http.ServeMux syntax with a method: "GET /status/dns".
	Pattern string
	Handler http.Handler
}

// JSON is a handler that answers with fn's value as JSON (200), or with
// its error, whose kind (errors.go) chooses the status code.
func JSON(fn func(r *http.Request) (any, error)) http.Handler { return jsonHandler(fn) }

// Body is a handler that decodes the request body into a T (see
// DecodeRequest: size limit, one JSON value, Validate when T has it), then
// answers like JSON.
func Body[T any](fn func(r *http.Request, req T) (any, error)) http.Handler {
	return bodyHandler(fn)
}
