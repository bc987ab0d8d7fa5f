package control

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/turnout/turnout/api"
	"github.com/turnout/turnout/state"
)

// Client talks to a running daemon's control API, over its unix socket or
// over TCP. Its methods return an *Error for an error answer and an
// *UnreachableError when the daemon cannot be reached; a streamed switch
// that breaks off before its result returns a *LostError.
type Client struct {
	addr  string // as the caller gave it: a socket path or a URL
	base  string // URL prefix of every request
	token string // bearer token, sent over TCP only
	http  *http.Client
}

// NewClient returns a client for addr: an address starting with http:// or
// https:// is the daemon's `control_listen`, where token is sent as a
// bearer token; anything else is the path of its unix socket `control`,
// where token is not needed and not sent. It fails when addr is not a
// usable URL.
func NewClient(addr, token string) (*Client, error) {
	if strings.HasPrefix(addr, "http://") || strings.HasPrefix(addr, "https://") {
		base := strings.TrimSuffix(addr, "/")
		if _, err := url.Parse(base + "/v1/status"); err != nil {
			return nil, fmt.Errorf("control address %s is not usable: %w", addr, err)
		}
		return &Client{addr: addr, base: base, token: token, http: &http.Client{}}, nil
	}
	return &Client{addr: addr, base: "http://turnout", http: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", addr)
		},
	}}}, nil
}

// Addr is the address the client was made for, as given to NewClient.
func (c *Client) Addr() string { return c.addr }

// Close closes the client's idle connections to the daemon.
func (c *Client) Close() { c.http.CloseIdleConnections() }

// Error is an error answer of the daemon.
type Error struct {
	Status  int    // the HTTP status
	Code    string // one of the api.Code constants; empty when the answer was not the API's
	Message string // what was wrong and what to do, as the daemon said it
}

func (e *Error) Error() string { return e.Message }

// UnreachableError means no answer came: the socket is missing or refuses,
// the address does not answer, or the connection broke before an answer.
// Nothing was asked of the daemon, or it did not get to answer.
type UnreachableError struct {
	Addr string
	Err  error // why, without net/http's URL prefix
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("cannot reach the turnout daemon at %s (%v)", e.Addr, e.Err)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// LostError is a streamed switch whose answer broke off after it began and
// before its result: the daemon stopped, or the connection dropped. The
// switch may have gone on or not; the events heard say how far it got (an
// event with an ID means it was persisted under that history id).
type LostError struct {
	Addr string
	Err  error // why the stream ended; io.ErrUnexpectedEOF when it just ended
}

func (e *LostError) Error() string {
	return fmt.Sprintf("lost the daemon at %s during the switch (%v)", e.Addr, e.Err)
}

func (e *LostError) Unwrap() error { return e.Err }

// ndjsonMax bounds one line of a streamed switch.
const ndjsonMax = 16 << 20

// Status reads GET /v1/status.
func (c *Client) Status(ctx context.Context) (api.Status, error) {
	var st api.Status
	err := c.getJSON(ctx, "/v1/status", &st)
	return st, err
}

// StatusJSON reads GET /v1/status as the daemon wrote it.
func (c *Client) StatusJSON(ctx context.Context) ([]byte, error) {
	resp, err := c.do(ctx, http.MethodGet, "/v1/status", nil, "")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, c.readError("/v1/status", err)
	}
	return data, nil
}

// History reads the switch history, newest first: limit records, or all
// of them for 0.
func (c *Client) History(ctx context.Context, limit int) ([]state.Record, error) {
	var recs []state.Record
	err := c.getJSON(ctx, "/v1/history?limit="+strconv.Itoa(limit), &recs)
	return recs, err
}

// Switch asks the daemon to switch (POST /v1/switch). Unless body.NoWait,
// the answer is streamed: events, when set, hears each step as it happens,
// and the result is the stream's last line, an aborted switch included
// (Result "aborted"). With body.NoWait the result comes once the daemon
// accepted the switch (Result "accepted" or "already_active"). Ending ctx
// closes the connection, which aborts a switch still warming. A stream that
// breaks before its result is a *LostError.
func (c *Client) Switch(ctx context.Context, body api.SwitchBody, events func(api.Event)) (api.SwitchResult, error) {
	accept := ndjson
	if body.NoWait {
		accept = ""
	}
	resp, err := c.do(ctx, http.MethodPost, "/v1/switch", body, accept)
	if err != nil {
		return api.SwitchResult{}, err
	}
	defer resp.Body.Close()
	var res api.SwitchResult
	if body.NoWait {
		if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
			return res, c.readError("/v1/switch", err)
		}
		return res, nil
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), ndjsonMax)
	for sc.Scan() {
		var e api.Event
		err := json.Unmarshal(sc.Bytes(), &e)
		if err == nil && e.Type == "result" {
			err = json.Unmarshal(sc.Bytes(), &res)
		}
		if err != nil {
			return res, fmt.Errorf("the daemon at %s sent a line that is not JSON (%v): is it the same turnout version?", c.addr, err)
		}
		if e.Type == "result" {
			return res, nil
		}
		if events != nil {
			events(e)
		}
	}
	err = sc.Err()
	if err == nil {
		err = io.ErrUnexpectedEOF
	}
	return res, &LostError{Addr: c.addr, Err: unwrapURLError(err)}
}

// Maintenance turns maintenance mode on, with message on the page, or off.
func (c *Client) Maintenance(ctx context.Context, on bool, message string) error {
	return c.post(ctx, "/v1/maintenance", api.MaintenanceBody{On: &on, Message: message}, nil)
}

// Pause holds every new request for at most max; message says why.
func (c *Client) Pause(ctx context.Context, max time.Duration, message string) error {
	return c.post(ctx, "/v1/pause", api.PauseBody{Max: max.String(), Message: message}, nil)
}

// Resume ends a pause. Resuming when not paused is no error: the answer
// says Resumed false.
func (c *Client) Resume(ctx context.Context) (api.ResumeResult, error) {
	var res api.ResumeResult
	err := c.post(ctx, "/v1/resume", struct{}{}, &res)
	return res, err
}

// Reload has the daemon read its config file again; an invalid file is an
// *Error with code api.CodeInvalidConfig, and the running config stays.
func (c *Client) Reload(ctx context.Context) (api.ReloadResult, error) {
	var res api.ReloadResult
	err := c.post(ctx, "/v1/reload", struct{}{}, &res)
	return res, err
}

// post sends body to path and decodes the answer into out, when set.
func (c *Client) post(ctx context.Context, path string, body, out any) error {
	resp, err := c.do(ctx, http.MethodPost, path, body, "")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return c.readError(path, err)
	}
	return nil
}

// getJSON GETs path and decodes the answer into out.
func (c *Client) getJSON(ctx context.Context, path string, out any) error {
	resp, err := c.do(ctx, http.MethodGet, path, nil, "")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return c.readError(path, err)
	}
	return nil
}

func (c *Client) readError(path string, err error) error {
	return fmt.Errorf("read the answer of %s from %s: %w", path, c.addr, err)
}

// do sends a request with body (JSON-encoded unless nil) and returns the
// response when its status is 2xx; otherwise an *Error, or an
// *UnreachableError when no answer came.
func (c *Client) do(ctx context.Context, method, path string, body any, accept string) (*http.Response, error) {
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
		return nil, fmt.Errorf("control address %s is not usable: %w", c.addr, err)
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
		return nil, &UnreachableError{Addr: c.addr, Err: unwrapURLError(err)}
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
	return nil, &Error{Status: resp.StatusCode, Code: ae.Code, Message: ae.Error}
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
