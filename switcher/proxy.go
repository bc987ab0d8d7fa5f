package switcher

import (
	"bytes"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/turnout/turnout/front"
	"github.com/turnout/turnout/internal/deadline"
	"github.com/turnout/turnout/internal/httpsyntax"
	"github.com/turnout/turnout/pages"
	"github.com/turnout/turnout/pool"
	"github.com/turnout/turnout/upstream"
)

// Reasons a request gets the maintenance page instead of an upstream response.
var (
	errHoldTimeout = errors.New("no live server in the active pool within hold_timeout")
	errHoldFull    = errors.New("too many held requests (hold_max)")
)

// interceptedError carries an app's own 5xx that intercept_errors replaces.
type interceptedError struct{ status int }

func (e *interceptedError) Error() string { return "intercepted upstream " + http.StatusText(e.status) }

// upstreamHost is the URL host of every upstream request: each server's
// transport dials its own address, and the Host header is the client's.
const upstreamHost = "upstream"

// Handler returns the front HTTP handler: maintenance mode, then the reverse
// proxy to the active pool, every request counted, timed and, with
// access_log, logged. Most requests take the lean path (lean.go); the others
// go through httputil.ReverseProxy for header hygiene, upgrades, trailers
// and streaming, with the Switcher as its Transport.
func (s *Switcher) Handler() http.Handler {
	onError := s.observeProxyError(s.proxyError)
	return &frontHandler{
		s:       s,
		onError: onError,
		rp: &httputil.ReverseProxy{
			Rewrite:        s.rewrite,
			Transport:      s,
			ModifyResponse: s.modifyResponse,
			FlushInterval:  -1, // what comes goes out at once (copyBody: the same on the lean path)
			ErrorHandler:   onError,
			BufferPool:     bufferPool{},
			ErrorLog:       log.New(s.logger.Named("proxy").StandardWriter(&hclog.StandardLoggerOptions{InferLevels: true}), "", 0),
		},
	}
}

// frontHandler is Handler's: one method rather than a chain of wrapped
// handlers, as each would add its frame to every request's stack, at the
// bottom of the exchange's (see sendOnce in upstream/h1.go).
type frontHandler struct {
	s       *Switcher
	rp      *httputil.ReverseProxy
	onError func(http.ResponseWriter, *http.Request, error)
}

func (h *frontHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s := h.s
	start := time.Now()
	if id := r.Header["X-Request-Id"]; len(id) == 0 || id[0] == "" {
		r.Header.Set("X-Request-Id", front.NewRequestID()) // the front sets it; net/http's server does not
	}
	// The front's writer keeps its status; any other gets a recorder.
	sk, ok := w.(statusKeeper)
	var rec *recorder
	if !ok {
		rec = recorders.Get().(*recorder)
		rec.ResponseWriter, rec.code, rec.bytes, rec.upgrade = w, 0, 0, nil
		w, sk = rec, rec
	}
	if rec != nil && r.Body != nil && r.Body != http.NoBody {
		// A body net/http reads: each read may wait client_body_timeout.
		front.NewTimedBody(w, r, s.Config().Proxy.ClientBodyTimeout.D())
	}
	// The pool a request is counted under is the active one when it starts,
	// or none when maintenance mode answers it.
	var (
		pm   *poolMetrics
		note error // what the access log says of a request that failed
	)
	if rec != nil && front.RefuseBadTarget(w, r) {
		// net/http parsed it (TLS, HTTP/2, a connection the front handed
		// over): the request rules it may still break are checked here.
		pm = s.mx.pools[noPool]
	} else if m := s.maintenance.Load(); m.on {
		pm = s.mx.pools[noPool]
		s.mx.maintenance[reasonMaintenanceMode].Inc()
		msg := m.message
		if msg == "" {
			msg = s.Config().Maintenance.Message
		}
		s.writePage(w, r, http.StatusServiceUnavailable, msg)
	} else {
		pm = s.mx.pools[s.active.Load().Name()]
		if leanRequest(r) {
			note = s.serveLean(w, r, h.onError)
		} else {
			note = h.serveProxy(w, r, rec)
		}
	}
	code, bytes := sk.Written()
	if rec != nil {
		rec.ResponseWriter, rec.upgrade = nil, nil
		recorders.Put(rec)
	}
	s.observeRequest(r, pm, code, bytes, time.Since(start), note)
	if _, cut := note.(*cutError); cut {
		panic(http.ErrAbortHandler) // the client must see the response broken
	}
}

