package upstream

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/turnout/turnout/internal/deadline"
	"github.com/turnout/turnout/internal/httpsyntax"
)

// Client is the lean HTTP/1.1 client to one server. Unlike http.Transport
// it runs no goroutine per connection: the request is written and the
// response read on the caller's goroutine, over a pooled buffered
// connection. Its callers send only requests whose whole body is in memory;
// upgrades and streamed bodies go through the server's http.Transport
// (NewTransport).
type Client struct {
	dial          func(ctx context.Context) (net.Conn, error)
	headerTimeout time.Duration
	readTimeout   time.Duration // the longest wait for more of a response body; 0: none
	maxIdle       int
	hooks         hooks

	mu      sync.Mutex // guards idle, busy and retired
	idle    []*h1Conn  // most recently used last
	busy    *h1Conn    // the connections in use, linked through next and prev
	retired bool       // replaced by a new transport: keeps no connection
}

// idleTimeout is how long an idle connection may wait for its next
// request, counted from when its last one was sent; older ones are closed
// rather than trusted.
const idleTimeout = 90 * time.Second

// Retire closes the idle connections, and those in use as they come back.
func (t *Client) Retire() {
	t.mu.Lock()
	t.retired = true
	t.mu.Unlock()
	t.CloseIdleConnections()
}

type h1Conn struct {
	net.Conn
	t           *Client
	idleSince   time.Time // when its last request was sent: close enough for idleTimeout, and no clock read
	br          *bufio.Reader
	deadline    deadline.Read // moved only when it must: most requests set none
	readTimeout time.Duration // the transport's: see Read
	nread       int64         // bytes read since the request was written
	inHead      bool          // the response head is being read: Read stops past MaxResponseHead
	aborted     atomic.Bool   // cut (see abort): every wait fails from now on

	next, prev *h1Conn // in the transport's busy list while in use
	listed     bool

	raw syscall.RawConn // for send's wait and peek; nil when not a socket

	// send's state, kept here so that a request allocates nothing for it.
	sendFn  func(fd uintptr) bool
	sendMsg []byte
	sendN   int
	sendErr error
	sent    bool
	check   bool // peek before the write: the connection was idle
	peekBuf [1]byte
}

// Read reads from the connection for the response's buffered reader: only
// when what came before is used up. While the body is read, each read may
// wait readTimeout at most (nginx's proxy_read_timeout), moving the deadline
// only when it must.
func (c *h1Conn) Read(p []byte) (int, error) {
	if c.inHead && c.nread >= MaxResponseHead {
		return 0, ErrHeadTooLarge
	}
	if !c.inHead && c.readTimeout > 0 {
		c.deadline.Within(c.Conn, time.Now(), c.readTimeout)
	}
	if c.aborted.Load() {
		// After the deadline is set: an abort that came before it would
		// be undone by it.
		return 0, errAborted
	}
	n, err := c.Conn.Read(p)
	c.nread += int64(n)
	if err != nil && c.aborted.Load() {
		err = errAborted // abort's deadline, not the read timeout's
	}
	return n, err
}

// abort makes every wait on c fail at once, now and from now on: a
// cancelled request, a drain whose time ran out. Safe from any goroutine.
func (c *h1Conn) abort() {
	c.aborted.Store(true)
	c.Conn.SetDeadline(deadline.Past)
}

// Close closes the connection and takes it off the busy list.
func (c *h1Conn) Close() error {
	if c.listed {
		c.t.mu.Lock()
		c.t.unlinkLocked(c)
		c.t.mu.Unlock()
	}
	return c.Conn.Close()
}

// errAborted is a request cut by abort. It counts as a timeout: a request
// cut at a drain's deadline is not sent again.
var errAborted error = abortedError{}

type abortedError struct{}

func (abortedError) Error() string {
	return "upstream request cut: drain_timeout reached, or the request was cancelled"
}
func (abortedError) Timeout() bool   { return true }
func (abortedError) Temporary() bool { return true }

// linkLocked puts c on the busy list; unlinkLocked takes it off.
func (t *Client) linkLocked(c *h1Conn) {
	c.prev, c.next, c.listed = nil, t.busy, true
	if t.busy != nil {
		t.busy.prev = c
	}
	t.busy = c
}

