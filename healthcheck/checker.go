package healthcheck

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/turnout/turnout/config"
	"github.com/turnout/turnout/internal/deadline"
	"github.com/turnout/turnout/upstream"
)

// maxBody is how much of a response body the http check reads; a longer body
// (or one of unknown length) is not read to its end and its connection is
// closed instead of kept alive.
const maxBody = 64 << 10

// Checker runs one health check of one server. Check returns nil on a pass
// and a short error (such as "status 503, want 200-399") on a failure. A
// cancelled ctx ends a check in flight promptly. Calls must not overlap.
type Checker interface {
	Check(ctx context.Context) error
}

// NewChecker returns the checker for h.Type ("http", the default, or "tcp")
// on server s. Each Check is bounded by h.Timeout (1s when zero). With
// h.Port != 0 a tcp server is checked on that port of its host; unix socket
// servers are always checked on their socket. The http check sends Host h.Host,
// by default the server's address as written in the config (served port, even
// with h.Port), or "localhost" for a unix socket; it keeps one connection
// alive between checks and never follows redirects.
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
}

func (c *tcpChecker) Check(ctx context.Context) error {
	d := net.Dialer{Deadline: time.Now().Add(c.timeout)}
	conn, err := d.DialContext(ctx, c.network, c.address)
	if err != nil {
		return describe(ctx, c.timeout, err)
	}
	return conn.Close()
}

// httpChecker passes when GET path answers a status in expect and, when
// body is set, the first maxBody bytes of the response contain it.
//
// It speaks just enough HTTP/1.1 for a check over one kept-alive net.Conn:
// a check is one write of the pre-encoded request and one read of the
// answer under a single deadline, with no goroutine, timer or allocation of
// its own in the common case, which keeps a thousand checks a second cheap.
// The answer's head is read as the proxy reads the app's: by
// upstream.ReadResponse.
type httpChecker struct {
	network, address string
	request          []byte // the whole GET request, encoded once
	host             string // its Host header
	expect           config.StatusRanges
	body             []byte
	timeout          time.Duration
	abortFn          func()        // c.abort, bound once
	aborted          chan struct{} // buffered 1: abort has finished

	// Check and release, which never overlap, own these.
	watched   context.Context // the context abort is registered on
	stopWatch func() bool     // unregisters abort from watched
	src       headLimit       // what br reads: the connection
	br        *bufio.Reader
	get       *http.Request // what ReadResponse is told the answer answers
	reply     upstream.Reply
	known     io.LimitedReader // a body of known length, in br
	buf       []byte           // the last body read, reused

	// mu guards conn against abort, which runs on another goroutine; only
	// Check and release set it.
	mu   sync.Mutex
	conn net.Conn // the kept-alive connection; nil before the first check or after a failure
}

func newHTTPChecker(s config.Server, h config.Health, network, address string, timeout time.Duration) Checker {
	host := h.Host
	if host == "" {
		host = s.Address
		if s.Network == "unix" {
			host = "localhost"
		}
	}
	path := h.Path
	if path == "" {
		path = "/healthz"
	}
	u, err := url.Parse("http://localhost" + path)
	if err != nil || !strings.HasPrefix(path, "/") {
		return failChecker{fmt.Errorf("bad health check path %q: write an absolute path such as /healthz", path)}
	}
	if strings.ContainsFunc(host, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return failChecker{fmt.Errorf("bad health check host %q: write a host name without spaces or control characters", host)}
	}
	expect := h.ExpectStatus
	if len(expect) == 0 {
		expect = config.StatusRanges{{Lo: 200, Hi: 399}}
	}
	c := &httpChecker{
		network: network,
		address: address,
		request: []byte("GET " + u.RequestURI() + " HTTP/1.1\r\nHost: " + host +
			"\r\nUser-Agent: turnout-healthcheck\r\n\r\n"),
		host:    host,
		expect:  expect,
		body:    []byte(h.ExpectBody),
		timeout: timeout,
		aborted: make(chan struct{}, 1),
		get:     &http.Request{Method: http.MethodGet},
	}
	c.abortFn = c.abort
	return c
}

