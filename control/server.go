package control

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/turnout/turnout/api"
	"github.com/turnout/turnout/state"
	"github.com/turnout/turnout/switcher"
)

// maxControlBody bounds a request body of the control API.
const maxControlBody = 64 << 10

// Timeouts bound every connection of the control API (and of the metrics
// listener), on the unix socket and on TCP, answered 401 or not: its
// request head, its request body, and its wait for a next request. No write
// timeout: a streamed switch answers for as long as the switch runs.
type Timeouts struct {
	Header, Body, Idle time.Duration
}

// defaultTimeouts are the Timeouts of a daemon.
var defaultTimeouts = Timeouts{Header: 10 * time.Second, Body: 10 * time.Second, Idle: 60 * time.Second}

// Server serves the control API, the metrics and the status page of one
// daemon; its handlers call the Switcher's exported methods only.
type Server struct {
	sw       *switcher.Switcher
	logger   hclog.Logger
	timeouts Timeouts
}

// Options configure a Server.
type Options struct {
	Logger hclog.Logger
	// Timeouts; a zero field means the daemon's: 10 s for a head, 10 s for
	// a body, 60 s idle.
	Timeouts Timeouts
}

// New returns the admin surface of sw.
func New(sw *switcher.Switcher, o Options) *Server {
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	for _, d := range []struct {
		set *time.Duration
		def time.Duration
	}{
		{&o.Timeouts.Header, defaultTimeouts.Header},
		{&o.Timeouts.Body, defaultTimeouts.Body},
		{&o.Timeouts.Idle, defaultTimeouts.Idle},
	} {
		if *d.set <= 0 {
			*d.set = d.def
		}
	}
	return &Server{sw: sw, logger: o.Logger, timeouts: o.Timeouts}
}

// Listeners are the daemon's admin listeners, for Switcher.Serve: the
// control API's unix socket (`control`), its TCP listener with bearer
// tokens (`control_listen`), and the metrics and status page
// (`metrics_listen`), each when configured.
func (s *Server) Listeners() []switcher.Listener {
	out := s.controlListeners()
	if addr := s.sw.Config().MetricsListen; addr != "" {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", s.sw.MetricsHandler())
		s.statusPageRoutes(mux)
		out = append(out, s.listener(func() (net.Listener, error) {
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return nil, fmt.Errorf("listen on metrics_listen %s: %w (pick a free address or remove metrics_listen)", addr, err)
			}
			return ln, nil
		}, func(a *switcher.Addrs, addr string) { a.Metrics = addr }, mux))
	}
	return out
}

// listener is a switcher.Listener with the control timeouts.
func (s *Server) listener(listen func() (net.Listener, error), addr func(*switcher.Addrs, string), h http.Handler) switcher.Listener {
	return switcher.Listener{
		Listen: listen, Addr: addr, Handler: bodyDeadline(h, s.timeouts.Body),
		HeaderTimeout: s.timeouts.Header, IdleTimeout: s.timeouts.Idle,
	}
}

// bodyDeadline gives a request with a body that long to send it, from when
// its head was read: a client that stops halfway has its connection closed,
// whether the handler reads the body (decodeBody, which then lifts the
// deadline) or not (a 401: net/http reads what is left before it answers).
func bodyDeadline(next http.Handler, d time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength != 0 {
			http.NewResponseController(w).SetReadDeadline(time.Now().Add(d))
		}
		next.ServeHTTP(w, r)
	})
}

// ndjson is the media type of a streamed switch.
const ndjson = "application/x-ndjson"

// defaultHistoryLimit is the number of records GET /v1/history returns
// without ?limit.
const defaultHistoryLimit = 20

// apiError is an error answer with its status and code.
type apiError struct {
	status int
	code   string
	msg    string
}

func (e *apiError) Error() string { return e.msg }

func badRequest(format string, args ...any) *apiError {
	return &apiError{http.StatusBadRequest, api.CodeBadRequest, fmt.Sprintf(format, args...)}
}

// controlListeners are the control API's unix socket and, when configured,
// its TCP listener.
func (s *Server) controlListeners() []switcher.Listener {
	cfg := s.sw.Config()
	var out []switcher.Listener
	if cfg.Control != "" {
		path := cfg.Control
		out = append(out, s.listener(
			func() (net.Listener, error) { return listenControlSocket(path) },
			func(a *switcher.Addrs, addr string) { a.Control = addr },
			s.controlHandler(unixActor)))
	}
	if cfg.ControlListen != "" {
		addr := cfg.ControlListen
		out = append(out, s.listener(
			func() (net.Listener, error) {
				ln, err := net.Listen("tcp", addr)
				if err != nil {
					return nil, fmt.Errorf("listen on control_listen %s: %w", addr, err)
				}
				s.logger.Info("control API on TCP; every request needs a bearer token", "address", ln.Addr().String())
				return ln, nil
			},
			nil, // Addrs.Control names the unix socket; the TCP address is logged above
			s.requireToken(s.controlHandler(tokenActor))))
	}
	return out
}

