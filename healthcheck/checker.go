package healthcheck

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/turnout/turnout/config"
)

// maxBody is how much of a response body the http check reads.
const maxBody = 64 << 10

// Checker runs one health check of one server. Check returns nil on a pass
// and a short error (such as "status 503, want 200-399") on a failure.
type Checker interface {
	Check(ctx context.Context) error
}

// NewChecker returns the checker for h.Type ("http", the default, or "tcp")
// on server s. Each Check is bounded by h.Timeout (1s when zero). With
// h.Port != 0 a tcp server is checked on that port of its host; unix socket
// servers are always checked on their socket. The http check sends Host h.Host,
// by default the server's address as written in the config (served port, even
// with h.Port), or "localhost" for a unix socket.
func NewChecker(s config.Server, h config.Health) Checker {
	timeout := h.Timeout.D()
	if timeout <= 0 {
		timeout = time.Second
	}
	network, address := checkAddress(s, h.Port)
	switch h.Type {
	case "tcp":
		return &tcpChecker{network: network, address: address, timeout: timeout}
	case "", "http":
		return newHTTPChecker(s, h, network, address, timeout)
	}
	return failChecker{fmt.Errorf("unknown health check type %q; use \"http\" or \"tcp\"", h.Type)}
}

// checkAddress returns where the checks of s connect to.
func checkAddress(s config.Server, port int) (network, address string) {
	if s.Network == "unix" {
		return "unix", s.Address
	}
	if port == 0 {
		return "tcp", s.Address
	}
	host, _, err := net.SplitHostPort(s.Address)
	if err != nil {
		host = s.Address
	}
	return "tcp", net.JoinHostPort(host, strconv.Itoa(port))
}

// failChecker fails every check with a configuration error.
type failChecker struct{ err error }

func (c failChecker) Check(context.Context) error { return c.err }

// tcpChecker passes when a connection can be opened.
type tcpChecker struct {
	network, address string
	timeout          time.Duration
	dialer           net.Dialer
}

func (c *tcpChecker) Check(parent context.Context) error {
	ctx, cancel := context.WithTimeout(parent, c.timeout)
	defer cancel()
	conn, err := c.dialer.DialContext(ctx, c.network, c.address)
	if err != nil {
		return describe(parent, ctx, c.timeout, err)
	}
	return conn.Close()
}

// httpChecker passes when GET path answers a status in expect and, when
// body is set, the first maxBody bytes of the response contain it.
type httpChecker struct {
	client    *http.Client
	transport *http.Transport
	url       string
	host      string
	expect    config.StatusRanges
	body      []byte
	timeout   time.Duration
}

func newHTTPChecker(s config.Server, h config.Health, network, address string, timeout time.Duration) *httpChecker {
	host := h.Host
	if host == "" {
		host = s.Address
		if s.Network == "unix" {
			host = "localhost"
		}
	}
	urlHost := address
	if network == "unix" {
		urlHost = "localhost"
	}
	path := h.Path
	if path == "" {
		path = "/healthz"
	}
	expect := h.ExpectStatus
	if len(expect) == 0 {
		expect = config.StatusRanges{{Lo: 200, Hi: 399}}
	}
	var dialer net.Dialer
	// One transport per monitor keeps a single keep-alive connection, so a
	// check usually costs one request and no handshake.
	t := &http.Transport{
		Proxy: nil, // never the environment's proxy: checks go to the server itself
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, network, address)
		},
		MaxIdleConns:        1,
		MaxIdleConnsPerHost: 1,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	return &httpChecker{
		client: &http.Client{
			Transport: t,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		},
		transport: t,
		url:       "http://" + urlHost + path,
		host:      host,
		expect:    expect,
		body:      []byte(h.ExpectBody),
		timeout:   timeout,
	}
}

func (c *httpChecker) Check(parent context.Context) error {
	ctx, cancel := context.WithTimeout(parent, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url, nil)
	if err != nil {
		return fmt.Errorf("bad health check path: %w", err)
	}
	req.Host = c.host
	req.Header.Set("User-Agent", "turnout-healthcheck")
	resp, err := c.client.Do(req)
	if err != nil {
		return describe(parent, ctx, c.timeout, err)
	}
	defer resp.Body.Close()
	// Reading the body (up to maxBody) lets the connection be reused.
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if !c.expect.Contains(resp.StatusCode) {
		return fmt.Errorf("status %d, want %s", resp.StatusCode, formatRanges(c.expect))
	}
	if len(c.body) > 0 {
		if err != nil {
			return fmt.Errorf("read body: %w", describe(parent, ctx, c.timeout, err))
		}
		if !bytes.Contains(body, c.body) {
			return fmt.Errorf("body lacks %q", c.body)
		}
	}
	return nil
}

// CloseIdleConnections closes the kept-alive connection, if any.
func (c *httpChecker) CloseIdleConnections() { c.transport.CloseIdleConnections() }

// closeIdle releases a checker's idle connections, for checkers that keep some.
func closeIdle(c Checker) {
	if ic, ok := c.(interface{ CloseIdleConnections() }); ok {
		ic.CloseIdleConnections()
	}
}

// describe shortens a check error to what an operator needs next to the
// server's address: "timeout after 1s", "connect: connection refused".
func describe(parent, ctx context.Context, timeout time.Duration, err error) error {
	if parent.Err() == nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("timeout after %s", timeout)
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Err != nil {
		return opErr.Err
	}
	var urlErr *url.Error
	if errors.As(err, &urlErr) {
		return urlErr.Err
	}
	return err
}

// formatRanges writes ranges as in the config: "200-399" or "200,204".
func formatRanges(r config.StatusRanges) string {
	parts := make([]string, len(r))
	for i, x := range r {
		if x.Lo == x.Hi {
			parts[i] = strconv.Itoa(x.Lo)
		} else {
			parts[i] = fmt.Sprintf("%d-%d", x.Lo, x.Hi)
		}
	}
	return strings.Join(parts, ",")
}
