package chaos

import (
	"fmt"
	"log/slog"
	"os"
	"testing"

	"weavemesh.dev/weave/test/harness"
)

// weaveBin and toolBin are built once for the whole run; buildErr says why
// there are none.
var (
	weaveBin, toolBin string
	buildErr          error
)

func TestMain(m *testing.M) {
	if os.Geteuid() == 0 {
		if rep, err := harness.Sweep(slog.Default()); err != nil {
			fmt.Fprintln(os.Stderr, "chaos: sweeping leftovers of earlier runs:", err)
		} else if !rep.Empty() {
			fmt.Fprintf(os.Stderr, "chaos: removed leftovers of earlier runs: %+v\n", rep)
		}
		weaveBin, buildErr = harness.BuildWeave()
		if buildErr == nil {
			toolBin, buildErr = harness.BuildTool()
		}
	} else {
		fmt.Fprintln(os.Stderr, "chaos: not root: every test will skip (they need network namespaces)")
	}
	code := m.Run()
	if err := harness.RemoveBuilds(); err != nil {
		fmt.Fprintln(os.Stderr, "chaos: remove builds:", err)
	}
	os.Exit(code)
}