// listenControlSocket listens on the unix socket at path: it makes the
// directory, replaces a stale socket that nothing answers on, refuses to
// steal the socket of a live daemon, and makes the socket 0660.
func listenControlSocket(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("create the directory of the control socket %s: %w", path, err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("control socket %s exists and is not a socket: remove it or set another `control` path", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("another turnout is listening on %s: stop it, or give this one another `control` path", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove the stale control socket %s: %w", path, err)
		}
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on control socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		ln.Close()
		return nil, fmt.Errorf("chmod 0660 control socket %s: %w", path, err)
	}
	return peerListener{ln}, nil
}

// peerListener records each connection's peer credentials. http.Server
// puts a connection's LocalAddr in the request context
// (http.LocalAddrContextKey), so peerConn returns a peerAddr carrying the
// peer's uid: that is how a handler learns who is on the other end.
type peerListener struct{ net.Listener }

func (l peerListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	pa := peerAddr{Addr: c.LocalAddr(), uid: -1}
	if uc, ok := c.(*net.UnixConn); ok {
		if raw, err := uc.SyscallConn(); err == nil {
			raw.Control(func(fd uintptr) {
				if cred, err := syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED); err == nil {
					pa.uid = int(cred.Uid)
				}
			})
		}
	}
	return peerConn{Conn: c, local: pa}, nil
}

type peerConn struct {
	net.Conn
	local peerAddr
}

func (c peerConn) LocalAddr() net.Addr { return c.local }

// peerAddr is the local address of a control connection plus the peer's
// uid (-1 when unknown).
type peerAddr struct {
	net.Addr
	uid int
}

// unixActor names the user on the other end of the unix socket: the user
// name of its uid, else "uid:N".
func unixActor(r *http.Request) string {
	pa, ok := r.Context().Value(http.LocalAddrContextKey).(peerAddr)
	if !ok || pa.uid < 0 {
		return "unknown"
	}
	id := strconv.Itoa(pa.uid)
	if u, err := user.LookupId(id); err == nil {
		return u.Username
	}
	return "uid:" + id
}

// tokenNameKey is the context key of the token name requireToken accepted.
type tokenNameKey struct{}

func tokenActor(r *http.Request) string {
	name, _ := r.Context().Value(tokenNameKey{}).(string)
	return name
}

// requireToken lets through requests whose bearer token is one of
// control_tokens, with the token's name in the context; others get 401.
// Every token is compared in constant time, so timing tells nothing about
// which token came close.
func (s *Server) requireToken(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		given, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		name := ""
		if ok && given != "" {
			for n, v := range s.sw.Config().ControlTokens {
				if subtle.ConstantTimeCompare([]byte(given), []byte(v)) == 1 {
					name = n
				}
			}
		}
		if name == "" {
			s.logger.Warn("control request without a valid token", "remote", r.RemoteAddr, "path", r.URL.Path)
			writeError(w, &apiError{http.StatusUnauthorized, api.CodeUnauthorized,
				"missing or wrong bearer token: send `Authorization: Bearer <token>` with a value of control_tokens (the CLI reads it from TURNOUT_TOKEN)"})
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), tokenNameKey{}, name)))
	})
}

// controlHandler routes the control API; actor names who sent a request.
func (s *Server) controlHandler(actor func(*http.Request) string) http.Handler {
	type route struct {
		method string
		serve  func(http.ResponseWriter, *http.Request, string) error
	}
	routes := map[string]route{
		"/v1/status":      {http.MethodGet, s.serveStatus},
		"/v1/switch":      {http.MethodPost, s.serveSwitch},
		"/v1/history":     {http.MethodGet, s.serveHistory},
		"/v1/maintenance": {http.MethodPost, s.serveMaintenance},
		"/v1/reload":      {http.MethodPost, s.serveReload},
		"/v1/pause":       {http.MethodPost, s.servePause},
		"/v1/resume":      {http.MethodPost, s.serveResume},
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rt, ok := routes[r.URL.Path]
		if !ok {
			writeError(w, &apiError{http.StatusNotFound, api.CodeNotFound,
				fmt.Sprintf("no endpoint %s: the control API has /v1/status, /v1/switch, /v1/history, /v1/maintenance, /v1/pause, /v1/resume and /v1/reload", r.URL.Path)})
			return
		}
		if r.Method != rt.method {
			w.Header().Set("Allow", rt.method)
			writeError(w, &apiError{http.StatusMethodNotAllowed, api.CodeBadMethod,
				fmt.Sprintf("%s %s is not supported: use %s", r.Method, r.URL.Path, rt.method)})
			return
		}
		if err := rt.serve(w, r, actor(r)); err != nil {
			writeError(w, err)
		}
	})
}

