// Command turnout is a blue-green deployment switcher: one daemon in front of
// two upstream pools, and the commands that drive it. See README.md.
package main

import (
	"fmt"
	"os"
	"runtime/debug"

	"github.com/alecthomas/kong"
)

// Set by the linker: -ldflags "-X main.version=… -X main.revision=…".
var (
	version  = "dev"
	revision = "unknown"
)

// Exit codes, for scripts (README.md: commands; docs/control-api.md maps
// the API's error codes to them).
const (
	exitOK          = 0
	exitFailed      = 1 // the switch failed; the old pool keeps traffic
	exitUsage       = 2 // usage or config error
	exitUnreachable = 3 // the daemon cannot be reached
	exitConflict    = 4 // another switch in progress, or --expect-active did not match
)

// exitError is an error with the exit code it deserves.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func exitWith(code int, format string, args ...any) error {
	return &exitError{code: code, err: fmt.Errorf(format, args...)}
}

func main() {
	if revision == "unknown" {
		revision = buildRevision()
	}
	os.Exit(run(os.Args[1:]))
}

// buildRevision is the VCS revision go build stamped into the binary, or
// "unknown" (go run does not stamp it).
func buildRevision() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, kv := range bi.Settings {
			if kv.Key == "vcs.revision" && kv.Value != "" {
				return kv.Value[:min(12, len(kv.Value))]
			}
		}
	}
	return "unknown"
}

func run(args []string) int {
	var cli CLI
	parser, err := kong.New(&cli,
		kong.Name("turnout"),
		kong.Description("Blue-green deployment switcher: holds two upstream pools, switches traffic between them with health-checked warm-up, and never answers 502 because an app server restarts."),
		kong.UsageOnError(),
		kong.ConfigureHelp(kong.HelpOptions{Compact: true}),
		kong.Vars{"version": version + " (" + revision + ")"},
		kong.Exit(func(code int) { panic(kongExit(code)) }),
	)
	if err != nil {
		fmt.Fprintln(os.Stderr, "turnout:", err)
		return exitUsage
	}
	return parse(parser, &cli, args)
}

// kongExit is how kong's --help and --version end the program.
type kongExit int

func parse(parser *kong.Kong, cli *CLI, args []string) (code int) {
	defer func() {
		if r := recover(); r != nil {
			c, ok := r.(kongExit)
			if !ok {
				panic(r)
			}
			code = int(c)
		}
	}()
	ctx, err := parser.Parse(args)
	if err != nil {
		fmt.Fprintf(os.Stderr, "turnout: %v (see 'turnout --help')\n", err)
		return exitUsage
	}
	if err := ctx.Run(cli); err != nil {
		ee := asExit(err)
		fmt.Fprintln(os.Stderr, "turnout:", ee)
		return ee.code
	}
	return exitOK
}
