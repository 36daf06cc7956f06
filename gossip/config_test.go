package gossip

import (
	"strings"
	"testing"

	"weavemesh.dev/weave/peer"
)

func TestConfigValidation(t *testing.T) {
	good := Config{Name: 0x020000000001, Nickname: "a", DataPort: 6784, ProtoMin: 1, ProtoMax: 1, DataDir: "/tmp/x"}
	tests := []struct {
		name string
		mod  func(*Config)
		want string // "" means valid
	}{
		{"good", func(*Config) {}, ""},
		{"no name", func(c *Config) { c.Name = peer.None }, "Config.Name"},
		{"broadcast name", func(c *Config) { c.Name = peer.Broadcast }, "Config.Name"},
		{"no nickname", func(c *Config) { c.Nickname = "" }, "Config.Nickname"},
		{"nickname control", func(c *Config) { c.Nickname = "a\x1b[2J" }, "Config.Nickname"},
		{"nickname long", func(c *Config) { c.Nickname = strings.Repeat("a", MaxNicknameLen+1) }, "Config.Nickname"},
		{"version long", func(c *Config) { c.Version = strings.Repeat("a", MaxVersionLen+1) }, "Config.Version"},
		{"bind host", func(c *Config) { c.BindAddr = "localhost" }, "Config.BindAddr"},
		{"port", func(c *Config) { c.Port = 70000 }, "Config.Port"},
		{"advertise port", func(c *Config) { c.AdvertisePort = -1 }, "Config.AdvertisePort"},
		{"data port", func(c *Config) { c.DataPort = 0 }, "Config.DataPort"},
		{"proto", func(c *Config) { c.ProtoMin = 0 }, "Config.ProtoMin"},
		{"proto order", func(c *Config) { c.ProtoMin, c.ProtoMax = 3, 2 }, "Config.ProtoMin"},
		{"data dir", func(c *Config) { c.DataDir = "" }, "Config.DataDir"},
		{"key", func(c *Config) { c.SecretKey = make([]byte, 15) }, "Config.SecretKey"},
		{"key 32", func(c *Config) { c.SecretKey = make([]byte, 32) }, ""},
		{"label", func(c *Config) { c.Label = strings.Repeat("l", 256) }, "Config.Label"},
		{"rejoin", func(c *Config) { c.RejoinInterval = -1 }, "Config.RejoinInterval"},
		{"advertise ip", func(c *Config) { c.AdvertiseAddr = "192.0.2.1" }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good
			tt.mod(&c)
			got, err := c.withDefaults()
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if got.Port != DefaultPort || got.BindAddr != DefaultBindAddr || got.RejoinInterval != DefaultRejoinInterval || got.Logger == nil {
					t.Fatalf("defaults not filled: %+v", got)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one naming %s", err, tt.want)
			}
		})
	}
}
