package front

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/turnout/turnout/internal/deadline"
	"github.com/turnout/turnout/internal/httpsyntax"
	"github.com/turnout/turnout/upstream"
)

// Server serves plain HTTP/1.1 on a listener itself: net/http's server costs a
// background reader goroutine, several deadlines and its own bookkeeping per
// request, which is most of what a proxy spends beside system calls. A
// connection whose next request needs more — an upgrade, Expect, a chunked or
// large body, HTTP/2 prior knowledge, a head larger than the read buffer — is
// handed, with the bytes already read, to net/http's server (std) for the rest
// of its life, so every protocol feature stays net/http's; a vettedConn holds
// every head net/http reads there to the request rules (requestrules.go).
//
// Unlike net/http, the front does not read the connection in the background
// during every request to notice a client that goes away; it does so only
// where the wait may be long (WatchClient): while a request is held, and
// while more of a response body is awaited after what came went out. A
// request waiting for its response head runs to its end, bounded by
// upstream_timeout.
type Server struct {
	logger        hclog.Logger
	handler       http.Handler
	std           *http.Server // serves the connections handed off
	handoff       *handoffListener
	headerTimeout time.Duration
	idleTimeout   time.Duration
	bodyTimeout   time.Duration // the longest wait for more of a request body

	closing atomic.Bool
	mu      sync.Mutex // guards conns, which change only as connections open and close
	conns   map[*frontConn]struct{}
	wg      sync.WaitGroup
}

// Options configure a Server.
type Options struct {
	Logger  hclog.Logger
	Handler http.Handler
	// Std serves the connections the front hands over; New starts it.
	Std *http.Server
	// HeaderTimeout bounds the wait for a request head, from its first
	// byte; IdleTimeout, the wait for the next request on a kept-alive
	// connection; BodyTimeout, each wait for more of a request body.
	HeaderTimeout, IdleTimeout, BodyTimeout time.Duration
}

// New returns a Server for o, with o.Std serving what it hands over.
func New(o Options) *Server {
	f := &Server{
		logger: o.Logger, handler: o.Handler, std: o.Std, headerTimeout: o.HeaderTimeout, idleTimeout: o.IdleTimeout, bodyTimeout: o.BodyTimeout,
		handoff: newHandoffListener(), conns: make(map[*frontConn]struct{}),
	}
	f.handoff.logger = o.Logger
	go o.Std.Serve(f.handoff)
	return f
}

// Serve accepts connections on ln until it is closed.
func (f *Server) Serve(ln net.Listener) error {
	f.handoff.setAddr(ln.Addr())
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				continue
			}
			if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) || errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM) {
				// Out of descriptors or memory for now, as net/http: wait and retry.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				f.logger.Warn("accept failed; retrying", "error", err, "in", backoff)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		fc := &frontConn{f: f, c: c}
		f.mu.Lock()
		if f.closing.Load() {
			f.mu.Unlock()
			c.Close()
			continue
		}
		f.conns[fc] = struct{}{}
		f.wg.Add(1)
		f.mu.Unlock()
		go fc.serve()
	}
}

// Shutdown closes idle connections at once and lets the others finish their
// request, until ctx ends; then it closes what is left, and calls closed
// before it waits for their handlers (closed is called either way).
// Connections handed to net/http are shut down by std.
func (f *Server) Shutdown(ctx context.Context, closed func()) {
	f.closing.Store(true)
	f.mu.Lock()
	for fc := range f.conns {
		if fc.idle.Load() {
			fc.c.SetReadDeadline(deadline.Past)
		}
	}
	f.mu.Unlock()
	done := make(chan struct{})
	go func() { f.wg.Wait(); close(done) }()
	select {
	case <-done:
		closed()
	case <-ctx.Done():
		f.mu.Lock()
		for fc := range f.conns {
			fc.abort()
		}
		f.mu.Unlock()
		closed()
		<-done
	}
	if f.std.Shutdown(ctx) != nil {
		f.std.Close()
	}
}

// abort ends fc's connection now, for a shutdown whose time ran out. The
// socket is shut down first, so that the client sees the end at once, and
// so does the watch of a held request, which may read a duplicate of it;
// Close waits for a request that readable serves to end (it holds the
// connection's read side), so it runs on its own.
func (fc *frontConn) abort() {
	if sc, ok := fc.c.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			raw.Control(func(fd uintptr) { syscall.Shutdown(int(fd), syscall.SHUT_RDWR) })
		}
	}
	go fc.c.Close()
}

