package api

import (
	"net/http"
	"strings"
	"testing"
)

// The helpers features build their routes with keep the API's
// conventions: bodies are decoded and validated, values answered as JSON,
// errors by kind.
func TestRouteHelpers(t *testing.T) {
	s, _ := startServer(t, &fakeBackend{})
	for _, rt := range []Route{
		{Pattern: "GET /x/hello", Handler: JSON(func(r *http.Request) (any, error) {
			if r.URL.Query().Get("who") == "" {
				return nil, NotFound("nobody to greet")
			}
			return map[string]string{"hello": r.URL.Query().Get("who")}, nil
		})},
		{Pattern: "POST /x/expose", Handler: Body(func(r *http.Request, req ExposeRequest) (any, error) {
			return ExposeResponse{CIDRs: req.CIDRs}, nil
		})},
	} {
		s.Handle(rt.Pattern, rt.Handler)
	}
	for _, tt := range []struct {
		method, path, body string
		code               int
		want               string
	}{
		{"GET", "/x/hello?who=web", "", 200, `{"hello":"web"}`},
		{"GET", "/x/hello", "", 404, "nobody to greet"},
		{"POST", "/x/expose", `{"cidrs":["net:default"]}`, 200, `{"cidrs":["net:default"]}`},
		{"POST", "/x/expose", `{"cidrs":["bogus"]}`, 400, "bogus"}, // ExposeRequest.Validate
		{"POST", "/x/expose", `{"cidrs":`, 400, "truncated"},
	} {
		ct := ""
		if tt.method == "POST" {
			ct = "application/json"
		}
		code, _, body := rawRequest(t, s.Addr(), tt.method, tt.path, ct, tt.body)
		if code != tt.code || !strings.Contains(body, tt.want) {
			t.Errorf("%s %s %s = %d %s, want %d with %s", tt.method, tt.path, tt.body, code, body, tt.code, tt.want)
		}
	}
}
