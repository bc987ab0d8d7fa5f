// Package switcher is the turnout daemon's core: it owns the two pools, the
// pointer to the active one, the HTTP handler that routes every request to
// the active pool (a lean path and httputil.ReverseProxy) and holds requests
// while a pool restarts, the switch protocol, pauses, config reloads and the
// watch, metrics and the access log. It drives front, upstream, pool,
// healthcheck, state and pages, which call back into it only through
// http.Handler and pool.Observer. The admin surface (control API, status
// page) is package control's, which drives the Switcher through its
// exported methods.
package switcher

import (
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/turnout/turnout/api"
	"github.com/turnout/turnout/config"
	"github.com/turnout/turnout/healthcheck"
	"github.com/turnout/turnout/pages"
	"github.com/turnout/turnout/pool"
	"github.com/turnout/turnout/state"
)

// Options configures a Switcher.
type Options struct {
	// Config is a loaded, valid configuration.
	Config *config.Config
	// Store holds the active pool, maintenance mode and the history: a
	// *state.Store (the bbolt file).
	Store Store
	// Logger may be nil.
	Logger hclog.Logger
	// Version is shown by status and in metrics.
	Version string
}

// Store is what the daemon keeps across restarts: the active pool, the
// maintenance mode and the switch history. state.Store (one bbolt file)
// satisfies it; a store shared by several turnout hosts (etcd) would
// satisfy it too. RecordSwitch must persist a switch's record and, for a
// switch that moves traffic, the new active pool atomically; Path names the
// store in messages.
type Store interface {
	Active() (string, error)
	SetActive(pool string) error
	Maintenance() (on bool, message string, err error)
	SetMaintenance(on bool, message string) error
	RecordSwitch(rec *state.Record) error
	Finish(id uint64, at time.Time) error
	History(limit int) ([]state.Record, error)
	Path() string
}

var _ Store = (*state.Store)(nil)

// Switcher owns the pools and routes every request to the active one.
type Switcher struct {
	logger hclog.Logger
	store  Store

	// settings is everything the request path reads, derived from the
	// config at load time and swapped whole on reload.
	settings atomic.Pointer[settings]
	active   atomic.Pointer[pool.Pool]
	pools    map[string]*pool.Pool // fixed at start: two pools

	// changed wakes switch waiters: a server changed state, or the active
	// pool changed.
	changed signal
	// reroute wakes held requests to look again at where they wait: the
	// active pool changed, or a pause expired. Slots freeing up in the
	// active pool wake them through its line instead (hold.go).
	reroute   signal
	held      atomic.Int64
	tickets   atomic.Uint64 // orders held requests, oldest first
	pause     atomic.Pointer[pauseRun]
	resumedAt atomic.Int64 // UnixNano of the last resume

	upgraded upgradeSet // the client sides of upgraded connections (websockets)
	inflight proxiedSet // the ReverseProxy path's requests in flight

	maintenance atomic.Pointer[maintenanceMode]
	switching   atomic.Pointer[switchRun] // the switch in progress, or nil
	beginMu     sync.Mutex                // makes a switch's checks and reservation one step

	mu sync.Mutex // serialises reloads

	cfgMu     sync.Mutex // guards cfgStatus
	cfgStatus api.ConfigStatus

	version string
	mx      *metrics
}

// settings is the request path's view of the config.
type settings struct {
	cfg     *config.Config
	trusted []netip.Prefix
	pages   *pages.Renderer
}

type maintenanceMode struct {
	on      bool
	message string
}