// setIdle records whether fc waits for a request; it reports false when the
// front is closing and fc should stop.
//
// No lock: shutdown sets closing before it looks at idle, so a connection it
// misses sees closing here.
func (f *Server) setIdle(fc *frontConn, idle bool) bool {
	fc.idle.Store(idle)
	return !f.closing.Load()
}

type frontConn struct {
	f    *Server
	c    net.Conn
	idle atomic.Bool // waiting for a request
	cr   *connReader

	deadline deadline.Read // moved only when it must: most requests set none

	// One request at a time: what it is parsed into is reused, so a plain
	// request allocates little more than its head as one string. base is
	// the zero request with the connection's context (WithContext is the
	// only way to set one), copied over req for each request.
	req    http.Request
	base   http.Request
	header http.Header
	values []string  // backs the header's values
	id     [1]string // the X-Request-Id value the front made, if it did
	url    url.URL
	body   frontBody
	remote string
	w      *frontWriter

	// readable's state, kept here so that a request allocates nothing for
	// it.
	readableFn  func(fd uintptr) bool // fc.readable, made once
	fd          int                   // the socket while readable runs, else -1
	begun       bool                  // part of a head is buffered: the header timeout runs
	ended       bool                  // readable met the connection's end
	outside     *http.Request         // a request readable parsed and left to serve
	outsideHead int                   // the length of its head
}

// clientWatchKey is the context key under which a front request carries its
// *frontConn, for WatchClient.
type clientWatchKey struct{}

// WatchClient watches the client of a request the front serves, whose
// context is ctx, while the handler waits (a held request, a stalled
// response body): gone is closed when the client goes away, after onGone
// (when not nil) is called, until stop is called. The request's body must
// have been read. For a request net/http serves, ok is false: its context
// ends when the client goes.
func WatchClient(ctx context.Context, onGone func()) (gone <-chan struct{}, stop func(), ok bool) {
	fc, ok := ctx.Value(clientWatchKey{}).(*frontConn)
	if !ok {
		return nil, nil, false
	}
	gone, stop = fc.watchClient(onGone)
	return gone, stop, true
}

// watchClient returns a channel that is closed when the client goes away,
// after onGone (when not nil) is called, until the returned stop is called.
// The request's body must have been read: the watch reads the connection.
// Inside readable, which holds the connection's read side, it reads a
// duplicate of the socket, which the poller waits on apart from it; what it
// reads goes to the same buffer.
func (fc *frontConn) watchClient(onGone func()) (gone <-chan struct{}, stop func()) {
	fc.setReadDeadline(time.Time{}) // the idle or header deadline is not the hold's
	raw, dup := fc.cr.raw, (*os.File)(nil)
	if fc.fd >= 0 {
		var err error
		if dup, err = dupSocket(fc.fd); err != nil {
			// The hold still ends at its deadline.
			fc.f.logger.Warn("cannot watch a held request's client", "error", err)
			return nil, func() {}
		}
		if raw, err = dup.SyscallConn(); err != nil {
			dup.Close()
			return nil, func() {}
		}
	}
	done := make(chan struct{})
	left := make(chan struct{})
	go func() {
		defer close(done)
		// Data (a pipelined request) means the client is there; an error
		// other than the deadline that stop sets means it is gone. Blank
		// lines (a CRLF after the body) say neither.
		for {
			fc.cr.skipBlankLines()
			if b := fc.cr.buffered(); len(b) > 0 && string(b) != "\r" {
				return
			}
			if err := fc.cr.fillFrom(raw); err != nil {
				if !deadline.IsTimeout(err) {
					if onGone != nil {
						onGone()
					}
					close(left)
				}
				return
			}
		}
	}()
	return left, func() {
		if dup == nil {
			fc.c.SetReadDeadline(deadline.Past)
			<-done
		} else {
			dup.SetReadDeadline(deadline.Past)
			<-done
			dup.Close()
		}
		fc.setReadDeadline(time.Time{})
	}
}

