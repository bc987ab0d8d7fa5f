// Package healthcheck owns active health checks (http, tcp) and each upstream
// server's probation/up/down/draining state machine (docs/ARCHITECTURE.md:
// health). It reports to an Observer and never touches pools or traffic; of
// turnout's packages it uses config, and upstream's response-head parser
// (ReadResponse).
package healthcheck

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/turnout/turnout/config"
)

// State is a server's health state.
type State int32

const (
	// Probation: not yet proven; down until Rise consecutive passes.
	Probation State = iota
	// Up: receives traffic.
	Up
	// Down: after Fall consecutive failures or a passive failure; back Up after
	// Rise consecutive passes.
	Down
	// Draining: removed by a reload; no more checks.
	Draining
)

// String returns "probation", "up", "down" or "draining".
func (s State) String() string {
	switch s {
	case Probation:
		return "probation"
	case Up:
		return "up"
	case Down:
		return "down"
	case Draining:
		return "draining"
	}
	return "unknown"
}

// Snapshot is a consistent copy of a server's health.
type Snapshot struct {
	// Server is config.Server.Key().
	Server string
	// State is the server's state.
	State State
	// Passes is the number of consecutive passed checks.
	Passes int
	// Fails is the number of consecutive failed checks (passive failures included).
	Fails int
	// LastError is the last failed check's (or passive failure's) error; "" after a pass.
	LastError string
	// Latency is the duration of the last check.
	Latency time.Duration
	// CheckedAt is when the last check finished (zero before the first).
	CheckedAt time.Time
}

// Observer hears about every check result and every state change. It is
// called from the monitor's own goroutine (or from the goroutine calling
// MarkDown, Probation or Drain), outside the monitor's lock, and must not block
// nor call MarkDown, Probation or Drain. Calls for one monitor never overlap
// and arrive in the order of the changes, so the last s.State seen is the
// current one. For a check that changed no state, prev equals s.State.
type Observer interface {
	HealthChanged(m *Monitor, prev State, s Snapshot)
}

// Options configure a Monitor.
type Options struct {
	// Server is the server to check.
	Server config.Server
	// Health holds the complete, merged settings of the server's pool.
	// A zero Timeout means 1s; a Rise or Fall below 1 means 1.
	Health config.Health
	// Initial is Probation (new server) or Up (trusted after a turnout restart).
	Initial State
	// Interval is the starting check interval (the active pool's
	// Health.Interval, or Health.StandbyInterval). Zero means Health.Interval,
	// or 1s when that is zero too.
	Interval time.Duration
	// Observer hears every result and state change; may be nil.
	Observer Observer
	// Served, when set, counts the server's responses to real requests: a
	// check that timed out (or found the backlog full) while it grew is the
	// app being busy, not down, and does not count as a failure.
	Served func() uint64
	// Urgent, when set, reports whether requests wait for the server's pool:
	// a down server is then checked every recoverInterval (backing off over
	// a long outage) and one pass brings it up.
	Urgent func() bool
	// Logger gets one Info line per state change; nil means no logging.
	Logger hclog.Logger
}

// Monitor checks one server in its own goroutine and keeps its state. All
// methods are safe for concurrent use. A check never overlaps another of the
// same monitor.
type Monitor struct {
	server   config.Server
	key      string
	observer Observer
	served   func() uint64
	urgent   func() bool
	logger   hclog.Logger
	state    atomic.Int32 // mirrors snap.State for the lock-free State

	ctx    context.Context // cancelled by Close; parent of every check
	cancel context.CancelFunc
	wake   chan struct{} // buffered 1: the schedule changed
	done   chan struct{} // closed when the goroutine exited (or was never started)

	startOnce sync.Once
	closeOnce sync.Once

	// reportMu is taken before mu and held until the observer has heard of
	// the change, so that observers see changes one at a time and in order.
	reportMu sync.Mutex

	mu       sync.Mutex
	health   config.Health
	checker  Checker
	interval time.Duration
	snap     Snapshot
	gen      uint64        // bumped to discard results of checks already running
	checking bool          // the goroutine took checker for a check not yet recorded
	next     time.Time     // when the next check starts
	changed  chan struct{} // closed and replaced at each state change
	drained  bool
	downAt   time.Time // when the server last went down
}