func (t *Client) unlinkLocked(c *h1Conn) {
	if !c.listed {
		return
	}
	if c.prev != nil {
		c.prev.next = c.next
	} else {
		t.busy = c.next
	}
	if c.next != nil {
		c.next.prev = c.prev
	}
	c.prev, c.next, c.listed = nil, nil, false
}

// AbortBusy cuts every request in flight on t (see abort): a drain's time
// ran out.
func (t *Client) AbortBusy() {
	t.mu.Lock()
	for c := t.busy; c != nil; c = c.next {
		c.abort()
	}
	t.mu.Unlock()
}

// MaxResponseHead bounds what a server may send before its final response
// head ends, informational ones included (net/http's Transport allows 10
// MiB; nginx, 4 or 8 KiB); maxInformational, how many informational
// responses (103 Early Hints) may come first, as net/http's does.
const (
	MaxResponseHead  = 1 << 20
	maxInformational = 5
)

// ErrHeadTooLarge is a response whose heads take more than
// MaxResponseHead.
var ErrHeadTooLarge = errors.New("response head larger than 1 MiB")

var errTooInformational = errors.New("more than 5 informational responses")

// Two ways a connection fails before a byte of the response:
//   - errUnread: the server never read the request or dropped it unread
//     (see staleError), so it may go again whatever its method. This is
//     what a graceful shutdown does to a request that meets a connection
//     the server is closing.
//   - errStale: anything else: the server may have read the request and
//     died processing it, so only an idempotent request may go again
//     (see Idempotent).
var (
	errUnread = errors.New("connection closed by the server before it read the request")
	// errDropped is errUnread told by its timing alone (a close at once),
	// which an app that crashes at once on the request also gives: it goes
	// again once, not more.
	errDropped = fmt.Errorf("%w (closed at once after it)", errUnread)
	errStale   = errors.New("connection closed by the server before it answered")
)

// oneRead is the size of request that any server reads whole with its
// first read (Go, gunicorn and uwsgi read 4 KiB or more at once).
const oneRead = 4 << 10

// staleError classifies the failure of a request of size n on connection
// c, from which nothing was read yet, sinceWrite after the request was
// written. For a request larger than one server read, the server may have
// read its head and died processing it: errStale. For a small one:
//   - a reset means some of our bytes were left unread in the server's
//     socket, so the server read none of it;
//   - a close (EOF) followed by a reset pending on the socket means the
//     server had closed before the request arrived (the reset answers it);
//   - a close within quickClose of the write, with no reset, is a server
//     that read the request and dropped it at once: Go's http.Server does
//     this to every request it reads while shutting down. An app that
//     crashes that fast has not acted on the request.
//
// Anything else counts as delivered.
func (c *h1Conn) staleError(err error, n int, sinceWrite time.Duration) error {
	if n > oneRead {
		return fmt.Errorf("%w (%v)", errStale, err)
	}
	if isReset(err) {
		return errUnread
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		// The reset that answers a request sent to a closed socket may come
		// a moment after the close: give it that moment. Only this rare
		// failure pays for the wait.
		for deadline := time.Now().Add(resetWait); ; time.Sleep(resetWait / 20) {
			if isReset(c.pendingError()) {
				return errUnread
			}
			if time.Now().After(deadline) {
				break
			}
		}
		if sinceWrite <= quickClose {
			return errDropped
		}
	}
	return fmt.Errorf("%w (%v)", errStale, err)
}

// quickClose is how soon after the request a server's close counts as a
// drop rather than a crash in the middle of the work.
const quickClose = 10 * time.Millisecond

// resetWait is how long a close may wait for the reset that shows the
// request was never read: a few round trips on a local network.
const resetWait = 3 * time.Millisecond

func isReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// pendingError returns the socket's pending error (SO_ERROR), if any.
func (c *h1Conn) pendingError() error {
	if c.raw == nil {
		return nil
	}
	var soErr int
	var err error
	if cerr := c.raw.Control(func(fd uintptr) {
		soErr, err = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_ERROR)
	}); cerr != nil || err != nil || soErr == 0 {
		return nil
	}
	return syscall.Errno(soErr)
}

// hooks let a test act in the instants that races hide: beforeWrite
// between the choice of a connection and its peek; afterPeek, between the
// peek (if any) and the write of the request; afterHead, between the
// response head and the lift of its deadline. All nil outside tests.
type hooks struct {
	beforeWrite, afterPeek, afterHead func(c *h1Conn)
}