// New builds the pools and starts their health checks. The active pool is
// the one the state file names, else the config's initial pool; its servers
// start up (trusted, so that a restart of turnout causes no outage) and the
// standby pool starts in probation.
func New(o Options) (*Switcher, error) {
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	s := &Switcher{logger: o.Logger, store: o.Store, pools: make(map[string]*pool.Pool), version: o.Version}
	st, err := newSettings(o.Config)
	if err != nil {
		return nil, err
	}
	s.settings.Store(st)
	s.mx = newMetrics(s, o.Config.PoolNames(), s.logger.Named("access"), o.Version)

	activeName, err := o.Store.Active()
	if err != nil {
		return nil, fmt.Errorf("read the active pool from %s: %w", o.Store.Path(), err)
	}
	if name, ok := o.Config.LookupPool(activeName); ok {
		activeName = name
	} else {
		if activeName != "" {
			s.logger.Warn("the state file names a pool the config does not have; using the config's initial pool",
				"persisted", activeName, "initial", o.Config.InitialPool())
		}
		activeName = o.Config.InitialPool()
		if err := o.Store.SetActive(activeName); err != nil {
			return nil, fmt.Errorf("record the initial pool in %s: %w", o.Store.Path(), err)
		}
	}
	on, msg, err := o.Store.Maintenance()
	if err != nil {
		return nil, fmt.Errorf("read maintenance mode from %s: %w", o.Store.Path(), err)
	}
	s.maintenance.Store(&maintenanceMode{on: on, message: msg})

	transport := transportOptions(o.Config)
	for _, name := range o.Config.PoolNames() {
		pc := o.Config.Pools[name]
		p := pool.New(pool.Options{
			Name:      name,
			Transport: transport,
			Observer:  s,
			Logger:    s.logger.Named("pool").With("pool", name),
		})
		s.pools[name] = p
		initial, interval := healthcheck.Probation, pc.Health.StandbyInterval.D()
		if name == activeName {
			initial, interval = healthcheck.Up, pc.Health.Interval.D()
		}
		p.SetServers(pc.Servers, pc.Health, initial, interval)
	}
	s.active.Store(s.pools[activeName])
	s.setConfigLoaded(o.Config)
	s.logger.Info("pools ready", "active", activeName, "maintenance", on)
	if pinned := o.Config.Active; pinned != "" && pinned != activeName {
		s.logger.Info("the config pins another pool than the state file; switching", "state", activeName, "config", pinned)
		s.mu.Lock()
		s.reconcilePinnedLocked()
		s.mu.Unlock()
	}
	return s, nil
}

func newSettings(cfg *config.Config) (*settings, error) {
	st := &settings{cfg: cfg, pages: pages.New()}
	for _, t := range cfg.TrustedProxies {
		prefix, err := parsePrefix(t)
		if err != nil {
			return nil, fmt.Errorf("trusted_proxies: %w", err)
		}
		st.trusted = append(st.trusted, prefix)
	}
	if cfg.Maintenance.Page != "" {
		r, err := pages.Load(cfg.Maintenance.Page)
		if err != nil {
			return nil, err
		}
		st.pages = r
	}
	return st, nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		return netip.ParsePrefix(s)
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func transportOptions(cfg *config.Config) pool.TransportOptions {
	return pool.TransportOptions{
		DialTimeout:           cfg.Proxy.DialTimeout.D(),
		ResponseHeaderTimeout: cfg.Proxy.UpstreamTimeout.D(),
		ReadTimeout:           cfg.Proxy.UpstreamReadTimeout.D(),
		MaxIdle:               cfg.Proxy.MaxIdlePerServer,
	}
}

// Config returns the configuration in force.
func (s *Switcher) Config() *config.Config { return s.settings.Load().cfg }

// Active returns the name of the active pool.
func (s *Switcher) Active() string { return s.active.Load().Name() }

// StatePath is the path of the state file.
func (s *Switcher) StatePath() string { return s.store.Path() }

// Pool returns the pool of that exact name, or nil.
func (s *Switcher) Pool(name string) *pool.Pool { return s.pools[name] }

// HealthChanged implements pool.Observer: a state change may make a pool
// live, which wakes held requests and switch waiters.
func (s *Switcher) HealthChanged(p *pool.Pool, srv *pool.Server, prev healthcheck.State, snap healthcheck.Snapshot) {
	if prev != snap.State {
		s.changed.broadcast()
	}
	s.notifySwitch(p, snap)
	s.observeHealth(p, srv, prev, snap)
}

// Close stops every health check and closes idle upstream connections.
func (s *Switcher) Close() {
	for _, p := range s.pools {
		p.Close()
	}
}

// signal is a broadcast: wait returns a channel closed at the next broadcast.
type signal struct {
	mu sync.Mutex
	ch chan struct{}
}

func (s *signal) wait() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch == nil {
		s.ch = make(chan struct{})
	}
	return s.ch
}

func (s *signal) broadcast() {
	s.mu.Lock()
	if s.ch != nil {
		close(s.ch)
		s.ch = nil
	}
	s.mu.Unlock()
}
