package main

import (
	"context"
	"strings"
	"testing"

	"weavemesh.dev/weave/router"
)

// routerFlagCase is one case of a table of router flags: the arguments of
// weave router, and what the configuration must satisfy, or the error it
// must fail with.
type routerFlagCase struct {
	name    string
	args    []string
	check   func(router.Config) bool
	errText string
}

// testRouterFlags runs each case through weave router, then feeds the
// flags childArgs gives for the configuration to weave router again, as
// weave launch does for its background router: both configurations must
// pass the check.
func testRouterFlags(t *testing.T, childArgs func(router.Config) []string, cases []routerFlagCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, _, stderr := testApp(t)
			var got *router.Config
			a.runRouter = func(_ context.Context, cfg router.Config) error { got = &cfg; return nil }
			code := a.run(context.Background(), append([]string{"router"}, tc.args...))
			if tc.errText != "" {
				if code == 0 || !strings.Contains(stderr.String(), tc.errText) {
					t.Errorf("exit %d, stderr %q; want an error with %q", code, stderr, tc.errText)
				}
				return
			}
			if code != 0 || got == nil {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			if !tc.check(*got) {
				t.Errorf("config %+v", *got)
			}
			var second *router.Config
			a.runRouter = func(_ context.Context, cfg router.Config) error { second = &cfg; return nil }
			child := childArgs(*got)
			if code := a.run(context.Background(), append([]string{"router"}, child...)); code != 0 || second == nil {
				t.Fatalf("child args %q: exit %d: %s", child, code, stderr)
			}
			if !tc.check(*second) {
				t.Errorf("child config from %q: %+v", child, *second)
			}
		})
	}
}