// dupSocket duplicates the socket fd as a file that the poller waits on.
func dupSocket(fd int) (*os.File, error) {
	nfd, _, errno := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_DUPFD_CLOEXEC, 0)
	if errno != 0 {
		return nil, os.NewSyscallError("fcntl", errno)
	}
	return os.NewFile(nfd, "client"), nil // non-blocking as fd is: pollable
}

// setReadDeadline sets c's read deadline to t (zero: none).
func (fc *frontConn) setReadDeadline(t time.Time) { fc.deadline.Set(fc.c, t) }

var frontWriters = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4096) }}

func (fc *frontConn) serve() {
	f := fc.f
	cr := newConnReader(fc.c)
	fc.cr = cr
	fc.w = &frontWriter{header: make(http.Header), c: fc.c}
	fc.fd, fc.readableFn = -1, fc.readable
	handedOff := false
	defer func() {
		// As net/http does, a panic in a handler ends its connection, not
		// the daemon; ErrAbortHandler is the quiet way to do so.
		if r := recover(); r != nil && r != http.ErrAbortHandler {
			f.logger.Error("panic serving a request; connection closed", "panic", r, "stack", string(debug.Stack()))
		}
		cr.close()
		if !handedOff {
			// An answer may wait in the buffer.
			fc.c.SetWriteDeadline(time.Now().Add(f.headerTimeout))
			fc.w.flush()
			fc.c.Close()
		}
		fc.w.release()
		f.mu.Lock()
		delete(f.conns, fc)
		f.mu.Unlock()
		f.wg.Done()
	}()
	fc.base = *(&http.Request{}).WithContext(context.WithValue(context.Background(), clientWatchKey{}, fc))
	fc.header = make(http.Header)
	fc.remote = fc.c.RemoteAddr().String()
	for {
		var req *http.Request
		headLen := 0
		if cr.raw != nil {
			// The usual requests are served inside the read (readable);
			// it returns with what must be served here.
			fc.ended, fc.begun = false, false
			// A request served here may have outlasted the deadline set
			// for its body: RawConn.Read fails at once on a past one.
			fc.deadline.Within(fc.c, time.Now(), f.idleTimeout)
			err := cr.raw.Read(fc.readableFn)
			fc.fd = -1
			if err != nil || fc.ended {
				return
			}
			req, headLen, fc.outside = fc.outside, fc.outsideHead, nil
		} else if !fc.awaitRequest() {
			return
		}
		if req == nil {
			head, err := readHead(cr, func() {
				// The head came in pieces: the rest is due within the header
				// timeout.
				fc.setReadDeadline(time.Now().Add(f.headerTimeout))
			})
			switch {
			case err == errNoHead:
				continue // only blank lines (a CRLF after a body, as net/http allows): wait as an idle connection
			case err == nil:
				req, headLen = fc.parseRequest(head), len(head)
			case err != errHeadTooLarge && err != errBareLF:
				return // a slow or broken client: net/http would answer 408 or 400 and close
			}
		}
		if req == nil {
			if fc.w.flush() != nil {
				return
			}
			handedOff = true
			fc.setReadDeadline(time.Time{})
			f.handoff.push(fc.c, cr)
			return
		}
		if !fc.serveRequest(req, headLen) || f.closing.Load() {
			return
		}
	}
}

// awaitRequest waits, on a connection that is not a socket (TLS), until a
// request has begun to come, under the idle timeout; false when the
// connection must end.
func (fc *frontConn) awaitRequest() bool {
	f := fc.f
	// Nothing, or a lone CR (perhaps a blank line's): the connection waits
	// for a request, under the idle timeout.
	b := fc.cr.buffered()
	waiting := len(b) == 0 || string(b) == "\r"
	if waiting {
		// Before setIdle: a shutdown that sees the connection idle then
		// sets its past deadline after this one, not before.
		fc.deadline.Within(fc.c, time.Now(), f.idleTimeout)
	}
	if !f.setIdle(fc, true) {
		return false
	}
	if waiting && fc.cr.fill() != nil {
		return false
	}
	return f.setIdle(fc, false)
}

