package switcher

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
)

// front serves plain HTTP/1.1 on a listener itself: net/http's server costs a
// background reader goroutine, several deadlines and its own bookkeeping per
// request, which is most of what a proxy spends beside system calls. A
// connection whose next request needs more — an upgrade, Expect, a chunked or
// large body, HTTP/2 prior knowledge, a head larger than the read buffer — is
// handed, with the bytes already read, to net/http's server (std) for the rest
// of its life, so every protocol feature stays net/http's.
//
// Unlike net/http, the front does not read the connection in the background
// during every request to notice a client that goes away; it does so only
// while a request is held (watchClient), where that wait may be long. A
// request in flight upstream runs to its end, bounded by upstream_timeout.
type front struct {
	logger        hclog.Logger
	handler       http.Handler
	std           *http.Server // serves the connections handed off
	handoff       *handoffListener
	headerTimeout time.Duration
	idleTimeout   time.Duration

	closing atomic.Bool
	mu      sync.Mutex // guards conns, which change only as connections open and close
	conns   map[*frontConn]struct{}
	wg      sync.WaitGroup
}

func newFront(logger hclog.Logger, handler http.Handler, std *http.Server, headerTimeout, idleTimeout time.Duration) *front {
	f := &front{
		logger: logger, handler: handler, std: std, headerTimeout: headerTimeout, idleTimeout: idleTimeout,
		handoff: newHandoffListener(), conns: make(map[*frontConn]struct{}),
	}
	go std.Serve(f.handoff)
	return f
}

// serve accepts connections on ln until it is closed.
func (f *front) serve(ln net.Listener) error {
	f.handoff.setAddr(ln.Addr())
	for {
		c, err := ln.Accept()
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				continue
			}
			return err
		}
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

// shutdown closes idle connections at once and lets the others finish their
// request, until ctx ends; then it closes what is left. Connections handed
// to net/http are shut down by std.
func (f *front) shutdown(ctx context.Context) {
	f.closing.Store(true)
	f.mu.Lock()
	for fc := range f.conns {
		if fc.idle.Load() {
			fc.c.SetReadDeadline(aLongTimeAgo)
		}
	}
	f.mu.Unlock()
	done := make(chan struct{})
	go func() { f.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		f.mu.Lock()
		for fc := range f.conns {
			fc.c.Close()
		}
		f.mu.Unlock()
		<-done
	}
	if f.std.Shutdown(ctx) != nil {
		f.std.Close()
	}
}

// aLongTimeAgo is a deadline in the past: it makes a blocked read return.
var aLongTimeAgo = time.Unix(1, 0)

// setIdle records whether fc waits for a request; it reports false when the
// front is closing and fc should stop.
//
// No lock: shutdown sets closing before it looks at idle, so a connection it
// misses sees closing here.
func (f *front) setIdle(fc *frontConn, idle bool) bool {
	fc.idle.Store(idle)
	return !f.closing.Load()
}

type frontConn struct {
	f      *front
	c      net.Conn
	idle   atomic.Bool // waiting for a request
	br     *bufio.Reader
	cancel context.CancelFunc // the current request's
}

// clientWatchKey is the context key under which a front request carries its
// *frontConn, for watchClient.
type clientWatchKey struct{}

// watchClient cancels the current request's context when the client goes
// away, until the returned stop is called. The request's body must have
// been read: the watch reads the connection.
func (fc *frontConn) watchClient() (stop func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Data (a pipelined request) means the client is there; an error
		// other than the deadline that stop sets means it is gone.
		if _, err := fc.br.Peek(1); err != nil && !isTimeout(err) {
			fc.cancel()
		}
	}()
	return func() {
		fc.c.SetReadDeadline(aLongTimeAgo)
		<-done
		fc.c.SetReadDeadline(time.Time{})
	}
}

var (
	frontReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4096) }}
	frontWriters = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4096) }}
)