// errUnaskedUpgrade is a 101 answer to a request that asked for no upgrade.
var errUnaskedUpgrade = errors.New("the server switched protocols, which the request did not ask for")

// errGone is an idle connection that send's peek found closed by the
// server, or holding bytes nobody asked for: the request was not written,
// and goes on another connection.
var errGone = errors.New("idle connection closed by the server")

// Exchange sends the request (msg: head and body, already encoded) and
// reads the response head into reply (see ReadResponse); req gives the
// context and the method (a HEAD response has no body). A connection that
// fails before a byte of the response is replaced when the request may go
// again: always after errUnread, for an idempotent request after errStale;
// a few times at most. An idle connection that send found gone is replaced
// without counting: nothing was sent on it. A failed exchange leaves no
// response in reply.
func (t *Client) Exchange(req *http.Request, msg []byte, reply *Reply) error {
	reply.Response, reply.Fields = nil, httpsyntax.Fields{}
	idempotent := Idempotent(req)
	dropped := false
	for attempt := 1; ; attempt++ {
		now := time.Now()
		c, dialed, err := t.conn(req.Context(), now)
		if err != nil {
			return err
		}
		if dialed {
			now = time.Now() // the header timeout runs from the write, not from before the dial
		}
		err = t.roundTrip(c, req, msg, now, reply)
		if err == nil {
			return nil
		}
		reply.Response, reply.Fields = nil, httpsyntax.Fields{} // a 1xx or 101 read before the error
		c.Close()
		if err == errGone {
			if err := req.Context().Err(); err != nil {
				return err
			}
			attempt-- // not a try: nothing was sent, and the idle connections are finite
			continue
		}
		if err == errDropped {
			if dropped {
				return err // dropped twice: an app that crashes on it
			}
			dropped = true
		}
		// A stale kept-alive connection is the usual reason a reused one
		// fails: an idempotent request goes again.
		if attempt < maxAttempts && (errors.Is(err, errUnread) || errors.Is(err, errStale) && idempotent && !dialed) {
			continue
		}
		if dialed && idempotent && errors.Is(err, errStale) {
			// On a new connection the server itself failed, maybe on this
			// very request: crashed on it, or going away (a restart)? A
			// server that takes no new connection is down: the dial error
			// marks it so, and deliver holds the request until it is back,
			// as for any request it never saw. One that takes it is up:
			// the request is not sent to it again, and deliver may try
			// another server, once.
			nc, derr := t.dialApart(req.Context())
			if derr != nil {
				return derr
			}
			nc.Close()
		}
		return err
	}
}

// maxAttempts bounds the connections one exchange tries: a server that
// resets every connection must not hold a request in a loop.
const maxAttempts = 4

// Idempotent reports whether r may be sent again after a failure that the
// server may have seen: GET, HEAD, OPTIONS and TRACE, or a request with an
// Idempotency-Key header. Such a request goes to one other server once
// after a failure the server may have seen; any other gets the 502 page.
func Idempotent(r *http.Request) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return len(r.Header["Idempotency-Key"]) > 0 || len(r.Header["X-Idempotency-Key"]) > 0
}

// conn returns an idle connection, which send checks before it writes on
// it, or dials a new one (dialed).
func (t *Client) conn(ctx context.Context, now time.Time) (c *h1Conn, dialed bool, err error) {
	for {
		t.mu.Lock()
		n := len(t.idle)
		if n == 0 {
			t.mu.Unlock()
			break
		}
		c := t.idle[n-1]
		t.idle[n-1] = nil
		t.idle = t.idle[:n-1]
		if now.Sub(c.idleSince) < idleTimeout && c.br.Buffered() == 0 {
			t.linkLocked(c)
			t.mu.Unlock()
			c.check = c.raw != nil // not a socket (tests): nothing to peek at
			return c, false, nil
		}
		t.mu.Unlock()
		c.Close()
	}
	nc, err := t.dialApart(ctx)
	if err != nil {
		return nil, false, err
	}
	c = &h1Conn{Conn: nc, t: t, readTimeout: t.readTimeout}
	c.setRaw()
	t.mu.Lock()
	t.linkLocked(c)
	t.mu.Unlock()
	// Response heads are small and larger body reads bypass the buffer, so a
	// small one keeps a thousand idle connections cheap.
	c.br = bufio.NewReaderSize(c, 2048)
	return c, true, nil
}