// readable is RawConn.Read's callback on a front connection that is a
// socket: it reads what has come and serves every request that is there
// whole, body included, then asks RawConn.Read to wait for more. The wait
// comes straight after the answer is written, with no read first that
// would find nothing: RawConn.Read cleared the socket's readiness before
// the first read, so whatever arrives after a read wakes it, a pipelined
// request included. A wait follows only a read that drained the socket
// (one that took less than the buffer's room): bytes already queued wake
// nobody. net.Conn's Read, and so net/http, costs one more system call per
// request here. What a short read does not tell is a client's end (FIN)
// that came with its last bytes: a client that half-closes right after its
// request gets its answer, but may see the connection end only at the idle
// timeout (docs/design-choices.md: a client that half-closes).
//
// It returns, ending RawConn.Read, when the connection ends (ended) or
// when what is buffered must be served outside it (serve): a request whose
// body is still on its way, which its handler reads; a head that net/http
// serves. While it runs, fd is the socket, and the connection's read side
// is held: watchClient reads a duplicate.
func (fc *frontConn) readable(fd uintptr) bool {
	fc.fd = int(fd)
	f, cr := fc.f, fc.cr
	for eof := false; ; {
		drained := false
		if !eof && cr.room() {
			n, short, err := cr.readFd(fd)
			switch {
			case err == syscall.EAGAIN:
				drained = true
			case n == 0 && err == nil && len(cr.buffered()) > 0:
				eof, drained = true, true // serve what came before the end, then close
			case n == 0:
				fc.ended = true // closed, or an error: net/http would close too
				return true
			default:
				drained = short
				if fc.idle.Load() && !f.setIdle(fc, false) {
					fc.ended = true
					return true
				}
			}
		}
		step := fc.serveBuffered()
		if eof && (step == stepIdle || step == stepMore) {
			step = stepEnd
		}
		switch step {
		case stepEnd:
			fc.ended = true
			return true
		case stepOutside:
			return true
		case stepIdle:
			if !drained {
				continue
			}
			cr.release()
			// Before setIdle: a shutdown that sees the connection idle then
			// sets its past deadline after this one, not before.
			fc.deadline.Within(fc.c, time.Now(), f.idleTimeout)
			if !f.setIdle(fc, true) {
				fc.ended = true
				return true
			}
			return false
		case stepMore:
			if !drained {
				continue
			}
			return false
		}
	}
}

// What serveBuffered leaves readable to do.
type frontStep int

const (
	stepIdle    frontStep = iota // nothing buffered but blank lines: wait for a request
	stepMore                     // part of a head: wait for the rest, under the header timeout
	stepOutside                  // serve has to take what is buffered (see readable)
	stepEnd                      // the connection ends
)

// serveBuffered serves, one after another, the requests buffered whole,
// bodies included.
func (fc *frontConn) serveBuffered() frontStep {
	cr := fc.cr
	for {
		cr.skipBlankLines()
		buf := cr.buffered()
		if len(buf) == 0 || string(buf) == "\r" { // a lone CR may be a blank line's
			return stepIdle
		}
		n, bareLF := httpsyntax.HeadEnd(buf)
		switch {
		case bareLF:
			return stepOutside
		case n < 0 && !cr.room():
			return stepOutside // too large a head: net/http's
		case n < 0:
			if !fc.begun {
				// The head came in pieces: the rest is due within the
				// header timeout.
				fc.begun = true
				fc.setReadDeadline(time.Now().Add(fc.f.headerTimeout))
			}
			return stepMore
		}
		fc.begun = false
		req := fc.parseRequest(buf[:n])
		if req == nil {
			return stepOutside // serve parses it again, and hands it to net/http
		}
		if req.ContentLength > int64(len(buf)-n) {
			fc.outside, fc.outsideHead = req, n
			return stepOutside
		}
		if !fc.serveRequest(req, n) || fc.f.closing.Load() {
			return stepEnd // a shutdown ends the connection after its request in flight
		}
	}
}