// rewrite prepares the upstream request: Host and the raw path and query are
// kept as sent; X-Forwarded-* are set, and incoming ones are kept only from
// trusted proxies.
func (s *Switcher) rewrite(pr *httputil.ProxyRequest) {
	pr.Out.URL.Scheme = "http"
	pr.Out.URL.Host = upstreamHost
	if !s.settings.Load().cfg.Proxy.UnderscoresInHeaders {
		for k := range pr.Out.Header {
			if strings.IndexByte(k, '_') >= 0 {
				delete(pr.Out.Header, k) // see underscores_in_headers
			}
		}
	}
	trusted := s.fromTrustedProxy(pr.In)
	if trusted {
		if v := pr.In.Header["X-Forwarded-For"]; len(v) > 0 {
			pr.Out.Header["X-Forwarded-For"] = v
		}
	}
	pr.SetXForwarded()
	if trusted {
		for _, h := range []string{"X-Forwarded-Host", "X-Forwarded-Proto"} {
			if v := pr.In.Header.Get(h); v != "" {
				pr.Out.Header.Set(h, v)
			}
		}
	}
}

func (s *Switcher) fromTrustedProxy(r *http.Request) bool {
	trusted := s.settings.Load().trusted
	if len(trusted) == 0 {
		return false
	}
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	addr := ap.Addr().Unmap()
	for _, p := range trusted {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// errBadUpgrade rejects a 101 the request did not ask for, or one the client
// connection cannot take (HTTP/2): ReverseProxy would give up on it without
// closing the upstream connection.
var errBadUpgrade = errors.New("upstream switched protocols unasked")

func (s *Switcher) modifyResponse(resp *http.Response) error {
	if !httpsyntax.TokenNames(resp.Header) {
		return upstream.ErrBadFieldName
	}
	s.watchResponse(resp)
	if resp.StatusCode == http.StatusSwitchingProtocols {
		asked := resp.Request.Header.Get("Upgrade")
		if asked == "" || resp.Request.ProtoMajor != 1 || !strings.EqualFold(asked, resp.Header.Get("Upgrade")) {
			return errBadUpgrade
		}
	}
	if resp.StatusCode >= 500 && s.settings.Load().cfg.Proxy.InterceptErrors {
		return &interceptedError{status: resp.StatusCode}
	}
	return nil
}

// proxyError answers a request that got no upstream response: the
// maintenance page (503) when it was held too long or too many were held,
// 504 when the upstream did not answer in time, 502 otherwise.
func (s *Switcher) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	var intercepted *interceptedError
	switch {
	case drainCut(r):
		s.writePage(w, r, http.StatusGatewayTimeout, "")
	case bodyTimedOut(r, err):
		front.AnswerBodyError(w, &front.BodyTimeoutError{After: s.Config().Proxy.ClientBodyTimeout.D()})
	case r.Context().Err() != nil, errors.Is(err, errClientGone):
		// The client went away; nobody reads an answer.
		w.WriteHeader(499)
	case errors.Is(err, errHoldTimeout), errors.Is(err, errHoldFull):
		s.logger.Debug("maintenance page", "reason", err, "path", r.URL.Path)
		s.writePage(w, r, http.StatusServiceUnavailable, s.Config().Maintenance.Message)
	case errors.Is(err, errPaused):
		msg := s.Config().Maintenance.Message
		if p := s.pause.Load(); p != nil && p.message != "" {
			msg = p.message
		}
		s.writePage(w, r, http.StatusServiceUnavailable, msg)
	case errors.As(err, new(*clientBodyError)) && !deadline.IsTimeout(err):
		s.logger.Debug("bad request body", "error", err, "path", r.URL.Path)
		w.Header().Set("Connection", "close")
		http.Error(w, "the request body is malformed or was cut short", http.StatusBadRequest)
	case errors.As(err, &intercepted):
		s.writePage(w, r, intercepted.status, "")
	case deadline.IsTimeout(err):
		s.logger.Warn("upstream timed out", "error", err, "path", r.URL.Path)
		s.writePage(w, r, http.StatusGatewayTimeout, "")
	default:
		s.logger.Warn("upstream failed", "error", err, "path", r.URL.Path)
		s.writePage(w, r, http.StatusBadGateway, "")
	}
}

// writePage writes the maintenance page; an empty message lets the page
// pick a sentence that fits the status.
func (s *Switcher) writePage(w http.ResponseWriter, r *http.Request, status int, message string) {
	st := s.settings.Load()
	st.pages.Write(w, r, pages.Data{
		Status:     status,
		Message:    message,
		RetryAfter: st.cfg.Maintenance.RetryAfter.D(),
		RequestID:  r.Header.Get("X-Request-Id"),
	})
}

// RoundTrip is the ReverseProxy path's transport: it delivers req to a
// server of the active pool with deliver's hold and retry rules.
func (s *Switcher) RoundTrip(req *http.Request) (*http.Response, error) {
	body, err := replayable(req)
	if err != nil {
		return nil, err
	}
	var resp *http.Response
	err = s.deliver(req, body.consumed(), func(srv *pool.Server) error {
		body.rewind(req)
		sentTo(req, srv)
		var err error
		resp, err = srv.RoundTrip(req)
		return err
	})
	return resp, err
}

// maxKeptBody is the largest body of an idempotent request that is kept in
// memory so that the request can be re-sent after a server failed it.
const maxKeptBody = 64 << 10

// replayable wraps req's body so that the request can be sent again as long
// as nothing was read from it. An idempotent request with a small body of
// known length (a POST with an Idempotency-Key) has its body read first, so
// it stays replayable after a server failed it.
func replayable(req *http.Request) (*replayableBody, error) {
	if req.Body == nil || req.Body == http.NoBody {
		return nil, nil
	}
	b := &replayableBody{rc: req.Body}
	if req.ContentLength > 0 && req.ContentLength <= maxKeptBody && upstream.Idempotent(req) {
		data, err := io.ReadAll(io.LimitReader(req.Body, req.ContentLength))
		if err != nil {
			return nil, &clientBodyError{err}
		}
		b.kept = data
	}
	req.Body, req.GetBody = b, b.get
	return b, nil
}

// rewind gives req a fresh copy of a kept body before an attempt.
func (b *replayableBody) rewind(req *http.Request) {
	if b != nil && b.kept != nil {
		req.Body, _ = b.get()
	}
}

// replayableBody lets a request body be sent again as long as nothing was
// read from it, or always when it is kept in memory. Close is a no-op: the
// server closes the real body.
type replayableBody struct {
	rc   io.ReadCloser
	read atomic.Bool
	kept []byte
}

var errBodyConsumed = errors.New("request body already sent")

func (b *replayableBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if n > 0 {
		b.read.Store(true)
	}
	if err != nil && err != io.EOF {
		err = &clientBodyError{err}
	}
	return n, err
}

// clientBodyError is a failure to read the client's request body (a
// malformed chunked body, a cut connection): the client's fault, answered
// 400, not 502.
type clientBodyError struct{ err error }

func (e *clientBodyError) Error() string { return "read the request body: " + e.err.Error() }
func (e *clientBodyError) Unwrap() error { return e.err }

func (b *replayableBody) Close() error { return nil }

// consumed returns a function that reports whether b's body was read.
func (b *replayableBody) consumed() func() bool {
	return func() bool { return b != nil && b.kept == nil && b.read.Load() }
}

func (b *replayableBody) get() (io.ReadCloser, error) {
	if b.kept != nil {
		return io.NopCloser(bytes.NewReader(b.kept)), nil
	}
	if b.consumed()() {
		return nil, errBodyConsumed
	}
	return b, nil
}

// bufferPool reuses the 32 KiB buffers that copy bodies.
type bufferPool struct{}

var buffers = sync.Pool{New: func() any { b := make([]byte, 32*1024); return &b }}

func (bufferPool) Get() []byte  { return *buffers.Get().(*[]byte) }
func (bufferPool) Put(b []byte) { buffers.Put(&b) }
