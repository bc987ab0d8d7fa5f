package switcher

import (
	"context"
	"errors"
	"net"
	"net/http"

	"github.com/turnout/turnout/internal/httpsyntax"
	"github.com/turnout/turnout/pool"
)

// proxied is what the ReverseProxy path learns of one request on its way,
// which httputil.ReverseProxy does not tell its caller: the response body
// it reads (watched for upstream_read_timeout), and for an upgrade, the
// server that took it.
type proxied struct {
	s         *Switcher
	reqBody   *timedBody // the request's body, when net/http reads one
	body      *watchedBody
	want      int64 // the response's announced length (-1: none)
	websocket bool
	server    *pool.Server // set when the server switched protocols
}

type proxiedKey struct{}

// serveProxy serves r through httputil.ReverseProxy. It returns a
// *cutError for a response cut short, which ReverseProxy reports by
// panicking with http.ErrAbortHandler.
func (h *frontHandler) serveProxy(w http.ResponseWriter, r *http.Request, rec *recorder) (note error) {
	st := &proxied{s: h.s, want: -1}
	st.reqBody, _ = r.Body.(*timedBody)
	if len(r.Header["Upgrade"]) > 0 {
		for _, v := range r.Header["Upgrade"] {
			st.websocket = st.websocket || httpsyntax.HasToken(v, "websocket")
		}
		if rec != nil {
			rec.upgrade = st
		}
	}
	r = r.WithContext(context.WithValue(r.Context(), proxiedKey{}, st))
	defer func() {
		if p := recover(); p != nil {
			if p != http.ErrAbortHandler {
				panic(p)
			}
			note = st.cut(r.Context().Err() != nil)
		}
	}()
	h.rp.ServeHTTP(w, r)
	if st.reqBody != nil && st.reqBody.expired() {
		return &bodyTimeoutError{st.reqBody.d} // answered 408
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
	if errors.As(err, new(*bodyTimeoutError)) {
		return true
	}
	st, _ := r.Context().Value(proxiedKey{}).(*proxied)
	return st != nil && st.reqBody != nil && st.reqBody.expired()
}

// upgradedOn notes the server that switched protocols for req.
func upgradedOn(req *http.Request, srv *pool.Server) {
	if st, _ := req.Context().Value(proxiedKey{}).(*proxied); st != nil {
		st.server = srv
	}
}

// track hands the client connection of an upgrade, taken from net/http,
// to the switcher's upgraded set (websocket.go), which closes it when a
// drain needs it closed.
func (st *proxied) track(c net.Conn) net.Conn {
	if st.server == nil {
		return c
	}
	return st.s.upgraded.add(c, st.server, st.websocket)
}