// serveRequest serves req, parsed from the headLen bytes at the start of
// the buffer, and answers it; false when the connection must end.
func (fc *frontConn) serveRequest(req *http.Request, headLen int) bool {
	f, cr, w := fc.f, fc.cr, fc.w
	cr.discard(headLen)
	if vv := req.Header["X-Request-Id"]; len(vv) == 0 || vv[0] == "" {
		// What the handler would do, without a slice of its own.
		fc.id[0] = NewRequestID()
		req.Header["X-Request-Id"] = fc.id[:]
	}
	if req.ContentLength > int64(len(cr.buffered())) {
		// The body is still on its way: each of its reads may wait
		// client_body_timeout (frontBody.Read).
		fc.setReadDeadline(time.Now().Add(f.bodyTimeout))
	}
	w.reset(req)
	f.handler.ServeHTTP(w, req)
	if err := w.finish(); err != nil {
		return false
	}
	// The rest of a body the handler did not read (lean requests read
	// theirs) is small: it is at most BodyMax. A body that stopped
	// short ends the connection: what comes next is not a request.
	if fc.body.n > 0 {
		if _, err := io.Copy(io.Discard, &fc.body); err != nil || fc.body.n > 0 {
			return false
		}
	}
	if w.close {
		return false
	}
	// Answer now, as net/http does, even when the next request is already
	// here: it may be held or slow, and this answer must not wait for it.
	if w.flush() != nil {
		return false
	}
	w.release()
	return true
}

// readHead returns the request head, up to and including the blank line,
// without consuming it, reading more as needed. Blank lines before it are
// skipped (RFC 9112 section 2.2); errNoHead when that leaves nothing. Once
// part of a head is there, and before reading the rest, it calls more. An
// error when the head does not fit in the buffer (errHeadTooLarge) or the
// connection fails.
func readHead(cr *connReader, more func()) ([]byte, error) {
	for begun := false; ; {
		cr.skipBlankLines() // the LF of a CRLF may come in a read of its own
		buf := cr.buffered()
		if len(buf) == 0 {
			return nil, errNoHead
		}
		n, bareLF := httpsyntax.HeadEnd(buf)
		if bareLF {
			return nil, errBareLF
		}
		if n >= 0 {
			return buf[:n], nil
		}
		if !begun && string(buf) != "\r" { // a lone CR may be a blank line's
			begun = true
			more()
		}
		if err := cr.fill(); err != nil {
			return nil, err
		}
	}
}

var (
	// Heads that net/http reads instead of the front.
	errHeadTooLarge = errors.New("request head larger than the read buffer")
	errBareLF       = errors.New("request head with bare LF line ends")
	// errNoHead: only blank lines came, which the front skips.
	errNoHead = errors.New("no request head yet")
)

// parseRequest parses head, a whole request head as readHead returns it
// (every line ends in CRLF), into fc's request and returns it, or returns
// nil when the front does not serve it: the front serves HTTP/1.x with no
// upgrade, no Expect, no chunked body, a body of known length that the lean
// path takes, one valid Host, and well-formed fields. Anything else goes to
// net/http, which serves it or rejects it as it always does.
//
// The request is what http.ReadRequest makes of the same head, but for
// Pragma, which is passed on as sent.
func (fc *frontConn) parseRequest(head []byte) *http.Request {
	text := string(head)
	line, rest := cutLine(text)
	method, rest1, ok1 := strings.Cut(line, " ")
	target, proto, ok2 := strings.Cut(rest1, " ")
	if !ok1 || !ok2 || !httpsyntax.Token(method) || method == http.MethodConnect || target == "" {
		return nil
	}
	req := &fc.req
	*req = fc.base
	switch proto {
	case "HTTP/1.1":
		req.ProtoMinor = 1
	case "HTTP/1.0":
	default:
		return nil // HTTP/2 prior knowledge, HTTP/0.9, garbage
	}
	req.Proto, req.ProtoMajor = proto, 1
	req.Method, req.RequestURI = method, target
	if !fc.parseTarget(req, target) {
		return nil
	}
	clear(fc.header)
	h := fc.header
	values := fc.values[:0]
	hosts, length, seenLength := 0, int64(0), false
	var connection string
	for rest != "" {
		var field string
		field, rest = cutLine(rest)
		if field == "" {
			continue // the blank line that ends the head
		}
		name, value, ok := strings.Cut(field, ":")
		if !ok || !httpsyntax.Token(name) || !httpsyntax.FieldValue(value) {
			return nil
		}
		value = strings.Trim(value, " \t")
		key := textproto.CanonicalMIMEHeaderKey(name)
		switch key {
		case "Upgrade", "Expect", "Transfer-Encoding":
			return nil
		case "Host":
			hosts++
			if !hostBytes.All(value) {
				return nil
			}
			if req.Host == "" {
				req.Host = value
			} else if !httpsyntax.SameName(value, req.Host) {
				return nil // an absolute target's host differs: a vettedConn refuses it
			}
			continue // http.Request keeps it in Host, not in Header
		case "Content-Length":
			n, ok := httpsyntax.ContentLength(value)
			if !ok || n > BodyMax || seenLength {
				return nil // a repeated length is net/http's to judge
			}
			length, seenLength = n, true
		case "Connection":
			connection += "," + value
		}
		if vv := h[key]; vv != nil {
			h[key] = append(vv, value) // a repeated field: rare
			continue
		}
		values = append(values, value)
		h[key] = values[len(values)-1 : len(values) : len(values)]
	}
	fc.values = values
	if hosts > 1 || hosts == 0 && req.ProtoMinor == 1 {
		return nil
	}
	req.Header = h
	req.RemoteAddr = fc.remote
	req.Close = httpsyntax.HasToken(connection, "close") ||
		req.ProtoMinor == 0 && !httpsyntax.HasToken(connection, "keep-alive")
	req.ContentLength = length
	req.Body = http.NoBody
	fc.body = frontBody{fc: fc, n: length}
	if length > 0 {
		req.Body = &fc.body
	}
	return req
}

