package main

import (
	"fmt"
	"strconv"

	"github.com/spf13/pflag"

	"weavemesh.dev/weave/router"
)

// sleeveFlags are the user-space datapath flags of weave router and weave
// launch (docs/performance.md).
type sleeveFlags struct {
	pipelines int
}

func (f *sleeveFlags) register(fs *pflag.FlagSet) {
	fs.IntVar(&f.pipelines, "sleeve-pipelines", 0, fmt.Sprintf(
		"send and receive pipelines of the sleeve, each with its own TAP queue and UDP socket, 1-%d (default: one per CPU, at most 4)",
		router.MaxSleevePipelines))
}

func (f *sleeveFlags) apply(cfg *router.Config) error {
	if f.pipelines != 0 && (f.pipelines < 1 || f.pipelines > router.MaxSleevePipelines) {
		return fmt.Errorf("--sleeve-pipelines %d: must be 1-%d", f.pipelines, router.MaxSleevePipelines)
	}
	cfg.SleevePipelines = f.pipelines
	return nil
}

// sleeveArgs are the sleeve flags of the background router.
func sleeveArgs(cfg router.Config) []string {
	if cfg.SleevePipelines == 0 {
		return nil
	}
	return []string{"--sleeve-pipelines=" + strconv.Itoa(cfg.SleevePipelines)}
}