// dialApart dials on a goroutine of its own and waits for it. net.Dialer
// needs more stack than a request leaves free (a context, a timer, the
// socket calls): on the request's goroutine it would double that stack to
// 8 KiB for as long as the client stays connected, since stacks shrink only
// at a GC, which a steady load makes rare. A connection costs tens of
// microseconds to dial; the goroutine, about one.
func (t *Client) dialApart(ctx context.Context) (net.Conn, error) {
	type dialed struct {
		c   net.Conn
		err error
	}
	done := make(chan dialed, 1)
	go func() {
		c, err := t.dial(ctx)
		done <- dialed{c, err}
	}()
	d := <-done
	return d.c, d.err
}

// setRaw prepares, once per connection, send's access to the socket and
// its callback, so that a request costs no allocation for them.
func (c *h1Conn) setRaw() {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return
	}
	c.raw = raw
	c.sendFn = c.sendOnce
}

func (t *Client) put(c *h1Conn) {
	t.mu.Lock()
	t.unlinkLocked(c)
	// An abort (AbortBusy holds mu) that came after the body's last read
	// leaves the connection unfit: its deadline is in the past.
	if !t.retired && len(t.idle) < t.maxIdle && !c.aborted.Load() {
		t.idle = append(t.idle, c)
		c = nil
	}
	t.mu.Unlock()
	if c != nil {
		c.Close()
	}
}

// CloseIdleConnections closes every idle connection.
func (t *Client) CloseIdleConnections() {
	t.mu.Lock()
	idle := t.idle
	t.idle = nil
	t.mu.Unlock()
	for _, c := range idle {
		c.Close()
	}
}

// roundTrip writes the request on c, at now, and reads the response
// headers into reply.
func (t *Client) roundTrip(c *h1Conn, req *http.Request, msg []byte, now time.Time, reply *Reply) error {
	ctx := req.Context()
	stop := noStop
	if ctx.Done() != nil {
		stop = context.AfterFunc(ctx, c.abort)
	}
	c.nread = 0
	if t.hooks.beforeWrite != nil {
		t.hooks.beforeWrite(c)
	}
	c.idleSince = now
	if t.headerTimeout > 0 {
		c.deadline.Within(c.Conn, now, t.headerTimeout)
	}
	if ctx.Done() != nil && ctx.Err() != nil {
		// Cancelled meanwhile (the client went away): AfterFunc's deadline
		// may not be set yet, or Within may have moved it.
		stop()
		return ctx.Err()
	}
	if c.aborted.Load() {
		stop()
		return errAborted // Within may have moved abort's deadline
	}
	err := c.send(msg)
	written := now
	if err != nil {
		stop()
		if err == errGone || errors.Is(err, errUnread) {
			return err
		}
		if ctx.Err() == nil {
			return c.staleError(err, len(msg), 0)
		}
		return err
	}
	var (
		resp    *http.Response
		bodyLen int64
		body    = &reply.body
	)
	*body = h1Body{c: c, t: t, stop: stop}
	c.inHead = true
	defer func() { c.inHead = false }()
	for informational := 0; ; informational++ {
		if informational > maxInformational {
			stop()
			return errTooInformational
		}
		bodyLen, err = ReadResponse(c.br, req, reply)
		if err != nil {
			stop()
			if c.aborted.Load() && ctx.Err() == nil {
				return errAborted // cut by a drain, not timed out
			}
			if c.nread == 0 && ctx.Err() == nil && !deadline.IsTimeout(err) {
				return c.staleError(err, len(msg), time.Since(written))
			}
			if deadline.IsTimeout(err) && ctx.Err() == nil {
				return &timeoutError{}
			}
			if err == io.EOF && c.nread > 0 {
				return io.ErrUnexpectedEOF // the end came after a 1xx response
			}
			return err
		}
		resp = reply.Response
		if resp.StatusCode == http.StatusSwitchingProtocols {
			// No request sent here asks for an upgrade: a server that
			// switches anyway has left HTTP on this connection.
			stop()
			return errUnaskedUpgrade
		}
		if resp.StatusCode >= 200 {
			break
		}
		// A 1xx informational response (103 Early Hints): pass it on.
		got1xx := reply.Got1xx
		if trace := httptrace.ContextClientTrace(ctx); got1xx == nil && trace != nil && trace.Got1xxResponse != nil {
			got1xx = func(code int, h http.Header) error { return trace.Got1xxResponse(code, map[string][]string(h)) }
		}
		if got1xx != nil {
			if err := got1xx(resp.StatusCode, resp.Header); err != nil {
				stop()
				return err
			}
		}
	}
	if t.hooks.afterHead != nil {
		t.hooks.afterHead(c)
	}
	// Trade the header deadline for the body's (see Read), unless the whole
	// body is already buffered: then nothing more is read from the
	// connection before the next request sets its own deadline, and a
	// system call is saved. An abort meanwhile is not undone: Read checks.
	if t.headerTimeout > 0 && (resp.ContentLength < 0 || int64(c.br.Buffered()) < resp.ContentLength) {
		var next time.Time
		if c.readTimeout > 0 {
			next = time.Now().Add(c.readTimeout)
		}
		c.deadline.Set(c.Conn, next)
	}
	body.src, body.n, body.reuse = resp.Body, bodyLen, !resp.Close && !req.Close
	resp.Body = body
	return nil
}

