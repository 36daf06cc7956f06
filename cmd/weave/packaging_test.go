package main

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPackagedEnvFile: every variable of the systemd environment file sets
// a real flag of weave router, and the file as a whole is accepted.
func TestPackagedEnvFile(t *testing.T) {
	f, err := os.Open(filepath.Join("..", "..", "packaging", "systemd", "weave.env"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("not a variable: %q", line)
		}
		env[k] = strings.Trim(v, `"`)
	}
	a := newApp()
	a.getenv = func(k string) string { return env[k] }
	cmd := a.routerCmd()
	known := map[string]bool{peersEnv: true}
	for _, name := range settingNames(cmd.Flags()) {
		known[envName(name)] = true
	}
	for k := range env {
		if !known[k] {
			t.Errorf("%s is not a setting of weave router", k)
		}
	}
	peers, err := a.layerSettings(cmd, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(peers) != 3 {
		t.Errorf("peers %v", peers)
	}
}
