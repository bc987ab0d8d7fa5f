package switcher

import (
	"time"

	"github.com/turnout/turnout/healthcheck"
	"github.com/turnout/turnout/state"
)

// Status is the daemon's state as `turnout status --json` and GET /v1/status
// show it (SPEC.md 4.8).
type Status struct {
	Active      string          `json:"active"`
	Maintenance bool            `json:"maintenance"`
	Message     string          `json:"maintenance_message,omitempty"`
	Switching   *SwitchProgress `json:"switching"`
	Paused      *PauseStatus    `json:"paused"`
	Held        int64           `json:"held_requests"`
	Pools       []PoolStatus    `json:"pools"`
	Config      ConfigStatus    `json:"config"`
	Version     string          `json:"version"`
}

// SwitchProgress is the switch in progress.
type SwitchProgress struct {
	From        string           `json:"from"`
	To          string           `json:"to"`
	Actor       string           `json:"actor"`
	Reason      string           `json:"reason"`
	RequestedAt time.Time        `json:"requested_at"`
	Deadline    time.Time        `json:"deadline"`
	Servers     []ServerProgress `json:"servers"`
}

// PoolStatus is one pool in Status.
type PoolStatus struct {
	Name    string         `json:"name"`
	Active  bool           `json:"active"`
	Live    bool           `json:"live"`
	Ready   bool           `json:"ready"`
	Waiting int            `json:"waiting_requests"`
	Servers []ServerStatus `json:"servers"`
}

// ServerStatus is one server in Status.
type ServerStatus struct {
	Address   string    `json:"address"`
	Weight    int       `json:"weight"`
	State     string    `json:"state"`
	Passes    int       `json:"passes"`
	Fails     int       `json:"fails"`
	LastError string    `json:"last_error"`
	LatencyMS float64   `json:"latency_ms"`
	CheckedAt time.Time `json:"checked_at,omitzero"`
	InFlight  int64     `json:"in_flight"`
	// Limit is how many requests wait on the server at most while it starts
	// slow or after its backlog overflowed; -1 when it is not limited.
	Limit     int64  `json:"limit"`
	Overloads uint64 `json:"overloads"`
}

// Status returns a snapshot of the pools, the switch in progress,
// maintenance mode and the config in force.
func (s *Switcher) Status() Status {
	cfg := s.Config()
	m := s.maintenance.Load()
	st := Status{
		Active:      s.Active(),
		Maintenance: m.on,
		Message:     m.message,
		Held:        s.held.Load(),
		Paused:      s.pauseStatus(),
		Config:      s.configStatus(),
		Version:     s.version,
	}
	if run := s.switching.Load(); run != nil {
		st.Switching = &SwitchProgress{
			From: run.from.Name(), To: run.to.Name(), Actor: run.req.Actor, Reason: run.req.Reason,
			RequestedAt: run.requestedAt, Deadline: run.deadline, Servers: s.progress(run.to),
		}
	}
	for _, name := range cfg.PoolNames() {
		p := s.pools[name]
		ps := PoolStatus{Name: name, Active: name == st.Active, Live: p.Live(), Waiting: p.Waiting(), Servers: []ServerStatus{}}
		up := 0
		for _, srv := range p.Servers() {
			snap := srv.Monitor().Snapshot()
			if snap.State == healthcheck.Up {
				up++
			}
			ps.Servers = append(ps.Servers, ServerStatus{
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
