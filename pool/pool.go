// Package pool owns one upstream pool: its servers and their in-flight
// counters, smooth weighted round robin over the servers that are up, each
// server's admission limit and slow start, the line of requests waiting for
// a server, passive failure marking and draining. It speaks no HTTP (each
// server's clients are package upstream's) and knows nothing of which pool
// is active, of switches or of the front handler; those belong to switcher.
package pool

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/turnout/turnout/config"
	"github.com/turnout/turnout/healthcheck"
)

// Observer hears about every health check result and state change of a
// pool's servers, after the pool has updated its selection. It must not block.
type Observer interface {
	HealthChanged(p *Pool, s *Server, prev healthcheck.State, snap healthcheck.Snapshot)
}

// Options configures a Pool.
type Options struct {
	// Name is the pool's name from the config.
	Name string
	// Transport configures every server's upstream connections.
	Transport TransportOptions
	// Observer may be nil.
	Observer Observer
	// Logger may be nil.
	Logger hclog.Logger
}

// Pool is a named set of servers running one version of the app. Pick is
// lock-free; changes to the server list take the pool's mutex.
type Pool struct {
	name     string
	observer Observer
	logger   hclog.Logger

	mu        sync.Mutex // guards servers, transport and rebuilding the schedule
	servers   []*Server
	transport TransportOptions

	// schedule is the smooth weighted round robin order of the servers that
	// are up, rebuilt on every state or weight change; next indexes it.
	schedule atomic.Pointer[[]*Server]
	next     atomic.Uint64

	queue queue // requests waiting for a slot (queue.go)
}

// New returns an empty pool; add servers with SetServers.
func New(o Options) *Pool {
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	p := &Pool{name: o.Name, observer: o.Observer, logger: o.Logger, transport: o.Transport}
	p.schedule.Store(&[]*Server{})
	return p
}

// Name returns the pool's name.
func (p *Pool) Name() string { return p.name }

// Servers returns the pool's current servers in config order.
func (p *Pool) Servers() []*Server {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*Server(nil), p.servers...)
}

// Pick returns the next server that is up and has a slot (admission.go) in
// smooth weighted round robin order, skipping exclude (a server that just
// failed this request), or nil when there is none or when requests wait in
// the pool's line: a new request queues behind them (Enqueue). The request
// counts as in flight on the server from here on: the caller must end it
// with Server.Exchange, Server.RoundTrip or Server.Release, so that a drain
// that starts after Pick waits for it.
func (p *Pool) Pick(exclude *Server) *Server {
	if p.queue.n.Load() > 0 {
		return nil
	}
	return p.PickQueued(exclude)
}

// PickQueued is Pick for a request that waited its turn in the line.
func (p *Pool) PickQueued(exclude *Server) *Server {
	seq := *p.schedule.Load()
	n := uint64(len(seq))
	if n == 1 {
		// No order to keep: the shared counter, which every request would
		// contend for, is left alone.
		if s := seq[0]; s != exclude && s.State() == healthcheck.Up && s.pick() {
			return s
		}
		return nil
	}
	for range n {
		s := seq[(p.next.Add(1)-1)%n]
		if s != exclude && s.State() == healthcheck.Up && s.pick() {
			return s
		}
	}
	return nil
}

// Live reports whether at least one server is up.
func (p *Pool) Live() bool {
	for _, s := range *p.schedule.Load() {
		if s.State() == healthcheck.Up {
			return true
		}
	}
	return false
}

// Counts returns how many servers are up, and how many there are.
func (p *Pool) Counts() (up, total int) {
	for _, s := range p.Servers() {
		if s.State() == healthcheck.Up {
			up++
		}
		total++
	}
	return up, total
}

// SetServers makes specs the pool's servers. A server whose key (address)
// stays keeps its state, counters and connections and gets the new weight and
// health settings; a new server starts in state initial with its checks at
// interval; a server no longer listed is returned in removed, in state
// draining, for the caller to Drain and Close.
func (p *Pool) SetServers(specs []config.Server, h config.Health, initial healthcheck.State, interval time.Duration) (removed []*Server) {
	p.mu.Lock()
	old := make(map[string]*Server, len(p.servers))
	for _, s := range p.servers {
		old[s.Key()] = s
	}
	servers := make([]*Server, 0, len(specs))
	var kept, started []*Server
	for _, spec := range specs {
		if s, ok := old[spec.Key()]; ok {
			delete(old, spec.Key())
			s.weight.Store(int64(spec.Weight))
			kept = append(kept, s)
			servers = append(servers, s)
			continue
		}
		s := newServer(p, spec, p.transport)
		s.monitor = healthcheck.NewMonitor(healthcheck.Options{
			Server:   spec,
			Health:   h,
			Initial:  initial,
			Interval: interval,
			Observer: s,
			Served:   s.Served,
			Urgent:   p.urgent,
			Logger:   p.logger,
		})
		servers = append(servers, s)
		started = append(started, s)
	}
	for _, s := range p.servers {
		if _, ok := old[s.Key()]; ok {
			removed = append(removed, s)
		}
	}
	p.servers = servers
	p.rebuildLocked()
	p.mu.Unlock()
	// Monitors may call back into the pool, so they are driven without p.mu.
	for _, s := range kept {
		s.monitor.SetHealth(h)
	}
	for _, s := range removed {
		s.monitor.Drain()
	}
	for _, s := range started {
		s.monitor.Start()
	}
	return removed
}