// NewMonitor returns a monitor in o.Initial state; checks begin with Start.
func NewMonitor(o Options) *Monitor {
	logger := o.Logger
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	interval := o.Interval
	if interval <= 0 {
		interval = o.Health.Interval.D()
	}
	if interval <= 0 {
		interval = time.Second
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &Monitor{
		server:   o.Server,
		key:      o.Server.Key(),
		observer: o.Observer,
		served:   o.Served,
		urgent:   o.Urgent,
		logger:   logger,
		ctx:      ctx,
		cancel:   cancel,
		wake:     make(chan struct{}, 1),
		done:     make(chan struct{}),
		health:   o.Health,
		checker:  NewChecker(o.Server, o.Health),
		interval: interval,
		snap:     Snapshot{Server: o.Server.Key(), State: o.Initial},
		changed:  make(chan struct{}),
	}
	m.state.Store(int32(o.Initial))
	return m
}

// Start starts the check goroutine. The first check runs after a random
// jitter in [0, min(interval, 1s)), or at once in Probation. Calls after the
// first, or after Close, do nothing.
func (m *Monitor) Start() {
	m.startOnce.Do(func() {
		m.mu.Lock()
		m.next = time.Now()
		if m.snap.State != Probation {
			m.next = m.next.Add(rand.N(min(m.interval, time.Second)))
		}
		m.mu.Unlock()
		go m.run()
	})
}

// Close stops the goroutine, cancels an in-flight check and waits for it to
// exit. It is idempotent.
func (m *Monitor) Close() {
	m.closeOnce.Do(func() {
		m.cancel()
		// A monitor never started has no goroutine to wait for.
		m.startOnce.Do(func() { close(m.done) })
		<-m.done
		m.mu.Lock()
		release(m.checker)
		m.mu.Unlock()
	})
}

// Server returns the server this monitor checks.
func (m *Monitor) Server() config.Server { return m.server }

// State returns the current state without locking; it is meant for every
// proxied request.
func (m *Monitor) State() State { return State(m.state.Load()) }

// Snapshot returns a consistent copy of the server's health.
func (m *Monitor) Snapshot() Snapshot {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.snap
}

// Wait returns a channel closed at the next state change.
func (m *Monitor) Wait() <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.changed
}

// SetInterval sets the check interval at once: the next check is moved to
// min(already scheduled, now+d). A d <= 0 is ignored.
func (m *Monitor) SetInterval(d time.Duration) {
	if d <= 0 {
		return
	}
	m.mu.Lock()
	m.interval = d
	if at := time.Now().Add(d); at.Before(m.next) {
		m.next = at
	}
	m.mu.Unlock()
	m.poke()
}

// SetHealth applies new settings (a config reload): state and counters are
// kept, the checker is rebuilt and new Rise/Fall apply from the next result.
// The interval is changed only by SetInterval.
func (m *Monitor) SetHealth(h config.Health) {
	m.mu.Lock()
	defer m.mu.Unlock()
	// A checker in use is released by record, after its check.
	if !m.checking {
		release(m.checker)
	}
	m.health = h
	m.checker = NewChecker(m.server, h)
}

// Probation puts the server in Probation with zero passes and fails. Results
// of checks that started before this call are discarded, so only fresh checks
// count towards a switch's ready rule; the next check starts at once (after
// one in flight, if any). It does nothing on a Draining server.
func (m *Monitor) Probation() {
	m.interrupt(func() State {
		m.snap.Passes, m.snap.Fails = 0, 0
		m.next = time.Now()
		return Probation
	})
}

