package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// PluginClient speaks to a Docker plugin's unix socket as dockerd does.
type PluginClient struct {
	path string
	tr   *http.Transport
	c    *http.Client
}

// NewPluginClient returns a client of the plugin socket at path; Close it.
func NewPluginClient(path string) *PluginClient {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}}
	return &PluginClient{path: path, tr: tr, c: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
}

// Close drops idle connections.
func (p *PluginClient) Close() { p.tr.CloseIdleConnections() }

// Call posts req (nil: no body) to /method and decodes the reply into resp
// (nil: discarded). A status other than 200, or an Err or Error in the
// reply, is an error that says so.
func (p *PluginClient) Call(ctx context.Context, method string, req, resp any) error {
	var body []byte
	if req != nil {
		var err error
		if body, err = json.Marshal(req); err != nil {
			return err
		}
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://plugin/"+method, bytes.NewReader(body))
	if err != nil {
		return err
	}
	hreq.Header.Set("Content-Type", "application/vnd.docker.plugins.v1.2+json")
	hresp, err := p.c.Do(hreq)
	if err != nil {
		return fmt.Errorf("%s on %s: %w", method, p.path, err)
	}
	defer hresp.Body.Close()
	b, err := io.ReadAll(hresp.Body)
	if err != nil {
		return fmt.Errorf("%s: read reply: %w", method, err)
	}
	var e struct{ Err, Error string }
	_ = json.Unmarshal(b, &e)
	if hresp.StatusCode != http.StatusOK || e.Err != "" || e.Error != "" {
		return fmt.Errorf("%s: status %d, reply %s", method, hresp.StatusCode, bytes.TrimSpace(b))
	}
	if resp != nil {
		if err := json.Unmarshal(b, resp); err != nil {
			return fmt.Errorf("%s: reply %q: %w", method, b, err)
		}
	}
	return nil
}
