package switcher

import (
	"github.com/turnout/turnout/healthcheck"
	"github.com/turnout/turnout/pool"
	"github.com/turnout/turnout/state"
)

func (s *Switcher) metricsListeners() []extraListener { return nil }

func (s *Switcher) observeHealth(p *pool.Pool, srv *pool.Server, prev healthcheck.State, snap healthcheck.Snapshot) {
}
func (s *Switcher) observeSwitch(rec *state.Record) {}
func (s *Switcher) observeReload(ok bool)           {}
