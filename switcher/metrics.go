package switcher

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/turnout/turnout/healthcheck"
	"github.com/turnout/turnout/pool"
	"github.com/turnout/turnout/state"
)

// Values of the reason label of turnout_maintenance_responses_total.
const (
	reasonHoldTimeout     = "hold_timeout"
	reasonHoldFull        = "hold_full"
	reasonMaintenanceMode = "maintenance_mode"
	reasonBadGateway      = "bad_gateway"
	reasonGatewayTimeout  = "gateway_timeout"
	reasonIntercepted     = "intercepted"
	reasonPaused          = "paused"
)

// noPool labels requests answered before any pool was chosen (maintenance mode).
const noPool = "none"

// metrics are one Switcher's Prometheus collectors, in a registry of its own
// so that several switchers can live in one process (tests). The gauges of
// pools and servers read the Switcher at scrape time (poolCollector).
type metrics struct {
	registry *prometheus.Registry
	access   hclog.Logger

	pools map[string]*poolMetrics // by pool name, and noPool; fixed at start

	checks       *prometheus.CounterVec
	serverChecks sync.Map // *pool.Server → *serverChecks
	switches     *prometheus.CounterVec
	warm         prometheus.Histogram
	holdSeconds  prometheus.Histogram
	maintenance  map[string]prometheus.Counter // by reason; fixed at start
	reloadOK     prometheus.Counter
	reloadFailed prometheus.Counter
}

// poolMetrics are the request metrics of one pool label, resolved ahead so
// that a request costs no lookup nor allocation.
type poolMetrics struct {
	name     string
	requests *prometheus.CounterVec
	duration prometheus.Observer
	codes    [900]atomic.Pointer[counterRef] // by status-100; filled on first use
}

type counterRef struct{ prometheus.Counter }

// count adds one request with that status (100-999, as net/http enforces).
func (pm *poolMetrics) count(code int) {
	i := code - 100
	if i < 0 || i >= len(pm.codes) {
		return
	}
	c := pm.codes[i].Load()
	if c == nil {
		c = &counterRef{pm.requests.WithLabelValues(pm.name, strconv.Itoa(code))}
		pm.codes[i].Store(c)
	}
	c.Inc()
}

// metrics returns the Switcher's collectors.
func (s *Switcher) metrics() *metrics { return s.mx }

// newMetrics registers every collector in a registry of the Switcher's own.
func newMetrics(sw *Switcher, poolNames []string, access hclog.Logger, version string) *metrics {
	reg := prometheus.NewRegistry()
	m := &metrics{
		registry: reg,
		access:   access,
		pools:    make(map[string]*poolMetrics),
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "turnout_health_checks_total", Help: "Health check results by pool, server and result (pass, fail).",
		}, []string{"pool", "server", "result"}),
		switches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "turnout_switches_total", Help: "Switches by source pool, target pool and result (switched, aborted, forced).",
		}, []string{"from", "to", "result"}),
		warm: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "turnout_switch_warm_seconds", Help: "Time from a switch request until its target pool was ready (successful warmed switches).",
			Buckets: []float64{0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300},
		}),
		holdSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "turnout_hold_seconds", Help: "Time a request waited for a live server of the active pool.",
			Buckets: []float64{0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60},
		}),
		maintenance: make(map[string]prometheus.Counter),
	}
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "turnout_http_requests_total", Help: "Requests answered, by the pool active when they started (none: maintenance mode) and status code.",
	}, []string{"pool", "code"})
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "turnout_http_request_duration_seconds", Help: "Time to answer a request, by the pool active when it started.",
		Buckets: prometheus.DefBuckets,
	}, []string{"pool"})
	for _, name := range append(poolNames, noPool) {
		m.pools[name] = &poolMetrics{name: name, requests: requests, duration: duration.WithLabelValues(name)}
	}
	maintenance := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "turnout_maintenance_responses_total", Help: "Maintenance pages served, by reason.",
	}, []string{"reason"})
	for _, r := range []string{reasonHoldTimeout, reasonHoldFull, reasonMaintenanceMode, reasonBadGateway, reasonGatewayTimeout, reasonIntercepted, reasonPaused} {
		m.maintenance[r] = maintenance.WithLabelValues(r)
	}
	reloads := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "turnout_config_reloads_total", Help: "Config reloads by result (ok, error).",
	}, []string{"result"})
	m.reloadOK, m.reloadFailed = reloads.WithLabelValues("ok"), reloads.WithLabelValues("error")

	buildInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "turnout_build_info", Help: "Always 1; the labels name the running build.",
	}, []string{"version", "revision"})
	buildInfo.WithLabelValues(version, revision()).Set(1)

	held := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "turnout_held_requests", Help: "Requests waiting for a live server of the active pool.",
	}, func() float64 { return float64(sw.held.Load()) })
	reg.MustRegister(m.checks, m.switches, m.warm, m.holdSeconds, requests, duration, maintenance, reloads,
		buildInfo, held, &poolCollector{sw: sw},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// revision is the VCS revision the binary was built from, or "unknown".
func revision() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, kv := range bi.Settings {
			if kv.Key == "vcs.revision" && kv.Value != "" {
				return kv.Value
			}
		}
	}
	return "unknown"
}

