package switcher

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/turnout/turnout/api"
	"github.com/turnout/turnout/config"
	"github.com/turnout/turnout/healthcheck"
	"github.com/turnout/turnout/pool"
)

// Reload reads the config file again and applies the difference
// (docs/configuration.md: reloads). A file that fails to parse or validate is not applied: the running
// config stays and the error is kept for status. A file whose content did not
// change is skipped. source ("SIGHUP", "file", "api") is logged.
func (s *Switcher) Reload(source string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.Config()
	cfg, err := config.Load(old.Path)
	if err == nil && cfg.Hash == old.Hash && s.configStatus().LastError == "" {
		s.logger.Debug("config unchanged", "source", source)
		s.reconcilePinnedLocked()
		return nil
	}
	if err == nil {
		err = s.applyLocked(cfg)
	}
	if err != nil {
		s.setConfigError(err)
		s.logger.Error("config not applied; the running config stays", "source", source, "path", old.Path, "error", err)
		s.observeReload(false)
		return err
	}
	s.setConfigLoaded(cfg)
	s.logger.Info("config reloaded", "source", source, "path", cfg.Path, "hash", cfg.Hash)
	s.observeReload(true)
	return nil
}

// applyLocked makes cfg the running config; s.mu is held.
func (s *Switcher) applyLocked(cfg *config.Config) error {
	old := s.Config()
	if !slices.Equal(cfg.PoolNames(), old.PoolNames()) {
		return fmt.Errorf("the pool names changed from %v to %v: renaming pools needs a restart of turnout", old.PoolNames(), cfg.PoolNames())
	}
	for _, field := range restartFields(old, cfg) {
		s.logger.Warn("config change needs a restart of turnout to take effect; the rest is applied", "key", field)
	}
	keepRestartFields(cfg, old)
	st, err := newSettings(cfg)
	if err != nil {
		return err
	}
	s.settings.Store(st)

	transport := transportOptions(cfg)
	for _, name := range cfg.PoolNames() {
		pc, p := cfg.Pools[name], s.pools[name]
		p.SetTransport(transport)
		interval := s.intervalFor(p, pc.Health)
		removed := p.SetServers(pc.Servers, pc.Health, healthcheck.Probation, interval)
		p.SetInterval(interval)
		for _, r := range removed {
			s.logger.Info("server removed; draining", "pool", name, "server", r.Key(), "in_flight", r.InFlight())
		}
		if len(removed) > 0 {
			go func() {
				pool.DrainServers(removed, cfg.Proxy.DrainTimeout.D())
				for _, r := range removed {
					r.Monitor().Close()
				}
			}()
		}
	}
	s.changed.broadcast()
	s.reconcilePinnedLocked()
	return nil
}

// intervalFor is the check interval a pool's servers should run at now.
func (s *Switcher) intervalFor(p *pool.Pool, h config.Health) time.Duration {
	if sw := s.switching.Load(); sw != nil && sw.to == p {
		return s.Config().Switch.WarmInterval.D()
	}
	if s.active.Load() == p {
		return h.Interval.D()
	}
	return h.StandbyInterval.D()
}

// restartFields lists the changed keys that only a restart applies.
func restartFields(old, cfg *config.Config) []string {
	var fields []string
	check := func(name string, changed bool) {
		if changed {
			fields = append(fields, name)
		}
	}
	check("listen", !slices.Equal(old.Listen, cfg.Listen))
	check("tls_listen", !slices.Equal(old.TLSListen, cfg.TLSListen) || old.TLSCert != cfg.TLSCert || old.TLSKey != cfg.TLSKey)
	check("h2c", old.H2C != cfg.H2C)
	check("control", old.Control != cfg.Control)
	check("control_listen", old.ControlListen != cfg.ControlListen)
	check("state", old.State != cfg.State)
	check("metrics_listen", old.MetricsListen != cfg.MetricsListen)
	check("log_level", old.LogLevel != cfg.LogLevel)
	check("log_format", old.LogFormat != cfg.LogFormat)
	check("proxy.client_header_timeout", old.Proxy.ClientHeaderTimeout != cfg.Proxy.ClientHeaderTimeout)
	check("proxy.client_idle_timeout", old.Proxy.ClientIdleTimeout != cfg.Proxy.ClientIdleTimeout)
	check("proxy.client_body_timeout", old.Proxy.ClientBodyTimeout != cfg.Proxy.ClientBodyTimeout)
	check("proxy.engine", old.Proxy.Engine != cfg.Proxy.Engine)
	return fields
}

// keepRestartFields keeps the running values of the keys only a restart
// applies, so that status shows what is really in force.
func keepRestartFields(cfg, old *config.Config) {
	cfg.Listen, cfg.TLSListen, cfg.TLSCert, cfg.TLSKey, cfg.H2C = old.Listen, old.TLSListen, old.TLSCert, old.TLSKey, old.H2C
	cfg.Control, cfg.ControlListen, cfg.State, cfg.MetricsListen = old.Control, old.ControlListen, old.State, old.MetricsListen
	cfg.LogLevel, cfg.LogFormat = old.LogLevel, old.LogFormat
	cfg.Proxy.ClientHeaderTimeout, cfg.Proxy.ClientIdleTimeout = old.Proxy.ClientHeaderTimeout, old.Proxy.ClientIdleTimeout
	cfg.Proxy.ClientBodyTimeout, cfg.Proxy.Engine = old.Proxy.ClientBodyTimeout, old.Proxy.Engine
}

func (s *Switcher) configStatus() api.ConfigStatus {
	s.cfgMu.Lock()
	defer s.cfgMu.Unlock()
	return s.cfgStatus
}

func (s *Switcher) setConfigLoaded(cfg *config.Config) {
	s.cfgMu.Lock()
	s.cfgStatus = api.ConfigStatus{Path: cfg.Path, Hash: cfg.Hash, LoadedAt: time.Now().UTC()}
	s.cfgMu.Unlock()
}

func (s *Switcher) setConfigError(err error) {
	s.cfgMu.Lock()
	s.cfgStatus.LastError = strings.TrimSpace(err.Error())
	s.cfgMu.Unlock()
}
