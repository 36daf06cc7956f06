package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"weavemesh.dev/weave/api"
	"weavemesh.dev/weave/router"
)

// Exit codes.
const (
	exitOK    = 0
	exitError = 1 // the command failed
	exitUsage = 2 // the command line was wrong
)

// app holds what the commands depend on, so tests can run the CLI in
// process against fakes.
type app struct {
	stdout, stderr io.Writer
	version        string
	getenv         func(string) string
	environ        func() []string
	now            func() time.Time

	// runRouter runs the router in the foreground (router.Run).
	runRouter func(context.Context, router.Config) error
	// executable is the binary launch starts as the background router.
	executable func() (string, error)

	// netnsDir and procDir resolve NETNS names and PIDs.
	netnsDir, procDir string

	launchTimeout time.Duration // until a launched router must be ready
	stopTimeout   time.Duration // until a stopped router must stop answering
	pollInterval  time.Duration // between API polls while waiting
	callTimeout   time.Duration // per API call made while polling

	// httpAddr and httpToken are the values of the global --http-addr
	// and --http-token flags.
	httpAddr, httpToken string
}

func newApp() *app {
	return &app{
		stdout:        os.Stdout,
		stderr:        os.Stderr,
		version:       version,
		getenv:        os.Getenv,
		environ:       os.Environ,
		now:           time.Now,
		runRouter:     router.Run,
		executable:    os.Executable,
		netnsDir:      "/var/run/netns",
		procDir:       "/proc",
		launchTimeout: 30 * time.Second,
		stopTimeout:   30 * time.Second,
		pollInterval:  100 * time.Millisecond,
		callTimeout:   3 * time.Second,
	}
}

// usageError marks a wrong command line (exit code 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// run executes the command line args and returns the exit code.
func (a *app) run(ctx context.Context, args []string) int {
	root := a.rootCmd()
	root.SetArgs(args)
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(a.stderr, "weave: %v\n", err)
	var ue usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(a.stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
		return exitUsage
	}
	return exitError
}

func (a *app) rootCmd() *cobra.Command {
	defAddr := a.getenv("WEAVE_HTTP_ADDR")
	if defAddr == "" {
		defAddr = api.DefaultAddr
	}
	root := &cobra.Command{
		Use:   "weave",
		Short: "weave connects containers on many hosts into one virtual Ethernet network",
		Long: `weave connects containers on many hosts into one virtual Ethernet network.

Run a router on every host (weave launch), point it at one or more other
hosts, then attach network namespaces to the overlay (weave attach).`,
		SilenceErrors: true,
		SilenceUsage:  true,
		CompletionOptions: cobra.CompletionOptions{
			DisableDefaultCmd: true,
		},
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unknown command %q", args[0])
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			cmd.SetOut(a.stderr)
			_ = cmd.Usage()
			return usagef("give a command")
		},
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			if _, err := api.ParseAddr(a.httpAddr); err != nil {
				return fmt.Errorf("--http-addr %w", err)
			}
			return nil
		},
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.PersistentFlags().StringVar(&a.httpAddr, "http-addr", defAddr,
		"address of the router's HTTP API: host:port, or unix:///PATH for a unix socket of mode 0600 (env WEAVE_HTTP_ADDR)")
	root.PersistentFlags().StringVar(&a.httpToken, "http-token", "",
		"the router's HTTP API token: required to bind --http-addr off loopback, then asked of every request; on loopback asked of requests that change state (env "+httpTokenEnv+", preferred: it stays out of ps)")
	root.AddCommand(
		a.routerCmd(),
		a.launchCmd(),
		a.stopCmd(),
		a.withDNSStatus(a.withIPAMStatus(a.statusCmd())),
		a.connectCmd(),
		a.forgetCmd(),
		a.attachCmd(),
		a.detachCmd(),
		a.psCmd(),
		a.reportCmd(),
		a.resetCmd(),
		a.versionCmd(),
		a.rmpeerCmd(), a.exposeCmd(), a.hideCmd(),
		a.dnsAddCmd(), a.dnsRemoveCmd(), a.dnsLookupCmd(), a.dnsArgsCmd(),
	)
	return root
}

// client returns an API client for --http-addr.
func (a *app) client() *api.Client {
	return api.NewClient(a.httpAddr).WithToken(a.token())
}

// httpTokenEnv holds the API token.
const httpTokenEnv = "WEAVE_HTTP_TOKEN"

// token is the API token from --http-token or the environment.
func (a *app) token() string {
	if a.httpToken != "" {
		return a.httpToken
	}
	return a.getenv(httpTokenEnv)
}

// argsAtLeast requires n positional arguments, explaining what is missing.
func argsAtLeast(n int, what string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) < n {
			return usagef("give %s", what)
		}
		return nil
	}
}

// argsExactly requires exactly n positional arguments.
func argsExactly(n int, what string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) != n {
			return usagef("give %s", what)
		}
		return nil
	}
}