var (
	descActivePool = prometheus.NewDesc("turnout_active_pool",
		"1 for the pool that receives traffic, 0 for the other.", []string{"pool"}, nil)
	descUpstreamUp = prometheus.NewDesc("turnout_upstream_up",
		"1 when the server is up (receives traffic if its pool is active), else 0.", []string{"pool", "server"}, nil)
	descUpstreamState = prometheus.NewDesc("turnout_upstream_state",
		"1 for the server's current state (probation, up, down, draining), 0 for the others.", []string{"pool", "server", "state"}, nil)
	descUpstreamOverloads = prometheus.NewDesc("turnout_upstream_overloads_total",
		"Connections the server refused because its listen backlog was full (the requests waited in turnout; raise its backlog).", []string{"pool", "server"}, nil)
	descUpstreamLimit = prometheus.NewDesc("turnout_upstream_concurrency_limit",
		"Requests the server is sent at once while it starts slow or after its backlog overflowed; -1 when unlimited.", []string{"pool", "server"}, nil)
	descWaiting = prometheus.NewDesc("turnout_pool_waiting_requests",
		"Requests waiting in the pool's line for a slot on one of its servers.", []string{"pool"}, nil)
	serverStates = []healthcheck.State{healthcheck.Probation, healthcheck.Up, healthcheck.Down, healthcheck.Draining}
)

// poolCollector reads the pools at scrape time, so that servers added or
// removed by a reload appear and disappear with no bookkeeping.
type poolCollector struct{ sw *Switcher }

func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descActivePool
	ch <- descUpstreamUp
	ch <- descUpstreamState
	ch <- descUpstreamOverloads
	ch <- descUpstreamLimit
	ch <- descWaiting
}

func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.sw
	active := s.Active()
	for _, name := range s.Config().PoolNames() {
		ch <- prometheus.MustNewConstMetric(descActivePool, prometheus.GaugeValue, boolValue(name == active), name)
		ch <- prometheus.MustNewConstMetric(descWaiting, prometheus.GaugeValue, float64(s.pools[name].Waiting()), name)
		for _, srv := range s.pools[name].Servers() {
			ch <- prometheus.MustNewConstMetric(descUpstreamOverloads, prometheus.CounterValue, float64(srv.Overloads()), name, srv.Key())
			ch <- prometheus.MustNewConstMetric(descUpstreamLimit, prometheus.GaugeValue, float64(srv.Limit()), name, srv.Key())
			st := srv.State()
			ch <- prometheus.MustNewConstMetric(descUpstreamUp, prometheus.GaugeValue, boolValue(st == healthcheck.Up), name, srv.Key())
			for _, each := range serverStates {
				ch <- prometheus.MustNewConstMetric(descUpstreamState, prometheus.GaugeValue, boolValue(st == each), name, srv.Key(), each.String())
			}
		}
	}
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// MetricsHandler serves the Prometheus metrics.
func (s *Switcher) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(s.metrics().registry, promhttp.HandlerOpts{
		ErrorLog: s.logger.Named("metrics").StandardLogger(&hclog.StandardLoggerOptions{ForceLevel: hclog.Warn}),
	})
}

// observeHealth counts check results. A report is a check result when the
// check time moved (Probation, MarkDown and Drain do not move it); it passed
// when it left no error.
func (s *Switcher) observeHealth(p *pool.Pool, srv *pool.Server, prev healthcheck.State, snap healthcheck.Snapshot) {
	m := s.metrics()
	if snap.State == healthcheck.Draining {
		m.serverChecks.Delete(srv)
		return
	}
	if snap.CheckedAt.IsZero() {
		return
	}
	v, ok := m.serverChecks.Load(srv)
	if !ok {
		v, _ = m.serverChecks.LoadOrStore(srv, &serverChecks{
			pass: m.checks.WithLabelValues(p.Name(), snap.Server, "pass"),
			fail: m.checks.WithLabelValues(p.Name(), snap.Server, "fail"),
		})
	}
	sc := v.(*serverChecks)
	// Observer calls for one server never overlap, so last needs no lock.
	if sc.last.Equal(snap.CheckedAt) {
		return // a state change without a new check
	}
	sc.last = snap.CheckedAt
	if snap.LastError != "" {
		sc.fail.Inc()
	} else {
		sc.pass.Inc()
	}
}