func (c *httpChecker) Check(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.watch(ctx)
	conn := c.conn
	keep, err := c.exchange(ctx, &conn, time.Now().Add(c.timeout))
	if conn != nil && (!keep || ctx.Err() != nil) {
		conn.Close()
		conn = nil
	}
	c.mu.Lock()
	c.conn = conn
	c.mu.Unlock()
	return err
}

// watch makes a cancellation of ctx abort the check in flight. A monitor
// passes the same context to every check, so abort is registered once per
// checker rather than once per check.
func (c *httpChecker) watch(ctx context.Context) {
	if ctx == c.watched {
		return
	}
	c.unwatch()
	if ctx.Done() != nil {
		c.watched, c.stopWatch = ctx, context.AfterFunc(ctx, c.abortFn)
	}
}

// unwatch unregisters abort; when abort already ran, it waits for it to
// finish so that it cannot touch a later check's connection.
func (c *httpChecker) unwatch() {
	if c.stopWatch != nil && !c.stopWatch() {
		<-c.aborted
	}
	c.watched, c.stopWatch = nil, nil
}

// abort ends a check in flight when the watched context is cancelled
// (Monitor.Close): closing the connection fails its blocked write or read at
// once.
func (c *httpChecker) abort() {
	c.mu.Lock()
	if c.conn != nil {
		c.conn.Close()
	}
	c.mu.Unlock()
	c.aborted <- struct{}{}
}

// release closes the kept-alive connection and unregisters from the watched
// context. It must not overlap a Check; a later Check starts afresh.
func (c *httpChecker) release() {
	c.mu.Lock()
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
	c.mu.Unlock()
	c.unwatch()
}

// release lets a checker free what it keeps between checks (a connection,
// a context registration) once it is replaced or its monitor stops; it must
// not overlap a check by c.
func release(c Checker) {
	if r, ok := c.(interface{ release() }); ok {
		r.release()
	}
}

// exchange sends the request on *conn (dialling when nil) and checks the
// answer. keep says whether *conn may serve the next check. A kept-alive
// connection that fails before any byte of the answer was most likely closed
// by the server's idle timeout, so it is replaced once by a fresh one: only
// a fresh connection's failure counts.
func (c *httpChecker) exchange(ctx context.Context, conn *net.Conn, deadline time.Time) (keep bool, err error) {
	reused := *conn != nil
	for {
		if *conn == nil {
			d := net.Dialer{Deadline: deadline}
			nc, err := d.DialContext(ctx, c.network, c.address)
			if err != nil {
				return false, describe(ctx, c.timeout, err)
			}
			c.mu.Lock()
			c.conn, *conn = nc, nc
			c.mu.Unlock()
			// abort may have run between the dial and the line above.
			if ctx.Err() != nil {
				return false, ctx.Err()
			}
			c.src.Conn = nc
			if c.br == nil {
				c.br = bufio.NewReader(&c.src)
			} else {
				c.br.Reset(&c.src)
			}
		}
		keep, stale, err := c.roundTrip(ctx, *conn, deadline)
		if !(stale && reused) || ctx.Err() != nil {
			return keep, err
		}
		(*conn).Close()
		*conn, reused = nil, false
	}
}

