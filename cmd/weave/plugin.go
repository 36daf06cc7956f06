package main

import (
	"fmt"
	"path/filepath"

	"github.com/spf13/pflag"

	"weavemesh.dev/weave/plugin/docker"
	"weavemesh.dev/weave/router"
)

// pluginFlags are the Docker plugin flags of weave router and weave launch.
type pluginFlags struct {
	socket string
	off    bool
}

func (f *pluginFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.socket, "plugin-socket", "",
		"serve the Docker network and IPAM plugin "+docker.Name+" on this unix socket (default "+docker.DefaultSocket+
			" when "+filepath.Dir(docker.DefaultSocket)+" exists)")
	fs.BoolVar(&f.off, "no-plugin", false, "do not serve the Docker plugin")
}

// apply validates the flags into cfg.
func (f *pluginFlags) apply(cfg *router.Config) error {
	if f.off && f.socket != "" {
		return fmt.Errorf("--plugin-socket and --no-plugin contradict each other; give one")
	}
	cfg.NoPlugin = f.off
	if f.socket != "" {
		abs, err := filepath.Abs(f.socket)
		if err != nil {
			return fmt.Errorf("--plugin-socket %q: %w", f.socket, err)
		}
		cfg.PluginSocket = abs
	}
	return nil
}

// pluginArgs are the plugin flags of the background router for cfg.
func pluginArgs(cfg router.Config) []string {
	switch {
	case cfg.NoPlugin:
		return []string{"--no-plugin"}
	case cfg.PluginSocket != "":
		return []string{"--plugin-socket=" + cfg.PluginSocket}
	}
	return nil
}