// cutLine returns the first line of s without its CRLF, and the rest. Every
// line of a head that readHead returns ends in CRLF.
func cutLine(s string) (line, rest string) {
	i := strings.IndexByte(s, '\n')
	return s[:i-1], s[i+1:]
}

// parseTarget sets req.URL (and req.Host for an absolute URL) from the
// request target; false if net/http should judge it. The usual target — a
// path and a query of plain characters — is split without url.Parse, to
// the same result.
func (fc *frontConn) parseTarget(req *http.Request, target string) bool {
	if target[0] == '/' && plainTarget(target) {
		path, query, hasQuery := strings.Cut(target, "?")
		fc.url = url.URL{Path: path, RawQuery: query, ForceQuery: hasQuery && query == ""}
		req.URL = &fc.url
		return true
	}
	if why, _, _ := vetTarget(req.Method, target); why != "" {
		return false // a vettedConn refuses it
	}
	u, err := url.ParseRequestURI(target)
	if err != nil {
		return false
	}
	req.URL, req.Host = u, u.Host
	return true
}

// plainTarget reports whether target is a path that url.Parse keeps as it
// is — no escapes, nothing it would escape — and a query of visible
// characters.
func plainTarget(target string) bool {
	path, query, _ := strings.Cut(target, "?")
	return pathBytes.All(path) && queryBytes.All(query)
}

var (
	pathBytes  = httpsyntax.NewSet("-._~$&+,/:;=@")
	queryBytes = httpsyntax.NewSet("-._~!$&'()*+,;=:@/?%\"<>[]\\^`{|}") // no '#': a fragment is refused
	// hostBytes: what a host and port may hold; net/http judges the rest.
	hostBytes = httpsyntax.NewSet("-._~:[]!$&'()*+,;=%")
)

// frontBody is a plain request's body: the next n bytes of the connection.
// Each read that waits for the client may wait client_body_timeout; a
// failed read fails every later one.
type frontBody struct {
	fc  *frontConn
	n   int64
	err error
}

func (b *frontBody) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if b.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.n {
		p = p[:b.n]
	}
	fc := b.fc
	if len(fc.cr.buffered()) == 0 {
		fc.deadline.Within(fc.c, time.Now(), fc.f.bodyTimeout)
	}
	n, err := fc.cr.Read(p)
	b.n -= int64(n)
	switch {
	case err == io.EOF && b.n > 0:
		err = io.ErrUnexpectedEOF
	case deadline.IsTimeout(err):
		err = &BodyTimeoutError{fc.f.bodyTimeout}
	}
	if err != nil && err != io.EOF {
		b.err = err
	}
	return n, err
}

func (b *frontBody) Close() error { return nil }

