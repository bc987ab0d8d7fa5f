package switcher

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/turnout/turnout/api"
	"github.com/turnout/turnout/healthcheck"
	"github.com/turnout/turnout/pool"
	"github.com/turnout/turnout/state"
)

// Errors of the switch protocol; the control API maps them to statuses and
// the CLI to exit codes.
var (
	// ErrUnknownPool: the target names no pool of the config.
	ErrUnknownPool = errors.New("unknown pool")
	// ErrConflict: another switch is in progress, or expect_active did not match.
	ErrConflict = errors.New("conflict")
	// ErrPinned: the config file's `active` key decides the active pool.
	ErrPinned = errors.New("the active pool is pinned by the config file")
	// ErrAborted: the target never became ready; the old pool keeps traffic.
	ErrAborted = errors.New("switch aborted")
)

// SwitchRequest asks for traffic to move to another pool
// (docs/ARCHITECTURE.md: the switch protocol).
type SwitchRequest struct {
	To           string
	Timeout      time.Duration // 0: the config's switch.timeout
	Reason       string
	ExpectActive string
	Force        bool   // skip warming
	Actor        string // who asked: a user, "config", or a token's name
}

// switchRun is the switch in progress.
type switchRun struct {
	from, to    *pool.Pool
	req         SwitchRequest
	requestedAt time.Time
	deadline    time.Time
	checked     chan struct{} // buffered 1: a server of the target was checked

	mu        sync.Mutex
	lastError map[string]string // per server: the last check error seen while warming

	// ctx is cancelled when the config file pins another pool while this
	// switch runs (superseded then says so).
	ctx        context.Context
	cancel     context.CancelFunc
	superseded atomic.Bool
	// recheck: a reload came while this config switch ran; the pin is
	// checked again when it ends, so that a SIGHUP sent as an aborted
	// switch was finishing still tries again.
	recheck atomic.Bool
}

// Switch runs the switch protocol and returns its history record; it returns
// (nil, nil) when req.To is already active. events, when set, hears every
// step. Cancelling ctx before the target is ready aborts the switch; once
// ready, the switch completes whatever happens to ctx.
func (s *Switcher) Switch(ctx context.Context, req SwitchRequest, events func(api.Event)) (*state.Record, error) {
	run, err := s.beginSwitch(req, false)
	if err != nil || run == nil {
		return nil, err
	}
	return s.runSwitch(ctx, run, events)
}

// Accept validates req and reserves the switch, then runs it in the
// background: the --no-wait form. It returns the accepted event.
func (s *Switcher) Accept(req SwitchRequest) (*api.Event, error) {
	run, err := s.beginSwitch(req, false)
	if err != nil {
		return nil, err
	}
	if run == nil {
		return &api.Event{Type: "switched", Time: time.Now().UTC(), To: req.To, Message: "already active"}, nil
	}
	go s.runSwitch(context.Background(), run, nil)
	return &api.Event{Type: "accepted", Time: run.requestedAt, From: run.from.Name(), To: run.to.Name()}, nil
}

// beginSwitch checks req and reserves the switch slot. fromConfig says the
// config file asked (pinned `active`). The checks and the reservation are
// one step under beginMu, so that the active pool read here cannot change
// under a switch that is already running: a request that finds another
// switch in progress is a conflict, whatever it asks for.
func (s *Switcher) beginSwitch(req SwitchRequest, fromConfig bool) (*switchRun, error) {
	s.beginMu.Lock()
	defer s.beginMu.Unlock()
	cfg := s.Config()
	if cur := s.switching.Load(); cur != nil {
		return nil, fmt.Errorf("%w: a switch to %s is in progress; wait for it, or check `turnout status`", ErrConflict, cur.to.Name())
	}
	name, ok := cfg.LookupPool(req.To)
	if !ok {
		return nil, fmt.Errorf("%w %q: the pools are %v", ErrUnknownPool, req.To, cfg.PoolNames())
	}
	from := s.active.Load()
	if name == from.Name() {
		s.logger.Info("switch: pool already active", "to", name, "actor", req.Actor)
		return nil, nil
	}
	if cfg.Active != "" && !fromConfig {
		return nil, fmt.Errorf("%w (active = %q): edit `active` in %s to switch", ErrPinned, cfg.Active, cfg.Path)
	}
	if req.ExpectActive != "" {
		if want, ok := cfg.LookupPool(req.ExpectActive); !ok || want != from.Name() {
			return nil, fmt.Errorf("%w: --expect-active %s, but %s is active", ErrConflict, req.ExpectActive, from.Name())
		}
	}
	timeout := req.Timeout
	if timeout <= 0 {
		timeout = cfg.Switch.Timeout.D()
	}
	now := time.Now().UTC()
	run := &switchRun{
		from: from, to: s.pools[name], req: req,
		requestedAt: now, deadline: now.Add(timeout),
		checked: make(chan struct{}, 1), lastError: make(map[string]string),
	}
	run.ctx, run.cancel = context.WithCancel(context.Background())
	s.switching.Store(run)
	return run, nil
}