// roundTrip runs one check on conn. keep says whether conn may serve the
// next check; stale reports a failure before any byte of the answer that was
// not a timeout.
func (c *httpChecker) roundTrip(ctx context.Context, conn net.Conn, until time.Time) (keep, stale bool, err error) {
	// Only reads get a deadline: the write of a small request on a
	// connection whose previous answer was read cannot block, and a second
	// timer per check costs as much as the check's own work.
	if err := conn.SetReadDeadline(until); err != nil {
		return false, true, describe(ctx, c.timeout, err)
	}
	if _, err := conn.Write(c.request); err != nil {
		return false, !deadline.IsTimeout(err), describe(ctx, c.timeout, err)
	}
	c.src.left = upstream.MaxResponseHead // for the heads, as the proxy allows an app
	if _, err := c.br.Peek(1); err != nil {
		if errors.Is(err, io.EOF) {
			err = errClosed
		}
		return false, !deadline.IsTimeout(err), describe(ctx, c.timeout, err)
	}
	bodyLen, err := c.readHead()
	if err != nil {
		return false, false, describe(ctx, c.timeout, err)
	}
	c.src.left = math.MaxInt64 // the body is bounded by maxBody
	resp := c.reply.Response
	status, length := resp.StatusCode, resp.ContentLength // -1: chunked, or ending at close
	keep = !resp.Close && status != http.StatusSwitchingProtocols && length >= 0 && length <= maxBody
	statusOK := c.expect.Contains(status)
	if statusOK && len(c.body) > 0 {
		var body io.Reader = resp.Body // http.ReadResponse's: chunked, or to the close
		if body == nil {
			c.known = io.LimitedReader{R: c.br, N: bodyLen}
			body = &c.known
		}
		c.buf, err = readUpTo(body, c.buf[:0], maxBody)
		if err != nil {
			return false, false, fmt.Errorf("read body: %w", describe(ctx, c.timeout, err))
		}
		keep = keep && int64(len(c.buf)) == length
	} else if keep {
		if _, err := c.br.Discard(int(length)); err != nil {
			keep = false
		}
	}
	// A deadline left armed would fire between checks and wake the process.
	if keep && conn.SetReadDeadline(time.Time{}) != nil {
		keep = false
	}
	if !statusOK {
		if status == 400 {
			// Django (ALLOWED_HOSTS), Rails (config.hosts) and others answer
			// 400 to a Host they do not serve.
			return keep, false, fmt.Errorf("status 400, want %s: the app may reject the check's Host %q; set [health] host to a name it serves (Django: ALLOWED_HOSTS)",
				formatRanges(c.expect), c.host)
		}
		return keep, false, fmt.Errorf("status %d, want %s", status, formatRanges(c.expect))
	}
	if len(c.body) > 0 && !bytes.Contains(c.buf, c.body) {
		return keep, false, fmt.Errorf("body lacks %q", c.body)
	}
	return keep, false, nil
}

// readHead reads the answer's head into c.reply with the proxy's parser,
// skipping 1xx interim responses (but not 101), and returns the length of
// the body that follows in c.br, or -1 for a body read through
// c.reply.Response.Body.
func (c *httpChecker) readHead() (bodyLen int64, err error) {
	for {
		bodyLen, err = upstream.ReadResponse(c.br, c.get, &c.reply)
		if err != nil {
			return 0, err
		}
		if code := c.reply.Response.StatusCode; code >= 200 || code == http.StatusSwitchingProtocols {
			return bodyLen, nil
		}
	}
}

// headLimit is the connection as the checker's buffered reader reads it:
// with at most left bytes to go (upstream.ErrHeadTooLarge past them).
type headLimit struct {
	net.Conn
	left int64
}

func (l *headLimit) Read(p []byte) (int, error) {
	if l.left <= 0 {
		return 0, upstream.ErrHeadTooLarge
	}
	n, err := l.Conn.Read(p)
	l.left -= int64(n)
	return n, err
}

// readUpTo appends r to buf until EOF or until buf holds n bytes.
func readUpTo(r io.Reader, buf []byte, n int) ([]byte, error) {
	for len(buf) < n {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		m, err := r.Read(buf[len(buf):min(cap(buf), n)])
		buf = buf[:len(buf)+m]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
	return buf, nil
}

// errClosed is the failure of a server that closed the connection without
// answering.
var errClosed = errors.New("connection closed by the server without an answer")

// describe shortens a check error to what an operator needs next to the
// server's address: "timeout after 1s", "connect: connection refused".
func describe(ctx context.Context, timeout time.Duration, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	// A full backlog's EAGAIN says Timeout() too, but it is no timeout.
	if deadline.IsTimeout(err) && !errors.Is(err, syscall.EAGAIN) {
		return &timeoutError{timeout}
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Err != nil {
		return opErr.Err
	}
	return err
}

// timeoutError is a check that took longer than its timeout.
type timeoutError struct{ after time.Duration }

func (e *timeoutError) Error() string { return fmt.Sprintf("timeout after %s", e.after) }

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