// frontWriter is the front's http.ResponseWriter: identity framing when the
// handler set Content-Length, chunked otherwise (close-delimited for
// HTTP/1.0), and none for HEAD, 204 and 304.
type frontWriter struct {
	header      http.Header
	c           net.Conn
	bw          *bufio.Writer // taken when the response begins, given back once sent
	req         *http.Request
	status      int
	wroteHeader bool
	chunked     bool
	noBody      bool
	close       bool  // close the connection after this response
	bytes       int64 // body bytes written, for metrics and the access log
	err         error
	scratch     [20]byte
}

func (w *frontWriter) reset(req *http.Request) {
	if len(w.header) > 0 {
		clear(w.header)
	}
	w.req, w.status, w.wroteHeader, w.chunked, w.noBody, w.err, w.bytes = req, 0, false, false, false, nil, 0
	w.close = req.Close
}

func (w *frontWriter) Header() http.Header { return w.header }

// flush sends what is buffered.
func (w *frontWriter) flush() error {
	if w.bw == nil {
		return nil
	}
	return w.bw.Flush()
}

// release gives the buffered writer back; what it held is dropped.
func (w *frontWriter) release() {
	if w.bw != nil {
		w.bw.Reset(nil)
		frontWriters.Put(w.bw)
		w.bw = nil
	}
}

func (w *frontWriter) WriteHeader(code int) {
	if w.wroteHeader || w.err != nil {
		return
	}
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		// An informational answer (103 Early Hints) goes out at once.
		w.takeBuffer()
		w.writeStatus(code)
		w.header.Write(w.bw)
		w.bw.WriteString("\r\n")
		w.err = w.bw.Flush()
		return
	}
	_, date := w.header["Date"]
	w.writeHead(code, &upstream.Fields{Date: date, Length: len(w.header["Content-Length"]) > 0})
}

// RawHeaderWriter is a ResponseWriter that can send an upstream response's
// header fields as the upstream sent them (the front's own writer), instead
// of from its Header map. WriteRawHeader reports false when it cannot (an
// informational status); the caller then uses the Header map.
type RawHeaderWriter interface {
	WriteRawHeader(code int, fields upstream.Fields) bool
}

// WriteRawHeader is WriteHeader for an upstream response whose fields come
// as sent, less the hop-by-hop ones: they are written as they are, then the
// header map's and the front's own.
func (w *frontWriter) WriteRawHeader(code int, h upstream.Fields) bool {
	if code < 200 {
		return false
	}
	if !w.wroteHeader && w.err == nil {
		w.writeHead(code, &h)
	}
	return true
}

// takeBuffer takes a write buffer when the response begins.
func (w *frontWriter) takeBuffer() {
	if w.bw == nil {
		w.bw = frontWriters.Get().(*bufio.Writer)
		w.bw.Reset(w.c)
	}
}

// writeHead writes the status line, raw's fields, the header map's and the
// framing and Date fields the response needs.
func (w *frontWriter) writeHead(code int, raw *upstream.Fields) {
	w.takeBuffer()
	w.wroteHeader, w.status = true, code
	h := w.header
	w.noBody = w.req.Method == http.MethodHead || code == http.StatusNoContent || code == http.StatusNotModified
	switch {
	case raw.Length || w.noBody:
	case w.req.ProtoAtLeast(1, 1):
		w.chunked = true
		h["Transfer-Encoding"] = []string{"chunked"}
	default:
		w.close = true
	}
	if w.close {
		h["Connection"] = []string{"close"}
	} else if !w.req.ProtoAtLeast(1, 1) {
		h["Connection"] = []string{"keep-alive"} // HTTP/1.0 closes otherwise
	}
	if !raw.Date {
		h["Date"] = httpDate()
	}
	w.writeStatus(code)
	w.bw.Write(raw.Raw)
	if len(h) == 0 {
		_, w.err = w.bw.WriteString("\r\n")
		return
	}
	for k, vv := range h {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			continue
		}
		if k == "Trailer" && !w.chunked {
			continue
		}
		w.writeField(k, vv)
	}
	_, w.err = w.bw.WriteString("\r\n")
}

func (w *frontWriter) writeStatus(code int) {
	if code == http.StatusOK {
		w.bw.WriteString("HTTP/1.1 200 OK\r\n")
		return
	}
	w.bw.WriteString("HTTP/1.1 ")
	w.bw.Write(strconv.AppendInt(w.scratch[:0], int64(code), 10))
	w.bw.WriteByte(' ')
	w.bw.WriteString(http.StatusText(code))
	w.bw.WriteString("\r\n")
}

