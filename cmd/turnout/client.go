package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/pelletier/go-toml/v2"
	"github.com/turnout/turnout/api"
)

// defaultControl is the control socket when neither --control nor the
// config file names one.
const defaultControl = "/run/turnout/control.sock"

// controlClient talks to a running daemon's control API (docs/control-api.md).
type controlClient struct {
	addr  string // as the user gave it: a socket path or a URL
	base  string // URL prefix of every request
	token string // bearer token for TCP, from TURNOUT_TOKEN
	http  *http.Client
}

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

// client returns a client for the resolved control address: an address
// starting with http:// or https:// is TCP, anything else a unix socket.
func (c *CLI) client() *controlClient {
	addr := c.controlAddr()
	if strings.HasPrefix(addr, "http://") || strings.HasPrefix(addr, "https://") {
		return &controlClient{addr: addr, base: strings.TrimSuffix(addr, "/"), token: os.Getenv("TURNOUT_TOKEN"), http: &http.Client{}}
	}
	return &controlClient{addr: addr, base: "http://turnout", http: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", addr)
		},
	}}}
}

// do sends a request with body (JSON-encoded unless nil) and returns the
// response when its status is 2xx. A daemon that cannot be reached is exit
// 3; an error answer becomes an exitError with the matching exit code.
func (c *controlClient) do(ctx context.Context, method, path string, body any, accept string) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, exitWith(exitUsage, "control address %s is not usable: %w (pass --control with a socket path or an http:// URL)", c.addr, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, exitWith(exitUnreachable, "cannot reach the turnout daemon at %s (%v): start it with `turnout serve`, or point --control at its socket", c.addr, unwrapURLError(err))
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var ae api.ErrorBody
	if json.Unmarshal(data, &ae) != nil || ae.Error == "" {
		ae.Error = fmt.Sprintf("the daemon at %s answered %s: %s", c.addr, resp.Status, strings.TrimSpace(string(data)))
	}
	return nil, &exitError{code: exitCodeFor(ae.Code), err: errors.New(ae.Error)}
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

// getJSON GETs path and decodes the answer into out.
func (c *controlClient) getJSON(ctx context.Context, path string, out any) error {
	resp, err := c.do(ctx, http.MethodGet, path, nil, "")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("read the answer of %s from %s: %w", path, c.addr, err)
	}
	return nil
}

// getRaw GETs path and copies the answer to w unchanged.
func (c *controlClient) getRaw(ctx context.Context, path string, w io.Writer) error {
	resp, err := c.do(ctx, http.MethodGet, path, nil, "")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(w, resp.Body); err != nil {
		return fmt.Errorf("read the answer of %s from %s: %w", path, c.addr, err)
	}
	return nil
}

// unwrapURLError drops net/http's "Get \"http://turnout/…\":" prefix, which
// names a URL the user never typed.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// isTerminal reports whether f is a terminal (a character device).
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
