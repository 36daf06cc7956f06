package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Every flag of weave router and weave launch can also come from the
// environment, as WEAVE_ and the flag's name in capitals with dashes as
// underscores (--ipalloc-range: WEAVE_IPALLOC_RANGE), and from a
// configuration file (--config, or WEAVE_CONFIG). A flag on the command
// line wins over the environment, which wins over the file. The peers to
// join come from the arguments, else WEAVE_PEERS, else the file's "peers".
//
// The file holds one setting a line, "name = value", with the flag's name
// (no dashes in front); blank lines and lines starting with # are ignored.
// Repeating a list flag's line, or separating its values by commas, gives
// several values:
//
//	# /etc/weave/weave.conf
//	peers = 10.0.0.1 10.0.0.2
//	ipalloc-range = 10.32.0.0/12
//	password-file = /etc/weave/password
//	trusted-subnets = 10.0.0.0/24

const (
	envPrefix     = "WEAVE_"
	configFlag    = "config"
	configEnv     = "WEAVE_CONFIG"
	peersEnv      = "WEAVE_PEERS"
	peersSetting  = "peers"
	configAdvice  = "one setting a line: name = value, with a flag's name (see weave launch --help)"
	configMaxSize = 1 << 20
)

// notLayered are flags that never come from the environment or the file:
// the password and the API token have their own variables (WEAVE_PASSWORD,
// WEAVE_HTTP_TOKEN) and must not sit in a file that may be
// world-readable; --http-addr has WEAVE_HTTP_ADDR for every command; the
// descriptor is internal to launch.
var notLayered = map[string]bool{"password": true, "password-fd": true, configFlag: true, "help": true, "http-token": true, "http-addr": true}

// registerConfig adds --config to fs.
func registerConfig(fs *pflag.FlagSet) {
	fs.String(configFlag, "", "file of settings, one \"flag-name = value\" a line (also env "+configEnv+"); the command line wins over the environment (WEAVE_FLAG_NAME), which wins over the file")
}

// envName is the environment variable of a flag.
func envName(flag string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// layerSettings fills the flags of cmd not given on the command line from
// the environment and then the config file, and returns the peers to join.
// Errors name the variable, or the file and line.
func (a *app) layerSettings(cmd *cobra.Command, peers []string) ([]string, error) {
	fs := cmd.Flags()
	path, _ := fs.GetString(configFlag)
	if path == "" {
		path = a.getenv(configEnv)
	}
	file, err := readConfig(path, fs)
	if err != nil {
		return nil, err
	}
	var errs []string
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed || notLayered[f.Name] || f.Hidden {
			return
		}
		if v := a.getenv(envName(f.Name)); v != "" {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Sprintf("%s=%q: %v", envName(f.Name), v, err))
			}
			return
		}
		for _, v := range file[f.Name] {
			if err := fs.Set(f.Name, v.value); err != nil {
				errs = append(errs, fmt.Sprintf("%s:%d: %s = %q: %v", path, v.line, f.Name, v.value, err))
			}
		}
	})
	if len(errs) > 0 {
		return nil, usagef("%s", strings.Join(errs, "; "))
	}
	if len(peers) > 0 {
		return peers, nil
	}
	if v := a.getenv(peersEnv); v != "" {
		return splitPeers(v), nil
	}
	for _, v := range file[peersSetting] {
		peers = append(peers, splitPeers(v.value)...)
	}
	return peers, nil
}

func splitPeers(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' })
}

type setting struct {
	value string
	line  int
}

// readConfig parses the config file at path (none if empty) against the
// flags it may set.
func readConfig(path string, fs *pflag.FlagSet) (map[string][]setting, error) {
	out := map[string][]setting{}
	if path == "" {
		return out, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--config %s: %w", path, err)
	}
	if len(b) > configMaxSize {
		return nil, fmt.Errorf("--config %s: %d bytes; a config file is at most %d", path, len(b), configMaxSize)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, value, ok := strings.Cut(line, "=")
		name, value = strings.TrimSpace(name), strings.TrimSpace(value)
		if !ok || name == "" {
			return nil, fmt.Errorf("--config %s:%d: %q: want %s", path, n, line, configAdvice)
		}
		name = strings.TrimLeft(name, "-")
		f := fs.Lookup(name)
		switch {
		case name == peersSetting:
		case f == nil || f.Hidden:
			return nil, fmt.Errorf("--config %s:%d: %q is not a setting of weave launch; known: %s", path, n, name, strings.Join(settingNames(fs), ", "))
		case notLayered[name]:
			return nil, fmt.Errorf("--config %s:%d: %s cannot be set in a file; use password-file", path, n, name)
		}
		out[name] = append(out[name], setting{value, n})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("--config %s: %w", path, err)
	}
	return out, nil
}

// settingNames lists what a config file may set.
func settingNames(fs *pflag.FlagSet) []string {
	names := []string{peersSetting}
	fs.VisitAll(func(f *pflag.Flag) {
		if !f.Hidden && !notLayered[f.Name] {
			names = append(names, f.Name)
		}
	})
	slices.Sort(names)
	return names
}