func (s *Switcher) runSwitch(ctx context.Context, run *switchRun, events func(api.Event)) (*state.Record, error) {
	defer func() {
		run.cancel()
		// Under the reload lock: a reload sees this run and sets recheck, or
		// sees no run and acts itself; never neither.
		s.mu.Lock()
		s.switching.Store(nil)
		if run.superseded.Load() || run.recheck.Load() {
			// The file names another pool now, or a reload asked again:
			// follow the file.
			s.reconcilePinnedLocked()
		}
		s.mu.Unlock()
	}()
	emit := func(e api.Event) {
		if e.Time.IsZero() {
			e.Time = time.Now().UTC()
		}
		e.From, e.To = run.from.Name(), run.to.Name()
		if events != nil {
			events(e)
		}
	}
	cfg := s.Config()
	log := s.logger.Named("switch").With("from", run.from.Name(), "to", run.to.Name(), "actor", run.req.Actor)
	log.Info("switch requested", "reason", run.req.Reason, "force", run.req.Force, "timeout", run.deadline.Sub(run.requestedAt))
	emit(api.Event{Type: "accepted", Time: run.requestedAt})

	rec := &state.Record{
		From: run.from.Name(), To: run.to.Name(), Reason: run.req.Reason, Actor: run.req.Actor,
		RequestedAt: run.requestedAt, ConfigHash: cfg.Hash, Result: state.ResultSwitched,
	}
	if run.req.Force {
		rec.Result = state.ResultForced
		log.Warn("forced switch: warm-up skipped")
	} else if err := s.warm(ctx, run, emit); err != nil {
		rec.Result = state.ResultAborted
		rec.FinishedAt = time.Now().UTC()
		rec.WarmMS = rec.FinishedAt.Sub(run.requestedAt).Milliseconds()
		rec.Servers = run.outcomes()
		run.to.SetInterval(cfg.Pools[run.to.Name()].Health.StandbyInterval.D())
		if serr := s.store.RecordSwitch(rec); serr != nil {
			log.Error("cannot record the aborted switch", "error", serr)
		}
		log.Warn("switch aborted; the old pool keeps traffic", "error", err)
		emit(api.Event{Type: "aborted", Message: err.Error(), Servers: s.progress(run.to)})
		s.observeSwitch(rec)
		return rec, fmt.Errorf("%w: %v; %s keeps traffic", ErrAborted, err, run.from.Name())
	}
	rec.ReadyAt = time.Now().UTC()
	rec.WarmMS = rec.ReadyAt.Sub(run.requestedAt).Milliseconds()
	rec.Servers = run.outcomes()
	emit(api.Event{Type: "ready", Servers: s.progress(run.to)})

	// Persist first: a crash after this point comes back on the new pool.
	rec.SwitchedAt = time.Now().UTC()
	if err := s.store.RecordSwitch(rec); err != nil {
		err = fmt.Errorf("persist the switch to %s: %w", s.store.Path(), err)
		log.Error("switch aborted; the old pool keeps traffic", "error", err)
		run.to.SetInterval(cfg.Pools[run.to.Name()].Health.StandbyInterval.D())
		emit(api.Event{Type: "aborted", Message: err.Error(), Servers: s.progress(run.to)})
		return nil, fmt.Errorf("%w: %v; %s keeps traffic", ErrAborted, err, run.from.Name())
	}
	// The swap and the intervals that follow from it happen under the
	// reload lock, with the config in force now, so that a reload never
	// sets intervals from a stale idea of which pool is active.
	s.mu.Lock()
	s.active.Store(run.to)
	s.changed.broadcast()
	s.reroute.broadcast()
	cfg = s.Config()
	run.to.SetInterval(cfg.Pools[run.to.Name()].Health.Interval.D())
	run.from.SetInterval(cfg.Pools[run.from.Name()].Health.StandbyInterval.D())
	s.mu.Unlock()
	log.Info("switched", "warm", time.Duration(rec.WarmMS)*time.Millisecond, "id", rec.ID)
	emit(api.Event{Type: "switched", ID: rec.ID})
	s.observeSwitch(rec)

	s.upgraded.goAwayOver(run.from, cfg.Proxy.DrainTimeout.D())
	left := run.from.Drain(cfg.Proxy.DrainTimeout.D())
	if left > 0 {
		s.cutInFlight(run.from)
	}
	rec.FinishedAt = time.Now().UTC()
	if err := s.store.Finish(rec.ID, rec.FinishedAt); err != nil {
		log.Error("cannot record the end of the drain", "error", err)
	}
	msg := "drained"
	if left > 0 {
		msg = fmt.Sprintf("drain_timeout reached with %d requests still in flight", left)
	}
	log.Info("old pool drained", "left", left)
	emit(api.Event{Type: "drained", ID: rec.ID, Message: msg})
	return rec, nil
}