func (fc *frontConn) serve() {
	f := fc.f
	br := frontReaders.Get().(*bufio.Reader)
	br.Reset(fc.c)
	fc.br = br
	bw := frontWriters.Get().(*bufio.Writer)
	bw.Reset(fc.c)
	handedOff := false
	defer func() {
		// As net/http does, a panic in a handler ends its connection, not
		// the daemon; ErrAbortHandler is the quiet way to do so.
		if r := recover(); r != nil && r != http.ErrAbortHandler {
			f.logger.Error("panic serving a request; connection closed", "panic", r, "stack", string(debug.Stack()))
		}
		br.Reset(nil)
		frontReaders.Put(br)
		bw.Reset(nil)
		frontWriters.Put(bw)
		if !handedOff {
			fc.c.Close()
		}
		f.mu.Lock()
		delete(f.conns, fc)
		f.mu.Unlock()
		f.wg.Done()
	}()
	w := &frontWriter{header: make(http.Header), bw: bw}
	for {
		if !f.setIdle(fc, true) {
			return
		}
		fc.c.SetReadDeadline(time.Now().Add(f.idleTimeout))
		if _, err := br.Peek(1); err != nil {
			return
		}
		if !f.setIdle(fc, false) {
			return
		}
		fc.c.SetReadDeadline(time.Now().Add(f.headerTimeout))
		head, err := peekHead(br)
		if err != nil {
			return // a slow or broken client: net/http would answer 408 or 400 and close
		}
		if !plainRequest(head) {
			handedOff = true
			f.handoff.push(fc.c, br)
			return
		}
		req, err := http.ReadRequest(br)
		if err != nil {
			io.WriteString(fc.c, "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n400 Bad Request")
			return
		}
		fc.c.SetReadDeadline(time.Time{})
		req.RemoteAddr = fc.c.RemoteAddr().String()
		ctx, cancel := context.WithCancel(context.Background())
		fc.cancel = cancel
		req = req.WithContext(context.WithValue(ctx, clientWatchKey{}, fc))
		w.reset(req)
		f.handler.ServeHTTP(w, req)
		cancel()
		if err := w.finish(); err != nil {
			return
		}
		// The rest of a body the handler did not read (lean requests read
		// theirs) is small: it is at most leanBodyMax.
		io.Copy(io.Discard, req.Body)
		if w.close {
			bw.Flush()
			return
		}
		if br.Buffered() == 0 {
			// Pipelined requests share one write; otherwise answer now.
			if bw.Flush() != nil {
				return
			}
		}
	}
}

// peekHead returns the request head (up to and including the blank line)
// without consuming it, reading more as needed; an error when the head does
// not fit in the buffer (errHeadTooLarge) or the connection fails.
func peekHead(br *bufio.Reader) ([]byte, error) {
	for {
		buf, _ := br.Peek(br.Buffered())
		if i := bytes.Index(buf, []byte("\r\n\r\n")); i >= 0 {
			return buf[:i+4], nil
		}
		if br.Buffered() == br.Size() {
			return buf, errHeadTooLarge
		}
		if _, err := br.Peek(br.Buffered() + 1); err != nil {
			return nil, err
		}
	}
}

var errHeadTooLarge = errors.New("request head larger than the read buffer")

// plainRequest reports whether the front serves the request whose head is
// head: HTTP/1.x with no upgrade, no Expect, no chunked body, a body of known
// length that the lean path takes, one Host, and well-formed header fields.
// Anything else goes to net/http, which serves it or rejects it as it
// always does.
func plainRequest(head []byte) bool {
	line, rest, ok := bytes.Cut(head, []byte("\r\n"))
	http11 := bytes.HasSuffix(line, []byte(" HTTP/1.1"))
	if !ok || !http11 && !bytes.HasSuffix(line, []byte(" HTTP/1.0")) {
		return false // HTTP/2 prior knowledge, HTTP/0.9, garbage
	}
	hosts := 0
	for len(rest) > 0 {
		var field []byte
		field, rest, _ = bytes.Cut(rest, []byte("\r\n"))
		if len(field) == 0 {
			continue // the blank line that ends the head
		}
		name, value, ok := bytes.Cut(field, []byte(":"))
		if !ok || !validFieldName(name) || !validFieldValue(value) {
			return false
		}
		switch strings.ToLower(string(name)) {
		case "upgrade", "expect", "transfer-encoding":
			return false
		case "host":
			hosts++
		case "content-length":
			n, err := strconv.ParseInt(string(bytes.TrimSpace(value)), 10, 64)
			if err != nil || n < 0 || n > leanBodyMax {
				return false
			}
		}
	}
	return hosts == 1 || !http11 && hosts == 0
}