// send writes msg, and when it went out whole, returns only once the
// connection is readable: the response has begun to come (or a close, or an
// error). Reading straight after the write, as net.Conn does, would cost a
// system call that nearly always finds nothing yet, the server being still
// at work.
//
// The wait is RawConn.Read's: it clears the connection's readiness first,
// then calls sendOnce, which writes and asks to wait; an answer that comes
// after the write wakes it, so none can slip past. An error of the wait
// (the header deadline, a cancel) is left for the read that follows, which
// meets it again and reports it. A request the socket's buffer did not take
// whole (a server that stopped reading) is finished by net.Conn's Write.
//
// On a connection that was idle (check), sendOnce first peeks, without
// waiting, and writes only when it finds nothing: no close and no stray
// bytes; errGone otherwise. The peek comes after the readiness is
// cleared, so a close that arrives after it still ends the wait. Every
// reuse pays this system call, and it must: a closed connection is usually
// answered with a reset when the request reaches it, which exchange
// handles, but not when something in between (socat, an ssh tunnel) passes
// the server's close on as a half-close; then the wait would last until the
// header timeout. And bytes beyond a response's Content-Length would be read
// as the next answer.
func (c *h1Conn) send(msg []byte) error {
	if c.raw == nil {
		_, err := c.Conn.Write(msg)
		return err
	}
	c.sendMsg, c.sendN, c.sendErr, c.sent = msg, 0, nil, false
	c.raw.Read(c.sendFn)
	n, err := c.sendN, c.sendErr
	c.sendMsg = nil
	switch {
	case c.check || err == errGone:
		// Gone, or never peeked at: RawConn.Read failed before it called
		// sendOnce (a cancel).
		c.check = false
		return errGone
	case err == nil && n == len(msg):
		return nil
	case err == syscall.EAGAIN || err == syscall.EINTR:
		n, err = 0, nil // the socket's buffer was full: Write below waits its turn
	case err != nil:
		// The first write failed (a reset that came after the peek):
		// nothing of the request went out, whatever its size.
		return fmt.Errorf("%w (%w)", errUnread, &net.OpError{Op: "write", Net: "tcp", Addr: c.RemoteAddr(), Err: os.NewSyscallError("write", err)})
	}
	_, err = c.Conn.Write(msg[n:])
	return err
}

// sendOnce is send's callback: the first call peeks (see send) and
// writes, the next one (the connection became readable) ends the wait.
//
// It makes its system calls raw: it runs at the deepest point of a
// request's stack (the front's read, the handler, deliver, the exchange,
// RawConn.Read), where syscall.Recvfrom and syscall.Write would add 300
// bytes, enough to grow every client connection's stack from 4 to 8 KiB
// (README: memory).
func (c *h1Conn) sendOnce(fd uintptr) bool {
	if c.sent {
		return true
	}
	c.sent = true
	if c.check {
		c.check = false
		// EAGAIN: nothing to read and not closed. Anything else (a close,
		// bytes nobody asked for, an error) makes the connection unfit.
		_, _, errno := syscall.Syscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&c.peekBuf[0])), uintptr(len(c.peekBuf)),
			syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
		if errno != syscall.EAGAIN {
			c.sendErr = errGone
			return true
		}
	}
	if c.t.hooks.afterPeek != nil {
		c.t.hooks.afterPeek(c)
	}
	n, _, errno := syscall.Syscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(unsafe.SliceData(c.sendMsg))), uintptr(len(c.sendMsg)))
	if errno != 0 {
		c.sendErr = errno
		return true
	}
	c.sendN = int(n)
	return c.sendN < len(c.sendMsg)
}

