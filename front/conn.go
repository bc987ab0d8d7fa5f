package front

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/url"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/turnout/turnout/internal/deadline"
	"github.com/turnout/turnout/internal/httpsyntax"
)

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