// validFieldName reports whether b is a header field name: a token.
func validFieldName(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}

// validFieldValue reports whether b holds no control character but tab.
func validFieldValue(b []byte) bool {
	for _, c := range b {
		if c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// frontWriter is the front's http.ResponseWriter: identity framing when the
// handler set Content-Length, chunked otherwise (close-delimited for
// HTTP/1.0), and none for HEAD, 204 and 304.
type frontWriter struct {
	header      http.Header
	bw          *bufio.Writer
	req         *http.Request
	status      int
	wroteHeader bool
	chunked     bool
	noBody      bool
	close       bool // close the connection after this response
	err         error
}

func (w *frontWriter) reset(req *http.Request) {
	clear(w.header)
	w.req, w.status, w.wroteHeader, w.chunked, w.noBody, w.err = req, 0, false, false, false, nil
	w.close = req.Close
}

func (w *frontWriter) Header() http.Header { return w.header }

func (w *frontWriter) WriteHeader(code int) {
	if w.wroteHeader || w.err != nil {
		return
	}
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		// An informational answer (103 Early Hints) goes out at once.
		w.writeStatus(code)
		w.header.Write(w.bw)
		w.bw.WriteString("\r\n")
		w.err = w.bw.Flush()
		return
	}
	w.wroteHeader, w.status = true, code
	h := w.header
	w.noBody = w.req.Method == http.MethodHead || code == http.StatusNoContent || code == http.StatusNotModified
	switch {
	case len(h["Content-Length"]) > 0 || w.noBody:
	case w.req.ProtoAtLeast(1, 1):
		w.chunked = true
		h["Transfer-Encoding"] = []string{"chunked"}
	default:
		w.close = true
	}
	if w.close {
		h["Connection"] = []string{"close"}
	}
	if _, ok := h["Date"]; !ok {
		h["Date"] = []string{httpDate()}
	}
	w.writeStatus(code)
	for k, vv := range h {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			continue
		}
		if k == "Trailer" && !w.chunked {
			continue
		}
		for _, v := range vv {
			w.bw.WriteString(k)
			w.bw.WriteString(": ")
			w.bw.WriteString(v)
			w.bw.WriteString("\r\n")
		}
	}
	_, w.err = w.bw.WriteString("\r\n")
}

func (w *frontWriter) writeStatus(code int) {
	w.bw.WriteString("HTTP/1.1 ")
	w.bw.WriteString(strconv.Itoa(code))
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
		w.bw.WriteString(strconv.FormatInt(int64(len(p)), 16))
		w.bw.WriteString("\r\n")
	}
	n, err := w.bw.Write(p)
	if err == nil && w.chunked {
		_, err = w.bw.WriteString("\r\n")
	}
	w.err = err
	return n, err
}

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
		for _, v := range vv {
			w.bw.WriteString(name)
			w.bw.WriteString(": ")
			w.bw.WriteString(v)
			w.bw.WriteString("\r\n")
		}
	}
	_, w.err = w.bw.WriteString("\r\n")
	return w.err
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

// httpDate is the Date header, formatted once a second.
func httpDate() string {
	now := time.Now().Unix()
	if d := cachedDate.Load(); d != nil && d.at == now {
		return d.text
	}
	d := &dateText{at: now, text: time.Unix(now, 0).UTC().Format(http.TimeFormat)}
	cachedDate.Store(d)
	return d.text
}

type dateText struct {
	at   int64
	text string
}

var cachedDate atomic.Pointer[dateText]

// handoffListener hands connections that the front will not serve, with the
// bytes it already read from them, to net/http's server.
type handoffListener struct {
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
	mu   sync.Mutex
	addr net.Addr
}

func newHandoffListener() *handoffListener {
	return &handoffListener{ch: make(chan net.Conn), done: make(chan struct{})}
}

func (l *handoffListener) setAddr(a net.Addr) {
	l.mu.Lock()
	l.addr = a
	l.mu.Unlock()
}

// push hands c over; the bytes buffered in br are read first.
func (l *handoffListener) push(c net.Conn, br *bufio.Reader) {
	buffered, _ := br.Peek(br.Buffered())
	pc := &prefixConn{Conn: c, prefix: bytes.Clone(buffered)}
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

// prefixConn is a connection whose first bytes were already read.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}
