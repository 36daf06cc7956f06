// Command weave is the single weave binary: it runs the peer router in the
// foreground (weave router) or background (weave launch), and controls a
// running router through its HTTP API (status, connect, attach, ...).
// docs/cli.md describes every verb.
package main

import (
	"context"
	"os"
)

// version is set at build time: go build -ldflags "-X main.version=1.2.3".
var version = "dev"

func main() {
	os.Exit(newApp().run(context.Background(), os.Args[1:]))
}