// SetTransport applies new transport options to every server; connections
// in use finish on the old transport.
func (p *Pool) SetTransport(o TransportOptions) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if o == p.transport {
		return
	}
	p.transport = o
	for _, s := range p.servers {
		s.setTransport(o)
	}
}

// SetInterval sets the health check interval of every server.
func (p *Pool) SetInterval(d time.Duration) {
	for _, s := range p.Servers() {
		s.monitor.SetInterval(d)
	}
}

// Probation puts every server in probation: only checks that start from now
// on count toward rise.
func (p *Pool) Probation() {
	for _, s := range p.Servers() {
		s.monitor.Probation()
	}
}

// CloseIdle closes every server's idle upstream connections.
func (p *Pool) CloseIdle() {
	for _, s := range p.Servers() {
		s.closeIdle()
	}
}

// Drain waits until the pool's in-flight requests have finished or timeout
// has passed, closing idle connections on the way; upgraded connections still
// open at the end are closed. It returns the number of requests that were
// still in flight at the timeout.
func (p *Pool) Drain(timeout time.Duration) int {
	return DrainServers(p.Servers(), timeout)
}

// DrainServers drains servers as Pool.Drain does.
func DrainServers(servers []*Server, timeout time.Duration) int {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	left := 0
	for _, s := range servers {
		s.closeIdle()
		if !s.waitIdle(deadline.C) {
			left += int(s.InFlight())
			s.closeUpgraded()
			// The deadline has fired: the rest are not waited for.
			for _, rest := range servers {
				if rest != s {
					left += int(rest.InFlight())
					rest.closeUpgraded()
				}
			}
			return left
		}
		s.closeIdle()
	}
	return left
}

// Close stops every server's health checks and closes idle connections.
func (p *Pool) Close() {
	for _, s := range p.Servers() {
		s.monitor.Close()
		s.stopGate()
		s.closeIdle()
	}
}

// SlowStart puts every server that is up back at the start of its slow
// start (admission.go) and wakes as many waiters as that admits: requests
// held by a pause go out at the pace the app takes them.
func (p *Pool) SlowStart() {
	for _, s := range p.Servers() {
		if s.State() == healthcheck.Up {
			s.slowStart()
			p.wake(startLimit)
		}
	}
}

// urgent reports whether requests wait for this pool: its down servers are
// then checked every few tens of milliseconds, and one pass brings them up.
func (p *Pool) urgent() bool { return p.queue.n.Load() > 0 }

// hurryDown makes the down servers check at once (requests started waiting).
func (p *Pool) hurryDown() {
	for _, s := range p.Servers() {
		if s.State() == healthcheck.Down {
			s.monitor.Hurry()
		}
	}
}

// healthChanged is called by a server's monitor. A server that comes up
// starts slow (admission.go) and lets the first waiters go.
func (p *Pool) healthChanged(s *Server, prev healthcheck.State, snap healthcheck.Snapshot) {
	if prev != snap.State {
		if snap.State == healthcheck.Up {
			s.slowStart()
		}
		p.mu.Lock()
		p.rebuildLocked()
		p.mu.Unlock()
		if snap.State == healthcheck.Up {
			p.wake(startLimit)
		}
	}
	if p.observer != nil {
		p.observer.HealthChanged(p, s, prev, snap)
	}
}

// rebuildLocked recomputes the selection order: nginx's smooth weighted
// round robin, unrolled once over the servers that are up so that Pick is a
// single atomic increment.
func (p *Pool) rebuildLocked() {
	var up []*Server
	var weights []int64
	var total int64
	for _, s := range p.servers {
		if s.State() == healthcheck.Up {
			w := max(s.weight.Load(), 1)
			up = append(up, s)
			weights = append(weights, w)
			total += w
		}
	}
	if g := gcdAll(weights); g > 1 {
		total = 0
		for i := range weights {
			weights[i] /= g
			total += weights[i]
		}
	}
	seq := make([]*Server, 0, total)
	current := make([]int64, len(up))
	for range total {
		best := 0
		for i := range up {
			current[i] += weights[i]
			if current[i] > current[best] {
				best = i
			}
		}
		current[best] -= total
		seq = append(seq, up[best])
	}
	p.schedule.Store(&seq)
}

func gcdAll(xs []int64) int64 {
	var g int64
	for _, x := range xs {
		for x != 0 {
			g, x = x, g%x
		}
	}
	return g
}
