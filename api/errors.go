package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
)

// Kinds of failure a Backend reports so the server can answer with the right
// HTTP status code. Wrap one with %w, or build the error with BadRequest,
// NotFound, Conflict or NotReady to keep the message free of the kind:
//
//	return api.NotFound("no endpoint in %s", netns)
//	return fmt.Errorf("endpoint %s: %w", id, api.ErrConflict)
//
// Any other error is a 500. Errors the Client returns for API failures
// match these kinds too, so a caller can test errors.Is(err, api.ErrNotFound).
var (
	ErrBadRequest = errors.New("bad request") // 400: the request itself is wrong
	ErrNotFound   = errors.New("not found")   // 404: what it names does not exist
	ErrConflict   = errors.New("conflict")    // 409: clashes with current state
	ErrNotReady   = errors.New("not ready")   // 503: try again once the router is ready
)

// ErrNoRouter matches the Client's error when nothing listens on the API
// address. Its message tells the user to run weave launch.
var ErrNoRouter = errors.New("no router is running")

// StatusError is an error that carries the HTTP status code it maps to. The
// server sends its message as the api.Error body; the Client returns one for
// every non-2xx answer, with the server's message.
type StatusError struct {
	Code int   // HTTP status code
	Err  error // what went wrong, in words a user can act on
}

func (e *StatusError) Error() string {
	if e.Err == nil {
		return http.StatusText(e.Code)
	}
	return e.Err.Error()
}

func (e *StatusError) Unwrap() error { return e.Err }

// Is makes a StatusError match the error kind of its code, so that
// errors.Is(err, ErrNotFound) holds for a 404 that came over the wire.
func (e *StatusError) Is(target error) bool {
	switch target {
	case ErrBadRequest:
		return e.Code == http.StatusBadRequest
	case ErrNotFound:
		return e.Code == http.StatusNotFound
	case ErrConflict:
		return e.Code == http.StatusConflict
	case ErrNotReady:
		return e.Code == http.StatusServiceUnavailable
	}
	return false
}

// BadRequest returns an error the server answers with 400.
func BadRequest(format string, args ...any) error {
	return &StatusError{Code: http.StatusBadRequest, Err: fmt.Errorf(format, args...)}
}

// NotFound returns an error the server answers with 404.
func NotFound(format string, args ...any) error {
	return &StatusError{Code: http.StatusNotFound, Err: fmt.Errorf(format, args...)}
}

// Conflict returns an error the server answers with 409.
func Conflict(format string, args ...any) error {
	return &StatusError{Code: http.StatusConflict, Err: fmt.Errorf(format, args...)}
}

// NotReady returns an error the server answers with 503.
func NotReady(format string, args ...any) error {
	return &StatusError{Code: http.StatusServiceUnavailable, Err: fmt.Errorf(format, args...)}
}

// StatusCode is the HTTP status code the server answers err with.
func StatusCode(err error) int {
	var se *StatusError
	switch {
	case err == nil:
		return http.StatusOK
	case errors.As(err, &se) && se.Code >= 400 && se.Code <= 599:
		return se.Code
	case errors.Is(err, ErrBadRequest):
		return http.StatusBadRequest
	case errors.Is(err, ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, ErrConflict):
		return http.StatusConflict
	case errors.Is(err, ErrNotReady),
		errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, context.Canceled):
		// The router is busy or going away; the request may succeed later.
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}