func (s *Server) serveStatus(w http.ResponseWriter, _ *http.Request, _ string) error {
	writeJSON(w, http.StatusOK, s.sw.Status())
	return nil
}

func (s *Server) serveHistory(w http.ResponseWriter, r *http.Request, _ string) error {
	limit := defaultHistoryLimit
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return badRequest("limit=%q is not a whole number >= 0: pass ?limit=N (0 for the whole history)", v)
		}
		limit = n
	}
	recs, err := s.sw.History(limit)
	if err != nil {
		return &apiError{http.StatusInternalServerError, api.CodeInternal, err.Error()}
	}
	if recs == nil {
		recs = []state.Record{}
	}
	writeJSON(w, http.StatusOK, recs)
	return nil
}

func (s *Server) serveMaintenance(w http.ResponseWriter, r *http.Request, actor string) error {
	var body api.MaintenanceBody
	if err := decodeBody(w, r, &body); err != nil {
		return err
	}
	if body.On == nil {
		return badRequest(`"on" is missing: send {"on": true, "message": "..."} or {"on": false}`)
	}
	if err := s.sw.SetMaintenance(*body.On, body.Message); err != nil {
		return &apiError{http.StatusInternalServerError, api.CodeInternal, err.Error()}
	}
	s.logger.Info("maintenance mode set", "on", *body.On, "actor", actor)
	writeJSON(w, http.StatusOK, map[string]any{"maintenance": *body.On, "message": body.Message})
	return nil
}

func (s *Server) servePause(w http.ResponseWriter, r *http.Request, actor string) error {
	var body api.PauseBody
	if err := decodeBody(w, r, &body); err != nil {
		return err
	}
	max := switcher.DefaultPauseMax
	if body.Max != "" {
		d, err := time.ParseDuration(body.Max)
		if err != nil || d <= 0 || d > switcher.MaxPause {
			return badRequest("bad \"max\" %q: give a duration from 1ms to %s, such as \"30s\"", body.Max, switcher.MaxPause)
		}
		max = d
	}
	p, err := s.sw.Pause(max, body.Message, actor)
	if errors.Is(err, switcher.ErrPaused) {
		return &apiError{http.StatusConflict, api.CodeConflict, err.Error()}
	}
	if err != nil {
		return &apiError{http.StatusInternalServerError, api.CodeInternal, err.Error()}
	}
	writeJSON(w, http.StatusOK, map[string]any{"paused": p})
	return nil
}

func (s *Server) serveResume(w http.ResponseWriter, r *http.Request, actor string) error {
	held := s.sw.Held()
	// Idempotent: a script may resume whatever happened.
	resumed := s.sw.Resume(actor)
	writeJSON(w, http.StatusOK, api.ResumeResult{Resumed: resumed, Held: held})
	return nil
}

func (s *Server) serveReload(w http.ResponseWriter, r *http.Request, actor string) error {
	s.logger.Info("reload requested", "actor", actor)
	if err := s.sw.Reload("api"); err != nil {
		return &apiError{http.StatusUnprocessableEntity, api.CodeInvalidConfig,
			fmt.Sprintf("config not applied, the running config stays: %v", err)}
	}
	writeJSON(w, http.StatusOK, api.ReloadResult{Reloaded: true, Config: s.sw.Status().Config})
	return nil
}

