package switcher

import (
	"context"
	"errors"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/turnout/turnout/front"
	"github.com/turnout/turnout/internal/httpsyntax"
	"github.com/turnout/turnout/pool"
)

// proxied is what the ReverseProxy path learns of one request on its way,
// which httputil.ReverseProxy does not tell its caller: the server it went
// to, the response body it reads (watched for upstream_read_timeout), and
// how to cut it when a drain's time runs out.
type proxied struct {
	s         *Switcher
	reqBody   *front.TimedBody // the request's body, when net/http reads one
	body      *watchedBody
	want      int64 // the response's announced length (-1: none)
	websocket bool
	server    atomic.Pointer[pool.Server] // set when it is sent
	cancel    context.CancelFunc          // ends the upstream request
	drained   atomic.Bool                 // cancel came from a drain's deadline
}

// proxiedSet is the ReverseProxy path's requests in flight.
type proxiedSet struct {
	mu sync.Mutex
	m  map[*proxied]struct{}
}

func (ps *proxiedSet) add(st *proxied) {
	ps.mu.Lock()
	if ps.m == nil {
		ps.m = make(map[*proxied]struct{})
	}
	ps.m[st] = struct{}{}
	ps.mu.Unlock()
}

func (ps *proxiedSet) remove(st *proxied) {
	ps.mu.Lock()
	delete(ps.m, st)
	ps.mu.Unlock()
}

// cutInFlight cuts the requests still in flight to p's servers, on both
// paths: a drain of p ran out of time.
func (s *Switcher) cutInFlight(p *pool.Pool) {
	p.CutInFlight()
	s.inflight.cutOn(p)
}

// cutOn cuts the ReverseProxy path's requests in flight to p's servers.
func (ps *proxiedSet) cutOn(p *pool.Pool) {
	servers := p.Servers()
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for st := range ps.m {
		if slices.Contains(servers, st.server.Load()) {
			st.drained.Store(true)
			st.cancel()
		}
	}
}

type proxiedKey struct{}

// serveProxy serves r through httputil.ReverseProxy. It returns a
// *cutError for a response cut short, which ReverseProxy reports by
// panicking with http.ErrAbortHandler.
func (h *frontHandler) serveProxy(w http.ResponseWriter, r *http.Request, rec *recorder) (note error) {
	st := &proxied{s: h.s, want: -1}
	st.reqBody, _ = r.Body.(*front.TimedBody)
	if len(r.Header["Upgrade"]) > 0 {
		for _, v := range r.Header["Upgrade"] {
			st.websocket = st.websocket || httpsyntax.HasToken(v, "websocket")
		}
		if rec != nil {
			rec.upgrade = st
		}
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	st.cancel = cancel
	h.s.inflight.add(st)
	defer h.s.inflight.remove(st)
	r = r.WithContext(context.WithValue(ctx, proxiedKey{}, st))
	defer func() {
		if p := recover(); p != nil {
			if p != http.ErrAbortHandler {
				panic(p)
			}
			note = st.cut(r.Context().Err() != nil)
		}
	}()
	h.rp.ServeHTTP(w, r)
	if st.reqBody != nil && st.reqBody.Expired() {
		return st.reqBody.Err() // answered 408
	}
	return nil
}

// cut says why ReverseProxy gave up on the response: the client went away
// (its write failed, or net/http's server cancelled the request when the
// connection ended: gone), or else the upstream's read failed.
func (st *proxied) cut(gone bool) *cutError {
	if st.body == nil {
		return &cutError{why: "response aborted", want: -1}
	}
	sent, err := st.body.failure()
	if st.drained.Load() {
		return &cutError{why: "cut at drain_timeout", sent: sent, want: st.want}
	}
	if err == nil || gone {
		return &cutError{why: "client went away", sent: sent, want: st.want}
	}
	return &cutError{why: cutReason(err, st.s.Config().Proxy.UpstreamReadTimeout.D()), sent: sent, want: st.want}
}

// watchResponse bounds the waits for a response body on the ReverseProxy
// path by upstream_read_timeout; an upgraded connection has none.
func (s *Switcher) watchResponse(resp *http.Response) {
	st, _ := resp.Request.Context().Value(proxiedKey{}).(*proxied)
	if st == nil || resp.StatusCode == http.StatusSwitchingProtocols {
		return
	}
	st.body = newWatchedBody(resp.Body, s.Config().Proxy.UpstreamReadTimeout.D())
	st.want = resp.ContentLength
	resp.Body = st.body
}

// bodyTimedOut reports whether err, or the failure behind it, is the
// request body's client_body_timeout: net/http's transport may report
// instead the request's context, which net/http's server cancels when a
// read of the connection fails.
func bodyTimedOut(r *http.Request, err error) bool {
	if errors.As(err, new(*front.BodyTimeoutError)) {
		return true
	}
	st, _ := r.Context().Value(proxiedKey{}).(*proxied)
	return st != nil && st.reqBody != nil && st.reqBody.Expired()
}

// sentTo notes the server req goes to.
func sentTo(req *http.Request, srv *pool.Server) {
	if st, _ := req.Context().Value(proxiedKey{}).(*proxied); st != nil {
		st.server.Store(srv)
	}
}

// drainCut reports whether r, on the ReverseProxy path, was cut by a
// drain's deadline.
func drainCut(r *http.Request) bool {
	st, _ := r.Context().Value(proxiedKey{}).(*proxied)
	return st != nil && st.drained.Load()
}

// track hands the client connection of an upgrade, taken from net/http,
// to the switcher's upgraded set (websocket.go), which closes it when a
// drain needs it closed.
func (st *proxied) track(c net.Conn) net.Conn {
	srv := st.server.Load()
	if srv == nil {
		return c
	}
	return st.s.upgraded.add(c, srv, st.websocket)
}
