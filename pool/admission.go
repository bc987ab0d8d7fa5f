package pool

import (
	"errors"
	"math"
	"syscall"
	"time"

	"github.com/turnout/turnout/internal/deadline"
	"github.com/turnout/turnout/upstream"
)

// Admission: how many requests a server is sent at once.
//
// App servers queue the connections they have not accepted yet in a small
// listen backlog (uwsgi 100, gunicorn often 64). Requests released all at
// once after a restart overflow it, and the app refuses the rest (EAGAIN on
// a unix socket; dropped SYNs, then a connect timeout, over TCP). So a
// server that comes up, or that overflowed, is sent at most limit requests
// still waiting for their response head ("pending"); the limit starts at
// startLimit and grows by one with every response head (it doubles each
// round trip), by one per limit heads past the level that overflowed last,
// and is lifted past openLimit or after slowStartWindow without an
// overflow. Requests past the limit wait in the pool's queue, oldest first.
// An overflow is not a failure: the request was never sent, so it waits
// for a slot again, and the limit drops to half the requests pending.
const (
	startLimit      = 8
	openLimit       = 1024
	unlimited       = math.MaxInt64
	slowStartWindow = 2 * time.Second

	// After an overflow the server gets no new request until a response
	// head arrives or this backoff passes (doubling while it overflows
	// again without answering, up to maxOverloadBackoff): a backlog that
	// stays full must not be hammered by retries.
	minOverloadBackoff = 10 * time.Millisecond
	maxOverloadBackoff = 200 * time.Millisecond

	// overloadLogEvery bounds the log lines about one server's full
	// backlog; each says how many overflows it sums up.
	overloadLogEvery = 10 * time.Second
)

// overloadOf classifies a failed dial: a full unix-socket backlog (EAGAIN),
// or a TCP connect timeout while the server answered other requests since
// served was read (its backlog dropped our SYNs) is an overload.
func (s *Server) overloadOf(err error, served uint64) *upstream.OverloadError {
	var d *upstream.DialError
	if !errors.As(err, &d) {
		return nil
	}
	if errors.Is(d.Err, syscall.EAGAIN) || deadline.IsTimeout(d.Err) && s.served.Load() != served {
		return &upstream.OverloadError{Server: d.Server, Err: d.Err}
	}
	return nil
}

// pick takes a slot on s if its limit allows: the request counts as pending
// (and in flight) from here on.
func (s *Server) pick() bool {
	if s.limit.Load() == unlimited {
		s.pending.Add(1)
		s.inFlight.Add(1)
		return true
	}
	for {
		n, l := s.pending.Load(), s.limit.Load()
		if n >= l {
			return false
		}
		if s.pending.CompareAndSwap(n, n+1) {
			s.inFlight.Add(1)
			return true
		}
	}
}

// answered ends the pending part of a request whose response head arrived:
// the server is working, so its limit grows and a waiting request may go.
func (s *Server) answered() {
	served := s.served.Add(1)
	s.pending.Add(-1)
	wake := 1
	if l := s.limit.Load(); l != unlimited && s.grows(l, served) {
		wake++
	}
	s.pool.wake(wake)
}

// unanswered ends the pending part of a request that failed or was not sent.
func (s *Server) unanswered() {
	s.pending.Add(-1)
	s.pool.wake(1)
}

// grows raises the limit by one: for every head below the level of the
// last overflow, for every l-th head above it. It reports whether it did.
func (s *Server) grows(l int64, served uint64) bool {
	if l >= s.threshold.Load() && served%uint64(max(l, 1)) != 0 {
		return false
	}
	next := l + 1
	if next >= openLimit {
		next = unlimited
	}
	return s.limit.CompareAndSwap(l, next)
}

// slowStart puts the server back at startLimit (it came up, or requests held
// by a pause are released) for slowStartWindow.
func (s *Server) slowStart() {
	s.gateMu.Lock()
	defer s.gateMu.Unlock()
	s.threshold.Store(unlimited)
	s.limit.Store(startLimit)
	s.armLiftLocked()
}

// overloaded records that the server's backlog was full: it takes no new
// request until a response head arrives or a short backoff passes, then
// half of those pending at the overflow.
func (s *Server) overloaded(err *upstream.OverloadError) {
	s.overloads.Add(1)
	s.gateMu.Lock()
	defer s.gateMu.Unlock()
	resume := max(1, (s.pending.Load()-1)/2)
	s.threshold.Store(resume)
	s.limit.Store(0)
	if s.served.Load() != s.servedAtOverload {
		s.backoff = 0
	}
	s.servedAtOverload = s.served.Load()
	s.backoff = min(max(2*s.backoff, minOverloadBackoff), maxOverloadBackoff)
	if s.reopen == nil {
		s.reopen = time.AfterFunc(s.backoff, s.reopenGate)
	} else {
		s.reopen.Reset(s.backoff)
	}
	s.armLiftLocked()
	s.logOverloadLocked(err)
}

// reopenGate ends an overflow's backoff.
func (s *Server) reopenGate() {
	s.gateMu.Lock()
	opened := s.limit.CompareAndSwap(0, s.threshold.Load())
	s.gateMu.Unlock()
	if opened {
		s.pool.wake(int(min(s.threshold.Load(), math.MaxInt32)))
	}
}

// armLiftLocked lifts the limit slowStartWindow from now, unless an
// overflow comes first and arms it again.
func (s *Server) armLiftLocked() {
	if s.lift == nil {
		s.lift = time.AfterFunc(slowStartWindow, s.liftGate)
	} else {
		s.lift.Reset(slowStartWindow)
	}
}

func (s *Server) liftGate() {
	s.gateMu.Lock()
	s.limit.Store(unlimited)
	s.gateMu.Unlock()
	s.pool.wake(math.MaxInt32)
}

// stopGate stops the server's timers (it is closed).
func (s *Server) stopGate() {
	s.gateMu.Lock()
	defer s.gateMu.Unlock()
	if s.reopen != nil {
		s.reopen.Stop()
	}
	if s.lift != nil {
		s.lift.Stop()
	}
}

func (s *Server) logOverloadLocked(err *upstream.OverloadError) {
	s.unlogged++
	if now := time.Now(); now.Sub(s.loggedAt) >= overloadLogEvery {
		s.pool.logger.Warn("server's listen backlog is full: requests wait in turnout and go out as it accepts them;"+
			" raise its backlog (uwsgi --listen, gunicorn --backlog, and the net.core.somaxconn sysctl) or add workers",
			"server", s.Key(), "overflows", s.unlogged, "error", err.Err)
		s.loggedAt, s.unlogged = now, 0
	}
}

// Limit is how many requests the server may have waiting for a response
// head; -1 when it is not limited.
func (s *Server) Limit() int64 {
	if l := s.limit.Load(); l != unlimited {
		return l
	}
	return -1
}

// Overloads counts the connections the server refused for a full backlog.
func (s *Server) Overloads() uint64 { return s.overloads.Load() }

// Served counts the response heads the server sent: evidence that it works,
// which a health check that timed out meanwhile does not outweigh.
func (s *Server) Served() uint64 { return s.served.Load() }