// serverChecks are one server's check counters, looked up once.
type serverChecks struct {
	pass, fail prometheus.Counter
	last       time.Time // CheckedAt of the last counted check
}

// observeSwitch counts a finished switch and, for a warmed one that
// succeeded, its warm-up time.
func (s *Switcher) observeSwitch(rec *state.Record) {
	m := s.metrics()
	m.switches.WithLabelValues(rec.From, rec.To, rec.Result).Inc()
	if rec.Result == state.ResultSwitched {
		m.warm.Observe(float64(rec.WarmMS) / 1000)
	}
}

// observeReload counts a config reload by result.
func (s *Switcher) observeReload(ok bool) {
	m := s.metrics()
	if ok {
		m.reloadOK.Inc()
	} else {
		m.reloadFailed.Inc()
	}
}

// observeHold records the time a request spent held.
func (s *Switcher) observeHold(d time.Duration) {
	s.metrics().holdSeconds.Observe(d.Seconds())
}

// observeProxyError wraps the proxy's error handler to count the
// maintenance pages it serves, by reason.
func (s *Switcher) observeProxyError(next func(http.ResponseWriter, *http.Request, error)) func(http.ResponseWriter, *http.Request, error) {
	m := s.metrics()
	return func(w http.ResponseWriter, r *http.Request, err error) {
		next(w, r, err)
		sk, ok := w.(statusKeeper)
		if !ok {
			return
		}
		code, _ := sk.Written()
		var intercepted *interceptedError
		reason := ""
		switch {
		case code == 499:
			// The client went away; no page was served.
		case errors.As(err, &intercepted):
			reason = reasonIntercepted
		case errors.Is(err, errHoldFull):
			reason = reasonHoldFull
		case errors.Is(err, errHoldTimeout):
			reason = reasonHoldTimeout
		case errors.Is(err, errPaused):
			reason = reasonPaused
		case code == http.StatusGatewayTimeout:
			reason = reasonGatewayTimeout
		default:
			reason = reasonBadGateway
		}
		if reason != "" {
			m.maintenance[reason].Inc()
		}
	}
}

// observeRequest counts a request that ended with status code (0: none
// written, which net/http sends as 200) and bytes of body, under pool pm,
// and writes its access log line when access_log is on.
//
// note, when not nil, says why the request failed: a body that did not
// come, a response cut short.
func (s *Switcher) observeRequest(r *http.Request, pm *poolMetrics, code int, bytes int64, elapsed time.Duration, note error) {
	if code == 0 {
		code = http.StatusOK
	}
	pm.count(code)
	pm.duration.Observe(elapsed.Seconds())
	if !s.settings.Load().cfg.AccessLog {
		return
	}
	if note != nil {
		s.mx.access.Info("request", "method", r.Method, "path", r.RequestURI, "status", code, "bytes", bytes,
			"duration", elapsed, "pool", pm.name, "remote", r.RemoteAddr, "request_id", r.Header.Get("X-Request-Id"),
			"error", note.Error())
		return
	}
	s.mx.access.Info("request", "method", r.Method, "path", r.RequestURI, "status", code, "bytes", bytes,
		"duration", elapsed, "pool", pm.name, "remote", r.RemoteAddr, "request_id", r.Header.Get("X-Request-Id"))
}

var recorders = sync.Pool{New: func() any { return new(recorder) }}

// statusKeeper is a ResponseWriter that records the final status it sent
// (0 before one) and the body bytes: the recorder around any writer, or the
// front's writer, which needs no recorder.
type statusKeeper interface {
	Written() (code int, bytes int64)
}

// recorder notes the final status and body size of a response. Flush,
// Hijack (upgrades, websockets) and everything else http.ResponseController
// offers pass through to the wrapped writer.
type recorder struct {
	http.ResponseWriter
	code    int
	bytes   int64
	upgrade *proxied // an upgrade request's, whose connection Hijack hands over
}

// WriteHeader records the final status; 1xx informational responses other
// than 101 are passed on but not recorded.
func (w *recorder) WriteHeader(code int) {
	if w.code == 0 && (code >= 200 || code == http.StatusSwitchingProtocols) {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *recorder) Written() (int, int64) { return w.code, w.bytes }

func (w *recorder) Write(p []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (w *recorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush sends buffered data to the client at once (server-sent events).
func (w *recorder) Flush() { _ = w.FlushError() }

// FlushError is Flush that reports a failure.
func (w *recorder) FlushError() error { return http.NewResponseController(w.ResponseWriter).Flush() }

// Hijack hands the connection over (protocol upgrades); a successful
// upgrade is recorded as 101.
func (w *recorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err == nil && w.code == 0 {
		w.code = http.StatusSwitchingProtocols
	}
	if err == nil && w.upgrade != nil {
		conn = w.upgrade.track(conn)
	}
	return conn, brw, err
}
