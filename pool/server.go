package pool

import (
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/turnout/turnout/config"
	"github.com/turnout/turnout/healthcheck"
	"github.com/turnout/turnout/upstream"
)

// TransportOptions configures the upstream connections of a server.
type TransportOptions struct {
	// DialTimeout bounds connecting to the server.
	DialTimeout time.Duration
	// ResponseHeaderTimeout bounds the wait for response headers once the
	// request is written; past it RoundTrip fails with a timeout error.
	ResponseHeaderTimeout time.Duration
	// ReadTimeout bounds each wait for more of a response body that the
	// lean client reads (Exchange); 0: none.
	ReadTimeout time.Duration
	// MaxIdle bounds the idle keep-alive connections kept to the server.
	MaxIdle int
}

// Server is one upstream server of a pool: its address and weight, its health
// monitor, its keep-alive connections and its in-flight requests.
type Server struct {
	pool    *Pool
	spec    config.Server
	weight  atomic.Int64
	monitor *healthcheck.Monitor

	transport atomic.Pointer[transports]
	inFlight  atomic.Int64
	// Admission (admission.go): requests still waiting for their response
	// head, the most of them the server is sent, the level past which the
	// limit grows slowly, and the response heads it has sent.
	pending   atomic.Int64
	limit     atomic.Int64
	threshold atomic.Int64
	served    atomic.Uint64
	overloads atomic.Uint64
	// draining counts the drains waiting for inFlight to reach zero, so that
	// requests take mu only while somebody waits.
	draining atomic.Int32

	doneFn func() // done, bound once: a response body calls it when closed

	mu       sync.Mutex // guards upgraded and idle
	upgraded map[*upgradedConn]struct{}
	idle     chan struct{} // closed when inFlight reaches zero during a drain

	gateMu           sync.Mutex // guards the admission timers and the overflow log
	reopen, lift     *time.Timer
	backoff          time.Duration
	servedAtOverload uint64
	loggedAt         time.Time
	unlogged         int
}

func newServer(p *Pool, spec config.Server, o TransportOptions) *Server {
	s := &Server{pool: p, spec: spec, upgraded: make(map[*upgradedConn]struct{})}
	s.doneFn = s.done
	s.weight.Store(int64(max(spec.Weight, 1)))
	s.limit.Store(unlimited)
	s.threshold.Store(unlimited)
	s.setTransport(o)
	return s
}

// Key is the server's address as the config writes it ("host:port" or "unix:/path").
func (s *Server) Key() string { return s.spec.Key() }

// Weight is the server's current weight.
func (s *Server) Weight() int { return int(s.weight.Load()) }

// State is the server's health state.
func (s *Server) State() healthcheck.State { return s.monitor.State() }

// Monitor is the server's health monitor.
func (s *Server) Monitor() *healthcheck.Monitor { return s.monitor }

// InFlight is the number of requests (and upgraded connections) in progress.
func (s *Server) InFlight() int64 { return s.inFlight.Load() }

// HealthChanged implements healthcheck.Observer for the server's own monitor.
func (s *Server) HealthChanged(_ *healthcheck.Monitor, prev healthcheck.State, snap healthcheck.Snapshot) {
	s.pool.healthChanged(s, prev, snap)
}

// transports are a server's two upstream clients: the lean HTTP/1.1 one
// for requests whose body is in memory (Exchange), and net/http's for the
// rest: upgrades and streamed bodies (RoundTrip).
type transports struct {
	lean *upstream.Client
	std  *http.Transport
}

func (t *transports) closeIdle() {
	t.lean.CloseIdleConnections()
	t.std.CloseIdleConnections()
}

func (s *Server) setTransport(o TransportOptions) {
	uo := upstream.Options{
		Dial:                  upstream.Dialer(s.spec.Key(), s.spec.Network, s.spec.Address, o.DialTimeout),
		ResponseHeaderTimeout: o.ResponseHeaderTimeout,
		ReadTimeout:           o.ReadTimeout,
		MaxIdle:               o.MaxIdle,
	}
	t := &transports{lean: upstream.NewClient(uo), std: upstream.NewTransport(uo)}
	if old := s.transport.Swap(t); old != nil {
		old.lean.Retire()
		old.std.CloseIdleConnections()
	}
}