// MarkDown records a passive failure from live traffic. An Up server goes
// Down at once (passes 0, LastError set, results of checks already running
// discarded) and its next check is due within the current interval. In other
// states only LastError changes.
func (m *Monitor) MarkDown(err error) {
	msg := "passive failure"
	if err != nil {
		msg = err.Error()
	}
	m.reportMu.Lock()
	defer m.reportMu.Unlock()
	m.mu.Lock()
	m.snap.LastError = msg
	prev := m.snap.State
	if prev != Up {
		m.mu.Unlock()
		return
	}
	m.gen++
	m.snap.Passes = 0
	m.snap.Fails++
	// Only the transition reschedules: a stream of passive failures on a
	// Down server must not keep pushing its checks away.
	s := m.setState(Down)
	if at := time.Now().Add(m.delayLocked()); at.Before(m.next) {
		m.next = at
	}
	m.mu.Unlock()
	m.poke()
	m.report(prev, s)
}

// Drain puts the server in Draining and stops its checks (the server was
// removed by a reload). A check in flight finishes and is discarded.
func (m *Monitor) Drain() {
	m.interrupt(func() State {
		m.drained = true
		return Draining
	})
}

// interrupt moves a server not drained to the state change returns, change
// running under m.mu; the results of checks already running are discarded,
// the goroutine re-reads its schedule and the change is reported.
func (m *Monitor) interrupt(change func() State) {
	m.reportMu.Lock()
	defer m.reportMu.Unlock()
	m.mu.Lock()
	if m.drained {
		m.mu.Unlock()
		return
	}
	m.gen++
	prev := m.snap.State
	s := m.setState(change())
	m.mu.Unlock()
	m.poke()
	m.report(prev, s)
}

// run is the monitor's goroutine: it sleeps until m.next, runs one check,
// records it, and repeats until Close or Drain.
func (m *Monitor) run() {
	defer close(m.done)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		m.mu.Lock()
		if m.drained {
			release(m.checker)
			m.mu.Unlock()
			return
		}
		if wait := time.Until(m.next); wait > 0 {
			m.mu.Unlock()
			timer.Reset(wait)
			select {
			case <-m.ctx.Done():
				return
			case <-m.wake:
			case <-timer.C:
			}
			continue
		}
		gen, checker := m.gen, m.checker
		m.checking = true
		m.mu.Unlock()

		var served uint64
		if m.served != nil {
			served = m.served()
		}
		start := time.Now()
		err := checker.Check(m.ctx)
		if m.ctx.Err() != nil {
			return
		}
		if err != nil && busy(err) && (m.served != nil && m.served() != served || errors.Is(err, syscall.EAGAIN)) {
			err = &busyError{err}
		}
		m.record(gen, checker, err, start, time.Now())
	}
}

// record applies one check result unless a Probation, MarkDown or Drain made
// it stale, and schedules the next check.
func (m *Monitor) record(gen uint64, checker Checker, err error, start, end time.Time) {
	m.reportMu.Lock()
	defer m.reportMu.Unlock()
	m.mu.Lock()
	m.checking = false
	if checker != m.checker {
		// SetHealth replaced it during this check.
		release(checker)
	}
	if gen != m.gen || m.drained {
		m.mu.Unlock()
		return
	}
	rise, fall := max(m.health.Rise, 1), max(m.health.Fall, 1)
	prev := m.snap.State
	if prev == Down && m.urgent != nil && m.urgent() {
		rise = 1 // requests wait: the first fresh pass is evidence enough
	}
	m.snap.Latency = end.Sub(start)
	m.snap.CheckedAt = end
	next := prev
	var be *busyError
	if errors.As(err, &be) {
		// Neither a pass nor a failure: the app is there, and busy.
		m.snap.LastError = be.Error()
	} else if err == nil {
		m.snap.Passes++
		m.snap.Fails = 0
		m.snap.LastError = ""
		if prev != Up && m.snap.Passes >= rise {
			next = Up
		}
	} else {
		m.snap.Fails++
		m.snap.Passes = 0
		m.snap.LastError = err.Error()
		if prev == Up && m.snap.Fails >= fall {
			next = Down
		}
	}
	s := m.setState(next)
	m.next = end.Add(m.delayLocked())
	if next != Down || m.urgent == nil || !m.urgent() {
		m.next = slotted(m.next, m.interval)
	}
	m.mu.Unlock()
	m.report(prev, s)
}

