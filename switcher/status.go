package switcher

import (
	"github.com/turnout/turnout/api"
	"github.com/turnout/turnout/healthcheck"
	"github.com/turnout/turnout/state"
)

// Status returns a snapshot of the pools, the switch in progress,
// maintenance mode and the config in force.
func (s *Switcher) Status() api.Status {
	cfg := s.Config()
	m := s.maintenance.Load()
	st := api.Status{
		Active:      s.Active(),
		Maintenance: m.on,
		Message:     m.message,
		Held:        s.held.Load(),
		Paused:      s.pauseStatus(),
		Config:      s.configStatus(),
		Version:     s.version,
	}
	if run := s.switching.Load(); run != nil {
		st.Switching = &api.SwitchProgress{
			From: run.from.Name(), To: run.to.Name(), Actor: run.req.Actor, Reason: run.req.Reason,
			RequestedAt: run.requestedAt, Deadline: run.deadline, Servers: s.progress(run.to),
		}
	}
	for _, name := range cfg.PoolNames() {
		p := s.pools[name]
		ps := api.PoolStatus{Name: name, Active: name == st.Active, Live: p.Live(), Waiting: p.Waiting(), Servers: []api.ServerStatus{}}
		up := 0
		for _, srv := range p.Servers() {
			snap := srv.Monitor().Snapshot()
			if snap.State == healthcheck.Up {
				up++
			}
			ps.Servers = append(ps.Servers, api.ServerStatus{
				Address: snap.Server, Weight: srv.Weight(), State: snap.State.String(),
				Passes: snap.Passes, Fails: snap.Fails, LastError: snap.LastError,
				LatencyMS: float64(snap.Latency.Microseconds()) / 1000, CheckedAt: snap.CheckedAt,
				InFlight: srv.InFlight(), Limit: srv.Limit(), Overloads: srv.Overloads(),
			})
		}
		ps.Ready = cfg.Switch.Ready.Satisfied(up, len(ps.Servers))
		st.Pools = append(st.Pools, ps)
	}
	return st
}

// History returns up to limit switch records, newest first.
func (s *Switcher) History(limit int) ([]state.Record, error) { return s.store.History(limit) }
