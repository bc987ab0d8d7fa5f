package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/pelletier/go-toml/v2"
	"github.com/turnout/turnout/api"
	"github.com/turnout/turnout/control"
)

// defaultControl is the control socket when neither --control nor the
// config file names one.
const defaultControl = "/run/turnout/control.sock"

// controlAddr resolves the daemon's control address: --control (or
// TURNOUT_CONTROL), else the config file's `control`, else the default.
// Only the `control` key is read, leniently, so that a config the CLI cannot
// fully load (a token's environment variable unset here, say) still names
// the socket.
func (c *CLI) controlAddr() string {
	if c.Control != "" {
		return c.Control
	}
	if data, err := os.ReadFile(c.Config); err == nil {
		var partial struct {
			Control string `toml:"control"`
		}
		if toml.Unmarshal(data, &partial) == nil && partial.Control != "" {
			return partial.Control
		}
	}
	return defaultControl
}

// client returns a client of the daemon's control API (docs/control-api.md)
// at the resolved address, with the bearer token TURNOUT_TOKEN for TCP.
func (c *CLI) client() (*control.Client, error) {
	client, err := control.NewClient(c.controlAddr(), os.Getenv("TURNOUT_TOKEN"))
	if err != nil {
		return nil, exitWith(exitUsage, "%w (pass --control with a socket path or an http:// URL)", err)
	}
	return client, nil
}

// asExit gives err, as a command returned it, the exit code it deserves:
// an error answer of the daemon the code's (exitCodeFor), a daemon that
// cannot be reached exit 3 with what to do, any other error exit 1.
func asExit(err error) *exitError {
	var (
		ee *exitError
		ae *control.Error
		ue *control.UnreachableError
	)
	switch {
	case errors.As(err, &ee):
		return &exitError{code: ee.code, err: err}
	case errors.As(err, &ae):
		return &exitError{code: exitCodeFor(ae.Code), err: err}
	case errors.As(err, &ue):
		return &exitError{code: exitUnreachable, err: fmt.Errorf("%w: start it with `turnout serve`, or point --control at its socket", err)}
	}
	return &exitError{code: exitFailed, err: err}
}

// exitCodeFor maps the code of an error answer to the CLI's exit code
// (docs/control-api.md).
func exitCodeFor(code string) int {
	switch code {
	case api.CodeConflict:
		return exitConflict
	case api.CodePinned, api.CodeBadRequest, api.CodeUnauthorized, api.CodeTooLarge, api.CodeInvalidConfig:
		return exitUsage
	}
	return exitFailed
}

// isTerminal reports whether f is a terminal (a character device).
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
