package e2e

import (
	"fmt"
	"log/slog"
	"os"
	"testing"

	"weavemesh.dev/weave/test/harness"
)

// weaveBin is the weave binary built once for the whole run; buildErr says
// why there is none.
var (
	weaveBin string
	buildErr error
)

func TestMain(m *testing.M) {
	if os.Geteuid() == 0 {
		if rep, err := harness.Sweep(slog.Default()); err != nil {
			fmt.Fprintln(os.Stderr, "e2e: sweeping leftovers of earlier runs:", err)
		} else if !rep.Empty() {
			fmt.Fprintf(os.Stderr, "e2e: removed leftovers of earlier runs: %+v\n", rep)
		}
		buildErr = harness.CheckTools()
		if buildErr == nil {
			weaveBin, buildErr = harness.BuildWeave()
		}
		if buildErr == nil {
			_, buildErr = harness.BuildTool()
		}
	} else {
		fmt.Fprintln(os.Stderr, "e2e: not root: every test will skip (they need network namespaces)")
	}
	code := m.Run()
	if err := harness.RemoveBuilds(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: remove builds:", err)
	}
	os.Exit(code)
}