func (w *frontWriter) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.err != nil {
		return 0, w.err
	}
	if w.noBody || len(p) == 0 {
		return len(p), nil
	}
	if w.chunked {
		w.bw.Write(strconv.AppendInt(w.scratch[:0], int64(len(p)), 16))
		w.bw.WriteString("\r\n")
	}
	n, err := w.bw.Write(p)
	w.bytes += int64(n)
	if err == nil && w.chunked {
		_, err = w.bw.WriteString("\r\n")
	}
	w.err = err
	return n, err
}

// Written reports the final status sent (0 before one) and the body bytes
// (the handler's access log reads it instead of wrapping the writer).
func (w *frontWriter) Written() (int, int64) { return w.status, w.bytes }

// Flush sends what was written so far (server-sent events).
func (w *frontWriter) Flush() {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.err == nil {
		w.err = w.bw.Flush()
	}
}

// finish ends the response: the last chunk and the trailers of a chunked one.
func (w *frontWriter) finish() error {
	if !w.wroteHeader {
		if len(w.header["Content-Length"]) == 0 {
			w.header["Content-Length"] = []string{"0"}
		}
		w.WriteHeader(http.StatusOK)
	}
	if w.err != nil || !w.chunked {
		return w.err
	}
	w.bw.WriteString("0\r\n")
	for k, vv := range w.header {
		name, announced := strings.CutPrefix(k, http.TrailerPrefix)
		if !announced && !w.announced(k) {
			continue
		}
		w.writeField(name, vv)
	}
	_, w.err = w.bw.WriteString("\r\n")
	return w.err
}

// writeField writes a header or trailer field, once per value.
func (w *frontWriter) writeField(name string, values []string) {
	for _, v := range values {
		w.bw.WriteString(name)
		w.bw.WriteString(": ")
		w.bw.WriteString(v)
		w.bw.WriteString("\r\n")
	}
}

// announced reports whether k was declared in the Trailer header.
func (w *frontWriter) announced(k string) bool {
	for _, v := range w.header["Trailer"] {
		for name := range strings.SplitSeq(v, ",") {
			if http.CanonicalHeaderKey(strings.TrimSpace(name)) == k {
				return true
			}
		}
	}
	return false
}

// httpDate is the Date header's value, formatted once a second. The slice
// is shared by every response of that second: nobody writes to it.
func httpDate() []string {
	now := time.Now().Unix()
	if d := cachedDate.Load(); d != nil && d.at == now {
		return d.value
	}
	d := &dateText{at: now, value: []string{time.Unix(now, 0).UTC().Format(http.TimeFormat)}}
	cachedDate.Store(d)
	return d.value
}

type dateText struct {
	at    int64
	value []string
}

var cachedDate atomic.Pointer[dateText]

// handoffListener hands connections that the front will not serve, with the
// bytes it already read from them, to net/http's server.
type handoffListener struct {
	logger hclog.Logger
	ch     chan net.Conn
	done   chan struct{}
	once   sync.Once
	mu     sync.Mutex
	addr   net.Addr
}

func newHandoffListener() *handoffListener {
	return &handoffListener{ch: make(chan net.Conn), done: make(chan struct{})}
}

func (l *handoffListener) setAddr(a net.Addr) {
	l.mu.Lock()
	l.addr = a
	l.mu.Unlock()
}

// push hands c over; the bytes buffered in cr are read first.
func (l *handoffListener) push(c net.Conn, cr *connReader) {
	pc := &vettedConn{Conn: c, logger: l.logger, buf: bytes.Clone(cr.buffered())}
	cr.close()
	select {
	case l.ch <- pc:
	case <-l.done:
		c.Close()
	}
}

func (l *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *handoffListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *handoffListener) Addr() net.Addr {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.addr
}

// NewRequestID returns 16 random hex digits, with one allocation.
func NewRequestID() string {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], rand.Uint64())
	var text [16]byte
	hex.Encode(text[:], b[:])
	return string(text[:])
}

// BodyMax is the largest request body the front reads before it runs the
// handler (a larger one goes to net/http) and that the lean upstream path
// sends from memory; it also fits a socket buffer, so writing it never
// waits on the server.
const BodyMax = 64 << 10
