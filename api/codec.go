package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// Validator is a request type that checks itself; DecodeRequest calls it.
type Validator interface {
	Validate() error
}

// DecodeRequest reads r's JSON body into v. The body is untrusted: it is
// limited to MaxRequestBytes (413 beyond), must be one well-formed JSON
// value of the right shape with nothing after it (400 otherwise), and when
// v is a Validator it must pass Validate. Unknown fields are ignored so that
// newer clients work with older routers. The error it returns is ready for
// WriteError.
func DecodeRequest(w http.ResponseWriter, r *http.Request, v any) error {
	body := http.MaxBytesReader(w, r.Body, MaxRequestBytes)
	dec := json.NewDecoder(body)
	if err := dec.Decode(v); err != nil {
		return decodeError(err)
	}
	// Exactly one value: "{}{}" or "{} x" is a broken client.
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		if err != nil {
			return decodeError(err)
		}
		return BadRequest("request body has data after the JSON value")
	}
	if val, ok := v.(Validator); ok {
		return val.Validate()
	}
	return nil
}

func decodeError(err error) error {
	var (
		maxErr    *http.MaxBytesError
		syntaxErr *json.SyntaxError
		typeErr   *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &maxErr):
		return &StatusError{Code: http.StatusRequestEntityTooLarge,
			Err: fmt.Errorf("request body is larger than %d bytes", maxErr.Limit)}
	case errors.Is(err, io.EOF):
		return BadRequest("request body is empty; want a JSON object")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return BadRequest("request body is truncated JSON")
	case errors.As(err, &syntaxErr):
		return BadRequest("request body is malformed JSON at byte %d: %v", syntaxErr.Offset, syntaxErr)
	case errors.As(err, &typeErr):
		if typeErr.Field == "" {
			return BadRequest("request body is a JSON %s; want an object", typeErr.Value)
		}
		return BadRequest("field %q is a JSON %s; want %s", typeErr.Field, typeErr.Value, jsonKind(typeErr.Type.Kind().String()))
	}
	return BadRequest("read request body: %v", err)
}

func jsonKind(goKind string) string {
	switch goKind {
	case "slice", "array":
		return "an array"
	case "string":
		return "a string"
	case "struct", "map":
		return "an object"
	case "bool":
		return "a boolean"
	}
	return "a number"
}

// WriteJSON answers with v as JSON and the given status code.
func WriteJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		WriteError(w, fmt.Errorf("encode response: %w", err))
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}

// WriteError answers with err as an api.Error and the status code
// StatusCode(err) chooses.
func WriteError(w http.ResponseWriter, err error) {
	if lw, ok := w.(*logWriter); ok {
		lw.err = err
	}
	b, _ := json.Marshal(Error{Error: err.Error()}) // a struct of one string always encodes
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(StatusCode(err))
	_, _ = w.Write(append(b, '\n'))
}

// Validate checks the request before it reaches the Backend.
func (p PeersRequest) Validate() error {
	if len(p.Peers) == 0 {
		return BadRequest("peers: give at least one peer as host or host:port")
	}
	for _, a := range p.Peers {
		if strings.TrimSpace(a) == "" {
			return BadRequest("peers: empty peer address; give host or host:port")
		}
	}
	return nil
}

// Validate checks the request before it reaches the Backend.
func (a AttachRequest) Validate() error {
	if a.Netns == "" {
		return BadRequest("netns: give the path of a network namespace, like /var/run/netns/NAME or /proc/PID/ns/net")
	}
	if !strings.HasPrefix(a.Netns, "/") {
		return BadRequest("netns %q: want an absolute path", a.Netns)
	}
	// No CIDRs asks IP allocation for an address in the default subnet;
	// "net:CIDR" and "net:default" ask for one in that subnet.
	for _, c := range a.CIDRs {
		if err := validAddressItem(c); err != nil {
			return err
		}
	}
	return nil
}

// Validate checks the request before it reaches the Backend.
func (d DetachRequest) Validate() error {
	if d.Netns == "" {
		return BadRequest("netns: give the path of a network namespace, like /var/run/netns/NAME or /proc/PID/ns/net")
	}
	if !strings.HasPrefix(d.Netns, "/") {
		return BadRequest("netns %q: want an absolute path", d.Netns)
	}
	return nil
}
