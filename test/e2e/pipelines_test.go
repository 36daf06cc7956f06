package e2e

import (
	"fmt"
	"sync"
	"testing"

	"weavemesh.dev/weave/test/harness"
)

// TestSleevePipelines: routers with two sleeve pipelines each (a TAP queue
// and a socket per pipeline) carry four TCP transfers at once between two
// containers, every one intact, plain and encrypted with each cipher; the
// connection shows the cipher asked for.
func TestSleevePipelines(t *testing.T) {
	for _, tc := range []struct {
		name, cipher string
	}{{"plain", ""}, {"aes", "aes-256-gcm"}, {"chacha", "chacha20-poly1305"}} {
		t.Run(tc.name, func(t *testing.T) {
			cl := newCluster(t, harness.Options{Hosts: 2})
			args := []string{"--datapath=sleeve", "--sleeve-pipelines=2"}
			if tc.cipher != "" {
				args = append(args, passwordFile(t, cl, "pw", meshPassword), "--sleeve-cipher="+tc.cipher)
			}
			h1, h2, c1, c2, ctx := pingingPair(t, cl, args...)
			for _, h := range []*harness.Host{h1, h2} {
				st, err := h.StatusCtx(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if st.Sleeve == nil || st.Sleeve.Pipelines != 2 {
					t.Fatalf("%s: sleeve status %+v, want 2 pipelines", h.Name, st.Sleeve)
				}
			}
			if tc.cipher != "" {
				c, err := h1.ConnectionTo(h2)
				if err != nil {
					t.Fatal(err)
				}
				// host1 started the router first, but either side may
				// have started the session in use: its cipher is the one
				// both ask for.
				if !c.Encrypted || c.Cipher != tc.cipher {
					t.Fatalf("connection encrypted %v with %q, want %q", c.Encrypted, c.Cipher, tc.cipher)
				}
			}
			const streams, size = 4, 10 << 20
			var wg sync.WaitGroup
			errs := make([]error, streams)
			for i := range streams {
				wg.Add(1)
				go func() {
					defer wg.Done()
					res, err := harness.Transfer(ctx, c1.NS, c2.NS, c2.IP(), 5001+i, size)
					switch {
					case err != nil:
						errs[i] = err
					case res.RecvBytes != size || res.RecvSHA256 != res.SentSHA256:
						errs[i] = fmt.Errorf("received %d bytes, sha256 %s; sent %d, %s", res.RecvBytes, res.RecvSHA256, size, res.SentSHA256)
					}
				}()
			}
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					t.Errorf("transfer %d: %v", i, err)
				}
			}
		})
	}
}
