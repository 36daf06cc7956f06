package api

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestToken: the API token, on and off loopback.
func TestToken(t *testing.T) {
	if _, err := NewServer(ServerOptions{Addr: "0.0.0.0:6784", Backend: &fakeBackend{}}); err == nil || !strings.Contains(err.Error(), "--http-token") {
		t.Fatalf("off loopback without a token: %v, want a refusal naming --http-token", err)
	}
	const tok = "s3cret-token"
	for _, tc := range []struct {
		name   string
		addr   string
		token  string
		method string
		send   string
		want   int
	}{
		{"loopback, no token: read", "127.0.0.1:6784", "", "GET", "", http.StatusOK},
		{"loopback, no token: change", "127.0.0.1:6784", "", "POST", "", http.StatusOK},
		{"loopback, token: read without", "127.0.0.1:6784", tok, "GET", "", http.StatusOK},
		{"loopback, token: change without", "127.0.0.1:6784", tok, "POST", "", http.StatusUnauthorized},
		{"loopback, token: change with a wrong one", "127.0.0.1:6784", tok, "POST", "nope", http.StatusUnauthorized},
		{"loopback, token: change with", "127.0.0.1:6784", tok, "POST", tok, http.StatusOK},
		{"off loopback: read without", "0.0.0.0:6784", tok, "GET", "", http.StatusUnauthorized},
		{"off loopback: read with", "0.0.0.0:6784", tok, "GET", tok, http.StatusOK},
		{"off loopback: change without", "0.0.0.0:6784", tok, "POST", "", http.StatusUnauthorized},
		{"off loopback: change with", "[::]:6784", tok, "POST", tok, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := NewServer(ServerOptions{Addr: tc.addr, Backend: &fakeBackend{}, Token: tc.token})
			if err != nil {
				t.Fatal(err)
			}
			path, body := "/status", ""
			if tc.method == "POST" {
				path, body = "/connect", `{"peers":["10.0.0.9"]}`
			}
			r := httptest.NewRequest(tc.method, "http://127.0.0.1"+path, strings.NewReader(body))
			r.Header.Set("Content-Type", "application/json")
			if tc.send != "" {
				r.Header.Set("Authorization", "Bearer "+tc.send)
			}
			w := httptest.NewRecorder()
			s.ServeHTTP(w, r)
			if w.Code != tc.want {
				t.Fatalf("%s %s: %d %s, want %d", tc.method, path, w.Code, w.Body, tc.want)
			}
			if w.Code == http.StatusUnauthorized && (!strings.Contains(w.Body.String(), "--http-token") || w.Header().Get("WWW-Authenticate") == "") {
				t.Errorf("401 without advice: %s %v", w.Body, w.Header())
			}
		})
	}
	if s, _ := NewServer(ServerOptions{Addr: "0.0.0.0:1", Backend: &fakeBackend{}, Token: tok}); s.Local() {
		t.Error("0.0.0.0 is local")
	}
}
