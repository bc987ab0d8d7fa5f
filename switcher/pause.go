package switcher

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/turnout/turnout/api"
	"github.com/turnout/turnout/state"
)

// pauseRun is a pause in force: every new request is held as during a
// restart, until Resume or, past max, answered by the maintenance page.
type pauseRun struct {
	since   time.Time
	max     time.Duration
	message string
	actor   string
	expired atomic.Bool
	timer   *time.Timer
}

// DefaultPauseMax is how long a pause holds requests when --max is not
// given; MaxPause is the longest a pause may hold them (clients, browsers
// and proxies in front give up long before).
const (
	DefaultPauseMax = 30 * time.Second
	MaxPause        = 10 * time.Minute
)

// ErrPaused is returned by Pause when a pause is already in force.
var ErrPaused = errors.New("already paused")

// Pause holds every new request, as while the app restarts, until Resume;
// past max the held requests and new ones get the maintenance page (with
// message) until Resume. It is recorded in the history.
func (s *Switcher) Pause(max time.Duration, message, actor string) (*api.PauseStatus, error) {
	if max <= 0 {
		max = DefaultPauseMax
	}
	p := &pauseRun{since: time.Now(), max: max, message: message, actor: actor}
	if !s.pause.CompareAndSwap(nil, p) {
		return nil, fmt.Errorf("%w since %s: run `turnout resume` first", ErrPaused, s.pause.Load().since.Format(time.RFC3339))
	}
	p.timer = time.AfterFunc(max, func() {
		p.expired.Store(true)
		s.reroute.broadcast() // the held requests get the page
		s.logger.Warn("pause outlived its --max: requests get the maintenance page until `turnout resume`", "max", max)
	})
	s.record(state.ResultPaused, message, actor, p.since, time.Time{})
	s.logger.Info("paused: requests are held", "max", max, "message", message, "actor", actor)
	return p.status(), nil
}

// Resume ends a pause: the held requests go out oldest first, at the pace
// the app takes them (its servers start slow again). It reports whether a
// pause was in force.
func (s *Switcher) Resume(actor string) bool {
	p := s.pause.Swap(nil)
	if p == nil {
		return false
	}
	p.timer.Stop()
	now := time.Now()
	s.resumedAt.Store(now.UnixNano())
	// Through the line, oldest first, as slots open: no broadcast.
	s.active.Load().SlowStart()
	s.record(state.ResultResumed, p.message, actor, p.since, now)
	s.logger.Info("resumed", "paused_for", now.Sub(p.since).Round(time.Millisecond), "held", s.held.Load(), "actor", actor)
	return true
}

// record writes a pause or resume to the history; a failure is logged, as
// the pause itself works without it.
func (s *Switcher) record(result, reason, actor string, requested, finished time.Time) {
	active := s.Active()
	rec := &state.Record{From: active, To: active, Result: result, Reason: reason, Actor: actor,
		RequestedAt: requested.UTC(), FinishedAt: finished.UTC(), Servers: []state.ServerOutcome{}}
	if err := s.store.RecordSwitch(rec); err != nil {
		s.logger.Error("cannot record the "+result+" in the history", "error", err)
	}
}

// pauseStatus is the pause in force, or nil.
func (s *Switcher) pauseStatus() *api.PauseStatus {
	if p := s.pause.Load(); p != nil {
		return p.status()
	}
	return nil
}

func (p *pauseRun) status() *api.PauseStatus {
	return &api.PauseStatus{Since: p.since.UTC(), Until: p.since.Add(p.max).UTC(), Message: p.message,
		Actor: p.actor, Expired: p.expired.Load()}
}