// noStop stands for context.AfterFunc's stop when the context can never
// be cancelled.
func noStop() bool { return true }

// timeoutError is the response header timeout.
type timeoutError struct{}

func (*timeoutError) Error() string   { return "timeout awaiting response headers" }
func (*timeoutError) Timeout() bool   { return true }
func (*timeoutError) Temporary() bool { return true }

// Reply holds what Client.Exchange makes of one response: its caller may
// keep one and lend it to every exchange whose body it has closed, so that
// a response costs no allocation.
type Reply struct {
	// Got1xx, when set, is called with each informational response (103
	// Early Hints) that comes before the final one; an error it returns
	// ends the exchange. Reply's zero value drops them.
	Got1xx func(code int, header http.Header) error

	// Response and Fields are the response an exchange read, as
	// ReadResponse leaves them. (They are not Exchange's results, which
	// would take the stack space of a dozen words at each of its levels:
	// see sendOnce.)
	Response *http.Response
	Fields   httpsyntax.Fields

	body h1Body
}

// OnClose has f called once, at the first Close of the body of the
// response the last exchange read (pool's in-flight count).
func (r *Reply) OnClose(f func()) { r.body.closed = f }

// h1Body returns its connection to the pool once the response body has been
// read to its end, and closes it when the body is abandoned half-read. It
// reads net/http's body (src), or, for a response ReadResponse parsed in
// place, the next n bytes of the connection.
type h1Body struct {
	resp   http.Response // the response, when ReadResponse parsed it in place
	src    io.ReadCloser
	n      int64
	c      *h1Conn
	t      *Client
	stop   func() bool
	reuse  bool
	done   bool
	ending atomic.Bool // finish or Abort has claimed the connection
	closed func()      // called once, at the first Close: the server's in-flight count
}

func (b *h1Body) Read(p []byte) (int, error) {
	if b.done {
		return 0, io.EOF
	}
	if b.src == nil {
		return b.readDirect(p)
	}
	n, err := b.src.Read(p)
	if err == io.EOF {
		b.finish(true)
	} else if err != nil {
		b.finish(false)
	}
	return n, err
}

// readDirect reads the body from the connection's buffer; the last bytes
// come with io.EOF, which hands the connection back at once.
func (b *h1Body) readDirect(p []byte) (int, error) {
	if b.n == 0 {
		b.finish(true)
		return 0, io.EOF
	}
	if int64(len(p)) > b.n {
		p = p[:b.n]
	}
	n, err := b.c.br.Read(p)
	b.n -= int64(n)
	switch {
	case b.n == 0:
		b.finish(true)
		return n, io.EOF
	case err == io.EOF:
		err = io.ErrUnexpectedEOF
		fallthrough
	case err != nil:
		b.finish(false)
	}
	return n, err
}

func (b *h1Body) Close() error {
	if !b.done {
		// An empty body read to its end or not leaves the connection fit.
		b.finish(b.src == nil && b.n == 0)
	}
	if f := b.closed; f != nil {
		b.closed = nil
		f()
	}
	return nil
}

func (b *h1Body) finish(complete bool) {
	b.done = true
	if b.stop() && complete && b.reuse && b.ending.CompareAndSwap(false, true) {
		b.t.put(b.c)
		return
	}
	b.c.Close()
}

// Abort cuts the body: a read that waits for it fails at once, and so does
// any later one; the connection is closed, unless the body was read whole
// first and the connection went back to the pool. Safe from any goroutine
// while the body is read, until it is closed: the client went away.
func (b *h1Body) Abort() {
	if b.ending.CompareAndSwap(false, true) {
		b.c.abort()
	}
}
