package main

import (
	"testing"

	"weavemesh.dev/weave/router"
)

func TestPluginRouterFlags(t *testing.T) {
	testRouterFlags(t, pluginArgs, []routerFlagCase{
		{name: "default", check: func(c router.Config) bool { return c.PluginSocket == "" && !c.NoPlugin }},
		{name: "off", args: []string{"--no-plugin"}, check: func(c router.Config) bool { return c.PluginSocket == "" && c.NoPlugin }},
		{name: "socket", args: []string{"--plugin-socket", "/tmp/x/p.sock"},
			check: func(c router.Config) bool { return c.PluginSocket == "/tmp/x/p.sock" && !c.NoPlugin }},
		{name: "both", args: []string{"--plugin-socket", "/tmp/p.sock", "--no-plugin"}, errText: "contradict"},
	})
}