// RoundTrip sends req, picked for this server by Pool.Pick, to the server. A
// connection failure marks the server down at once (passive check) and
// returns a *upstream.DialError. The in-flight count taken by Pick lasts until the
// response body is closed; an upgraded connection (101) counts until it is
// closed, and is closed by a drain that times out.
func (s *Server) RoundTrip(req *http.Request) (*http.Response, error) {
	served := s.served.Load()
	resp, err := s.transport.Load().std.RoundTrip(req)
	if err != nil {
		return nil, s.failed(err, served)
	}
	s.answered()
	if resp.StatusCode == http.StatusSwitchingProtocols {
		if rwc, ok := resp.Body.(io.ReadWriteCloser); ok {
			u := &upgradedConn{countedBody: countedBody{ReadCloser: rwc, server: s}, Writer: rwc}
			s.mu.Lock()
			s.upgraded[u] = struct{}{}
			s.mu.Unlock()
			resp.Body = u
			return resp, nil
		}
	}
	resp.Body = &countedBody{ReadCloser: resp.Body, server: s}
	return resp, nil
}

// Release ends the in-flight count of a request that Pool.Pick chose this
// server for but that is not sent after all.
func (s *Server) Release() {
	s.unanswered()
	s.done()
}

// failed ends a request that got no response. A refused connection marks
// the server down (passive check); a full backlog is an overload instead
// (admission.go), which returns an *OverloadError.
func (s *Server) failed(err error, served uint64) error {
	s.unanswered()
	s.done()
	if o := s.overloadOf(err, served); o != nil {
		s.overloaded(o)
		return o
	}
	if upstream.IsDialError(err) {
		s.monitor.MarkDown(err)
	}
	return err
}

// Exchange sends a request already encoded in msg (request line, headers,
// a blank line and the body) over a kept-alive HTTP/1.1 connection, and
// reads the response with its headers into reply.Response; req gives the
// context and the method. Errors and the in-flight count are as for
// RoundTrip; after an error, reply holds no response. The response is made
// in reply (not nil), which must not be lent again before its body is
// closed.
//
// The common response (HTTP/1.1, a final status, a declared length) keeps
// its header fields as the server sent them: Response.Header is nil and
// reply.Fields.Raw holds them. They stay valid until the body is first
// read or closed. For any other response, Fields.Raw is nil and
// Response.Header is as net/http parses it.
func (s *Server) Exchange(req *http.Request, msg []byte, reply *upstream.Reply) error {
	served := s.served.Load()
	if err := s.transport.Load().lean.Exchange(req, msg, reply); err != nil {
		if err := s.failed(err, served); upstream.IsDialError(err) || upstream.IsOverload(err) {
			return err
		}
		return fmt.Errorf("%s: %w", s.Key(), err)
	}
	s.answered()
	reply.OnClose(s.doneFn)
	return nil
}

func (s *Server) done() {
	if s.inFlight.Add(-1) == 0 && s.draining.Load() > 0 {
		s.mu.Lock()
		if s.idle != nil {
			close(s.idle)
			s.idle = nil
		}
		s.mu.Unlock()
	}
}

// waitIdle waits until no request is in flight or deadline fires; it
// reports whether the server became idle.
func (s *Server) waitIdle(deadline <-chan time.Time) bool {
	s.draining.Add(1)
	defer s.draining.Add(-1)
	s.mu.Lock()
	if s.idle == nil {
		s.idle = make(chan struct{})
	}
	ch := s.idle
	s.mu.Unlock()
	if s.inFlight.Load() == 0 {
		return true
	}
	select {
	case <-ch:
		return true
	case <-deadline:
		return false
	}
}

func (s *Server) closeIdle() { s.transport.Load().closeIdle() }

func (s *Server) closeUpgraded() {
	s.mu.Lock()
	conns := make([]*upgradedConn, 0, len(s.upgraded))
	for u := range s.upgraded {
		conns = append(conns, u)
	}
	s.mu.Unlock()
	for _, u := range conns {
		u.Close()
	}
}

// countedBody ends a request's in-flight count when its body is first
// closed.
type countedBody struct {
	io.ReadCloser
	server *Server
	closed atomic.Bool
}

func (b *countedBody) Close() error {
	err := b.ReadCloser.Close()
	if b.closed.CompareAndSwap(false, true) {
		b.server.done()
	}
	return err
}

// upgradedConn is the upstream side of an upgraded (websocket) connection:
// a countedBody that is written to as well, listed in the server's
// upgraded set until it is closed.
type upgradedConn struct {
	countedBody
	io.Writer
}

func (u *upgradedConn) Close() error {
	u.server.mu.Lock()
	delete(u.server.upgraded, u)
	u.server.mu.Unlock()
	return u.countedBody.Close()
}
