package main

import (
	"context"
	"strings"
	"testing"

	"weavemesh.dev/weave/router"
)

func TestPluginRouterFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		check   func(router.Config) bool
		errText string
	}{
		{name: "default", check: func(c router.Config) bool { return c.PluginSocket == "" && !c.NoPlugin }},
		{name: "off", args: []string{"--no-plugin"}, check: func(c router.Config) bool { return c.PluginSocket == "" && c.NoPlugin }},
		{name: "socket", args: []string{"--plugin-socket", "/tmp/x/p.sock"},
			check: func(c router.Config) bool { return c.PluginSocket == "/tmp/x/p.sock" && !c.NoPlugin }},
		{name: "both", args: []string{"--plugin-socket", "/tmp/p.sock", "--no-plugin"}, errText: "contradict"},
	}
	for _, tc := range tests {
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
			// The background router of weave launch gets the same.
			var second *router.Config
			a.runRouter = func(_ context.Context, cfg router.Config) error { second = &cfg; return nil }
			child := pluginArgs(*got)
			if code := a.run(context.Background(), append([]string{"router"}, child...)); code != 0 || second == nil {
				t.Fatalf("child args %q: exit %d: %s", child, code, stderr)
			}
			if !tc.check(*second) {
				t.Errorf("child config from %q: %+v", child, *second)
			}
		})
	}
}
