package main

import (
	"fmt"
	"strconv"

	"github.com/spf13/pflag"

	"weavemesh.dev/weave/router"
	"weavemesh.dev/weave/sleeve/secure"
)

// sleeveFlags are the user-space datapath flags of weave router and weave
// launch (docs/performance.md).
type sleeveFlags struct {
	pipelines int
	cipher    string
}

func (f *sleeveFlags) register(fs *pflag.FlagSet) {
	fs.IntVar(&f.pipelines, "sleeve-pipelines", 0, fmt.Sprintf(
		"send and receive pipelines of the sleeve, each with its own TAP queue and UDP socket, 1-%d (default: one per CPU, at most 4)",
		router.MaxSleevePipelines))
	fs.StringVar(&f.cipher, "sleeve-cipher", secure.CipherAuto, "cipher of encrypted sessions this peer starts: auto (AES-256-GCM where the CPU has AES instructions, "+
		"else ChaCha20-Poly1305), aes-256-gcm or chacha20-poly1305; the peer that starts a session picks")
}

func (f *sleeveFlags) apply(cfg *router.Config) error {
	if f.pipelines != 0 && (f.pipelines < 1 || f.pipelines > router.MaxSleevePipelines) {
		return fmt.Errorf("--sleeve-pipelines %d: must be 1-%d", f.pipelines, router.MaxSleevePipelines)
	}
	if _, err := secure.ParseCipher(f.cipher); err != nil {
		return fmt.Errorf("--sleeve-cipher %q: want %s, %s or %s", f.cipher, secure.CipherAuto, secure.CipherNameAESGCM, secure.CipherNameChaCha20Poly)
	}
	cfg.SleevePipelines = f.pipelines
	if f.cipher != secure.CipherAuto {
		cfg.SleeveCipher = f.cipher
	}
	return nil
}

// sleeveArgs are the sleeve flags of the background router.
func sleeveArgs(cfg router.Config) []string {
	var out []string
	if cfg.SleevePipelines != 0 {
		out = append(out, "--sleeve-pipelines="+strconv.Itoa(cfg.SleevePipelines))
	}
	if cfg.SleeveCipher != "" {
		out = append(out, "--sleeve-cipher="+cfg.SleeveCipher)
	}
	return out
}
