package switcher

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/turnout/turnout/front"
	"github.com/turnout/turnout/internal/deadline"
	"github.com/turnout/turnout/pool"
	"github.com/turnout/turnout/upstream"
)

// deliver calls send with a server of the active pool until one answers.
// A request that cannot be delivered now (no live server, every server at
// its admission limit, a refused connection, a full backlog, a pause) is
// held: it waits in line for a slot, oldest first, for at most
// hold_timeout. A request that reached a server and failed before its
// response headers is retried once on another server when it is idempotent
// and its body was not consumed (consumed tells).
func (s *Switcher) deliver(req *http.Request, consumed func() bool, send func(*pool.Server) error) error {
	var (
		failed   *pool.Server // excluded from the next pick
		retryErr error        // the failure an idempotent retry answers, if any
		retried  bool         // that retry was granted: there is only one
		h        *holding     // the request's place in line, once it waited
		again    bool         // a first try was made: no more queueing behind others
	)
	defer func() { h.end() }()
	for {
		active := s.active.Load()
		var srv *pool.Server
		switch {
		case again:
			srv = active.PickQueued(failed)
		case s.pause.Load() == nil:
			srv = active.Pick(failed)
		}
		if srv != nil && s.active.Load() != active {
			// A switch swapped pools between the load and the pick: the
			// request belongs to the new pool (and the drain of the old one
			// counted it, so nothing is lost either way).
			srv.Release()
			continue
		}
		if srv == nil {
			if retryErr != nil {
				// No other server to retry on: holding is for requests
				// that were never delivered, so this one fails as it did.
				return retryErr
			}
			if h == nil {
				h = s.startHolding(req.Context())
			}
			var err error
			if srv, err = h.wait(failed); err != nil {
				return err
			}
		}
		again = true
		err := send(srv)
		switch {
		case err == nil:
			return nil
		case req.Context().Err() != nil:
			return err
		case (upstream.IsDialError(err) || upstream.IsOverload(err)) && !consumed():
			// The server never saw the request: any method may go
			// elsewhere, or wait for a slot.
			failed, retryErr = srv, nil
			if h == nil {
				h = s.startHolding(req.Context())
			} else if time.Now().After(h.deadline) && s.pause.Load() == nil {
				return errHoldTimeout
			}
		case !retried && upstream.Idempotent(req) && !consumed() && !deadline.IsTimeout(err):
			retried = true
			// A timeout is not retried: the app is slow, not gone, and a
			// second try would double both its load and the client's wait.
			retryErr, failed = err, srv
		default:
			return err
		}
	}
}

// holding is a held request: its place in line and its deadline.
type holding struct {
	s        *Switcher
	ctx      context.Context
	waiter   *pool.Waiter
	deadline time.Time
	start    time.Time
	waited   bool      // wait was called: the watch and the timer are set
	released time.Time // when the last wait ended
	gone     <-chan struct{}
	stop     func() // ends the client watch
	timer    *time.Timer
}

// startHolding gives a request its place in line: its ticket, taken now,
// orders it behind every request that waited before it.
func (s *Switcher) startHolding(ctx context.Context) *holding {
	now := time.Now()
	return &holding{
		s:        s,
		ctx:      ctx,
		waiter:   pool.NewWaiter(s.tickets.Add(1)),
		start:    now,
		deadline: now.Add(s.settings.Load().cfg.Proxy.HoldTimeout.D()),
	}
}

// wait returns a server with a slot for the request, waiting in the active
// pool's line for one until the deadline (the end of a pause, or
// hold_timeout after it) passes or the client goes away. It is woken by
// the pool when a slot may be free (a response arrived, a server came up)
// and by s.reroute when the active pool or the pause changes: never by
// polling. exclude is skipped on the first try.
func (h *holding) wait(exclude *pool.Server) (*pool.Server, error) {
	s := h.s
	if s.held.Add(1) > int64(s.settings.Load().cfg.Proxy.HoldMax) {
		s.held.Add(-1)
		return nil, errHoldFull
	}
	defer h.waitEnded()
	if !h.waited {
		h.waited = true
		// The hold may be long: notice a client that leaves meanwhile.
		h.gone, h.stop, _ = front.WatchClient(h.ctx, nil)
		h.timer = time.NewTimer(time.Until(h.deadline))
	}
	for {
		reroute := s.reroute.wait()
		active := s.active.Load()
		pause := s.pause.Load()
		if pause != nil && pause.expired.Load() {
			return nil, errPaused
		}
		if first := active.Enqueue(h.waiter); first && pause == nil {
			if srv := active.PickQueued(exclude); srv != nil {
				active.Dequeue(h.waiter)
				return srv, nil
			}
		}
		exclude = nil
		select {
		case <-h.waiter.Ready():
			if s.pause.Load() != nil {
				continue
			}
			if srv := active.PickQueued(nil); srv != nil {
				return srv, nil
			}
		case <-reroute:
			active.Dequeue(h.waiter)
		case <-h.timer.C:
			active.Dequeue(h.waiter)
			if p := s.pause.Load(); p != nil {
				// A pause holds requests until it ends (resume, or --max).
				h.timer.Reset(max(time.Until(p.since.Add(p.max)), time.Millisecond))
				continue
			}
			// The time a pause held the request was the pause's: it gets
			// hold_timeout from the resume.
			if resumed := time.Unix(0, s.resumedAt.Load()); resumed.After(h.start) {
				if d := resumed.Add(s.settings.Load().cfg.Proxy.HoldTimeout.D()); d.After(h.deadline) {
					h.deadline = d
					h.timer.Reset(time.Until(d))
					continue
				}
			}
			return nil, errHoldTimeout
		case <-h.ctx.Done():
			active.Dequeue(h.waiter)
			return nil, h.ctx.Err()
		case <-h.gone:
			active.Dequeue(h.waiter)
			return nil, errClientGone
		}
	}
}

// waitEnded ends one wait in line.
func (h *holding) waitEnded() {
	h.s.held.Add(-1)
	h.released = time.Now()
}

// end releases what the hold took; on a nil holding it does nothing.
func (h *holding) end() {
	if h == nil || !h.waited {
		return
	}
	h.s.observeHold(h.released.Sub(h.start))
	h.timer.Stop()
	if h.stop != nil {
		h.stop()
	}
}

// Held returns the number of requests waiting for a slot on a live server.
func (s *Switcher) Held() int64 { return s.held.Load() }

// errPaused answers requests held by a pause that outlived its --max.
var errPaused = errors.New("paused past its --max")

// errClientGone ends a held request whose client went away.
var errClientGone = fmt.Errorf("the client went away: %w", context.Canceled)