// recoverInterval is how often a down server is checked while requests
// wait for its pool, for the first recoverFor of an outage; past that the
// interval grows in step with the outage, up to the configured one.
const (
	recoverInterval = 50 * time.Millisecond
	recoverFor      = 10 * time.Second
)

// delayLocked is the time until the next check. m.mu must be held.
func (m *Monitor) delayLocked() time.Duration {
	if m.snap.State != Down || m.urgent == nil || !m.urgent() {
		return jitter(m.interval)
	}
	d := recoverInterval
	if down := time.Since(m.downAt); down > recoverFor {
		d = time.Duration(float64(recoverInterval) * float64(down) / float64(recoverFor))
	}
	return min(d, m.interval)
}

// Hurry moves the next check of a down server to within recoverInterval:
// requests started waiting for its pool (Options.Urgent).
func (m *Monitor) Hurry() {
	m.mu.Lock()
	if m.snap.State != Down || m.checking {
		m.mu.Unlock()
		return
	}
	if at := time.Now().Add(m.delayLocked()); at.Before(m.next) {
		m.next = at
	}
	m.mu.Unlock()
	m.poke()
}

// busyError is a check that found the app busy rather than gone: its
// backlog full, or a timeout while it answered real requests.
type busyError struct{ err error }

func (e *busyError) Error() string {
	if errors.Is(e.err, syscall.EAGAIN) {
		return "listen backlog full (the app is busy; not counted as a failure)"
	}
	return e.err.Error() + " while the server answered requests (busy; not counted as a failure)"
}

func (e *busyError) Unwrap() error { return e.err }

// busy reports whether a check's failure may be the app's load: a timeout,
// or a connection refused for a full backlog.
func busy(err error) bool {
	var te *timeoutError
	return errors.As(err, &te) || errors.Is(err, syscall.EAGAIN)
}

// setState sets the state, wakes Wait callers on a change and returns the
// new snapshot. m.mu must be held.
func (m *Monitor) setState(st State) Snapshot {
	if m.snap.State != st {
		if st == Down {
			m.downAt = time.Now()
		}
		m.snap.State = st
		m.state.Store(int32(st))
		close(m.changed)
		m.changed = make(chan struct{})
	}
	return m.snap
}

// report logs a state change and tells the observer; it runs outside m.mu.
func (m *Monitor) report(prev State, s Snapshot) {
	if prev != s.State {
		switch s.State {
		case Up:
			m.logger.Info("server up", "server", m.key, "passes", s.Passes)
		case Down:
			m.logger.Info("server down", "server", m.key, "fails", s.Fails, "error", s.LastError)
		case Probation:
			m.logger.Info("server in probation", "server", m.key, "was", prev.String())
		case Draining:
			m.logger.Info("server draining", "server", m.key, "was", prev.String())
		}
	}
	if m.observer != nil {
		m.observer.HealthChanged(m, prev, s)
	}
}

// poke wakes the goroutine to re-read the schedule; it never blocks.
func (m *Monitor) poke() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// slotted moves t to the nearest multiple of interval/10 (at most 100ms) so
// that the checks of many monitors wake the process in batches rather than
// one by one: most of a check's CPU cost is waking up, for the check and for
// its answer, and the larger the batch the more answers are read per wakeup.
// Rounding to the nearest slot rather than up keeps the mean interval.
func slotted(t time.Time, interval time.Duration) time.Time {
	slot := int64(min(interval/10, 100*time.Millisecond))
	if slot <= 0 {
		return t
	}
	return t.Add(time.Duration(slot/2 - (t.UnixNano()+slot/2)%slot))
}

// jitter spreads d by ±10% so that many monitors do not check in lockstep.
func jitter(d time.Duration) time.Duration {
	return d - d/10 + rand.N(d/5+1)
}