// warm puts the target in probation and waits until its ready rule holds
// with fresh passes only, the deadline passes, or ctx ends.
func (s *Switcher) warm(ctx context.Context, run *switchRun, emit func(api.Event)) error {
	cfg := s.Config()
	run.to.Probation()
	run.to.SetInterval(cfg.Switch.WarmInterval.D())
	timer := time.NewTimer(time.Until(run.deadline))
	defer timer.Stop()
	for {
		up, total := run.to.Counts()
		if s.Config().Switch.Ready.Satisfied(up, total) {
			return nil
		}
		select {
		case <-run.checked:
			emit(api.Event{Type: "progress", Servers: s.progress(run.to)})
		case <-timer.C:
			return fmt.Errorf("%s not ready within %s (%d of %d servers up, ready = %s)",
				run.to.Name(), run.deadline.Sub(run.requestedAt).Round(time.Millisecond), up, total, s.Config().Switch.Ready)
		case <-ctx.Done():
			return fmt.Errorf("cancelled by the caller (%d of %d servers up)", up, total)
		case <-run.ctx.Done():
			return fmt.Errorf("superseded: the config file now pins another pool (%d of %d servers up)", up, total)
		}
	}
}

// notifySwitch tells a warming switch that a server of its target was checked.
func (s *Switcher) notifySwitch(p *pool.Pool, snap healthcheck.Snapshot) {
	if run := s.switching.Load(); run != nil && run.to == p {
		if snap.LastError != "" {
			run.mu.Lock()
			run.lastError[snap.Server] = snap.LastError
			run.mu.Unlock()
		}
		select {
		case run.checked <- struct{}{}:
		default:
		}
	}
}

func (s *Switcher) progress(p *pool.Pool) []api.ServerProgress {
	rise := s.Config().Pools[p.Name()].Health.Rise
	var out []api.ServerProgress
	for _, srv := range p.Servers() {
		snap := srv.Monitor().Snapshot()
		out = append(out, api.ServerProgress{
			Address: snap.Server, State: snap.State.String(), Passes: snap.Passes,
			Rise: rise, LastError: snap.LastError,
		})
	}
	return out
}

// outcomes is the warm-up's result per server; a server that passed its
// last check keeps the last error it had during the warm-up, so that a
// flapping server's record says why it never got ready.
func (run *switchRun) outcomes() []state.ServerOutcome {
	run.mu.Lock()
	defer run.mu.Unlock()
	var out []state.ServerOutcome
	for _, srv := range run.to.Servers() {
		snap := srv.Monitor().Snapshot()
		if snap.LastError == "" {
			snap.LastError = run.lastError[snap.Server]
		}
		out = append(out, state.ServerOutcome{Address: snap.Server, State: snap.State.String(), Passes: snap.Passes, LastError: snap.LastError})
	}
	return out
}

// reconcilePinnedLocked makes the active pool follow the config file's
// `active`, when it pins one: a config switch that warms another pool is
// cancelled (and this runs again when it has ended), and a pool that is not
// the pinned one starts the switch protocol, recorded with actor "config".
// Reloads call it even when the file did not change, so SIGHUP retries a
// config switch that aborted. s.mu is held.
func (s *Switcher) reconcilePinnedLocked() {
	pinned := s.Config().Active
	if pinned == "" {
		return
	}
	if run := s.switching.Load(); run != nil {
		if run.req.Actor == configActor && run.to.Name() != pinned {
			s.logger.Info("the config file pins another pool; cancelling the config switch in progress", "to", run.to.Name(), "pinned", pinned)
			run.superseded.Store(true)
			run.cancel()
		}
		run.recheck.Store(true)
		return
	}
	if s.active.Load().Name() == pinned {
		return
	}
	run, err := s.beginSwitch(SwitchRequest{To: pinned, Actor: configActor, Reason: "active changed in the config file"}, true)
	if err != nil {
		s.logger.Warn("config asks for a switch that cannot start now", "to", pinned, "error", err)
		return
	}
	if run != nil {
		go s.runSwitch(context.Background(), run, nil)
	}
}

// configActor is the history's actor of switches the config file asked for.
const configActor = "config"

// SetMaintenance turns the maintenance page on or off for every request,
// persisting the mode so that a restart keeps it.
func (s *Switcher) SetMaintenance(on bool, message string) error {
	if err := s.store.SetMaintenance(on, message); err != nil {
		return fmt.Errorf("persist maintenance mode in %s: %w", s.store.Path(), err)
	}
	s.maintenance.Store(&maintenanceMode{on: on, message: message})
	s.logger.Info("maintenance mode", "on", on, "message", message)
	return nil
}