// serveSwitch runs the switch protocol for the caller. With Accept:
// application/x-ndjson it streams each Event as one line as it happens and
// ends with a SwitchResult line; otherwise it answers the SwitchResult
// alone. Errors found before the switch starts (unknown pool, conflict,
// pinned) are plain error answers in both forms. The request's context ends
// when the client goes away, which aborts a switch still warming.
func (s *Server) serveSwitch(w http.ResponseWriter, r *http.Request, actor string) error {
	var body api.SwitchBody
	if err := decodeBody(w, r, &body); err != nil {
		return err
	}
	if strings.TrimSpace(body.To) == "" {
		return badRequest(`"to" is missing: name the pool to switch to, e.g. {"to": "B"}`)
	}
	req := switcher.SwitchRequest{To: body.To, Reason: body.Reason, ExpectActive: body.ExpectActive, Force: body.Force, Actor: actor}
	if body.Timeout != "" {
		d, err := time.ParseDuration(body.Timeout)
		if err != nil || d <= 0 {
			return badRequest(`"timeout": %q is not a positive duration: write it like "30s" or "2m"`, body.Timeout)
		}
		req.Timeout = d
	}

	if body.NoWait {
		ev, err := s.sw.Accept(req)
		if err != nil {
			return switchError(err)
		}
		res := api.SwitchResult{Type: "result", Result: "accepted", From: ev.From, To: ev.To}
		status := http.StatusAccepted
		if ev.Type != "accepted" {
			res.Result, status = "already_active", http.StatusOK
		}
		writeJSON(w, status, res)
		return nil
	}

	stream := strings.Contains(r.Header.Get("Accept"), ndjson)
	var (
		started bool
		enc     = json.NewEncoder(w)
		flusher = http.NewResponseController(w)
	)
	var events func(api.Event)
	if stream {
		events = func(e api.Event) {
			if !started {
				started = true
				w.Header().Set("Content-Type", ndjson)
				w.Header().Set("Cache-Control", "no-store")
				w.WriteHeader(http.StatusOK)
			}
			// A write error means the client left; the context says so too.
			enc.Encode(e)
			flusher.Flush()
		}
	}
	rec, err := s.sw.Switch(r.Context(), req, events)
	res := api.SwitchResult{Type: "result", To: req.To, Record: rec}
	switch {
	case err == nil && rec == nil:
		res.Result = "already_active"
		if name, ok := s.sw.Config().LookupPool(req.To); ok {
			res.To = name
		}
	case err == nil:
		res.Result, res.From, res.To = rec.Result, rec.From, rec.To
	case errors.Is(err, switcher.ErrAborted):
		res.Result, res.Error, res.Code = state.ResultAborted, err.Error(), api.CodeAborted
		if rec != nil {
			res.From, res.To = rec.From, rec.To
		}
	case !started:
		return switchError(err)
	default:
		res.Result, res.Error, res.Code = "error", err.Error(), api.CodeInternal
	}
	if stream {
		// Even a stream without events (already active) is NDJSON.
		if !started {
			w.Header().Set("Content-Type", ndjson)
			w.Header().Set("Cache-Control", "no-store")
		}
		enc.Encode(res)
		flusher.Flush()
		return nil
	}
	status := http.StatusOK
	if res.Code == api.CodeAborted {
		status = http.StatusUnprocessableEntity
	}
	writeJSON(w, status, res)
	return nil
}

// switchError maps an error of Switch or Accept to its answer.
func switchError(err error) *apiError {
	switch {
	case errors.Is(err, switcher.ErrUnknownPool):
		return &apiError{http.StatusNotFound, api.CodeUnknownPool, err.Error()}
	case errors.Is(err, switcher.ErrPinned):
		return &apiError{http.StatusConflict, api.CodePinned, err.Error()}
	case errors.Is(err, switcher.ErrConflict):
		return &apiError{http.StatusConflict, api.CodeConflict, err.Error()}
	case errors.Is(err, switcher.ErrAborted):
		return &apiError{http.StatusUnprocessableEntity, api.CodeAborted, err.Error()}
	}
	return &apiError{http.StatusInternalServerError, api.CodeInternal, err.Error()}
}

// decodeBody reads the whole body (at most maxControlBody) and decodes it
// strictly into v. Reading to the end also lets http.Server notice a client
// that hangs up, which cancels the request's context.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxControlBody))
	if err == nil {
		// The body is in: lift bodyDeadline's deadline, which would
		// otherwise end the request (a switch that streams its progress)
		// through net/http's read in the background.
		http.NewResponseController(w).SetReadDeadline(time.Time{})
	}
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return &apiError{http.StatusRequestEntityTooLarge, api.CodeTooLarge,
				fmt.Sprintf("the request body is over %d bytes: send a smaller JSON object", maxControlBody)}
		}
		return badRequest("read the request body: %v", err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return badRequest("the request body is empty: send a JSON object (see docs/control-api.md for its fields)")
		}
		return badRequest("the request body is not valid: %v: send one JSON object with only the documented fields", err)
	}
	if dec.More() {
		return badRequest("the request body holds more than one JSON value: send one JSON object")
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func writeError(w http.ResponseWriter, err error) {
	var ae *apiError
	if !errors.As(err, &ae) {
		ae = &apiError{http.StatusInternalServerError, api.CodeInternal, err.Error()}
	}
	writeJSON(w, ae.status, api.ErrorBody{Error: ae.msg, Code: ae.code})
}
