package switcher

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/turnout/turnout/config"
	"github.com/turnout/turnout/internal/testlog"
	"github.com/turnout/turnout/internal/testsock"
	"github.com/turnout/turnout/state"
)

// scrape is one read of /metrics.
type scrape map[string]*dto.MetricFamily

func scrapeMetrics(t *testing.T, h *harness) scrape {
	t.Helper()
	resp, err := client.Get("http://" + h.addrs.Metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// value is the value of the series of that name whose labels include
// labels ("k=v" pairs), summed over the matching series; a histogram counts
// its observations. It is 0 when no series matches.
func (sc scrape) value(name string, labels ...string) float64 {
	f, ok := sc[name]
	if !ok {
		return 0
	}
	total := 0.0
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, lp := range m.GetLabel() {
			have[lp.GetName()] = lp.GetValue()
		}
		match := true
		for _, l := range labels {
			k, v, _ := strings.Cut(l, "=")
			if have[k] != v {
				match = false
			}
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			total += m.GetCounter().GetValue()
		case m.Gauge != nil:
			total += m.GetGauge().GetValue()
		case m.Histogram != nil:
			total += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return total
}

const withMetrics = `metrics_listen = "127.0.0.1:0"
`

func TestMetricsFollowRequestsSwitchesAndReloads(t *testing.T) {
	a := newBackend(t, "A", nil)
	b := newBackend(t, "B", nil)
	h := startSwitcher(t, withMetrics+fastChecks, []string{a.addr}, []string{b.addr})

	before := scrapeMetrics(t, h)
	for _, name := range []string{"turnout_build_info", "turnout_held_requests", "go_goroutines", "process_cpu_seconds_total"} {
		if _, ok := before[name]; !ok {
			t.Errorf("/metrics has no %s", name)
		}
	}
	if got := before.value("turnout_active_pool", "pool=A"); got != 1 {
		t.Errorf("active_pool{A} = %v, want 1", got)
	}
	if got := before.value("turnout_upstream_state", "pool=A", "server="+a.addr, "state=up"); got != 1 {
		t.Errorf("upstream_state{A,up} = %v, want 1", got)
	}

	if code, _ := do(t, http.MethodGet, h.proxy+"/x", ""); code != http.StatusOK {
		t.Fatalf("proxied GET: %d", code)
	}
	waitFor(t, "a passed health check of B", func() bool {
		return scrapeMetrics(t, h).value("turnout_health_checks_total", "pool=B", "result=pass") > 0
	})
	rec, err := h.sw.Switch(context.Background(), SwitchRequest{To: "B", Actor: "test"}, nil)
	if err != nil || rec == nil || rec.Result != state.ResultSwitched {
		t.Fatalf("switch: %+v, %v", rec, err)
	}

	after := scrapeMetrics(t, h)
	checks := []struct {
		name   string
		labels []string
		want   float64
	}{
		{"turnout_http_requests_total", []string{"pool=A", "code=200"}, 1},
		{"turnout_http_request_duration_seconds", []string{"pool=A"}, 1},
		{"turnout_switches_total", []string{"from=A", "to=B", "result=switched"}, 1},
		{"turnout_switch_warm_seconds", nil, 1},
		{"turnout_active_pool", []string{"pool=A"}, 0},
		{"turnout_active_pool", []string{"pool=B"}, 1},
	}
	for _, c := range checks {
		if got := after.value(c.name, c.labels...) - before.value(c.name, c.labels...); c.name != "turnout_active_pool" && got != c.want {
			t.Errorf("%s%v moved by %v, want %v", c.name, c.labels, got, c.want)
		}
		if got := after.value(c.name, c.labels...); c.name == "turnout_active_pool" && got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}

	path := h.sw.Config().Path
	text, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	reloads := []struct {
		content string
		ok      bool
		result  string
	}{
		{"access_log = false\n" + string(text), true, "ok"},
		{"no_such_key = 1\n" + string(text), false, "error"},
	}
	for _, r := range reloads {
		if err := os.WriteFile(path, []byte(r.content), 0o600); err != nil {
			t.Fatal(err)
		}
		before := scrapeMetrics(t, h)
		if err := h.sw.Reload("test"); (err == nil) != r.ok {
			t.Fatalf("reload (want ok=%v): %v", r.ok, err)
		}
		got := scrapeMetrics(t, h).value("turnout_config_reloads_total", "result="+r.result) - before.value("turnout_config_reloads_total", "result="+r.result)
		if got != 1 {
			t.Errorf("config_reloads_total{result=%q} moved by %v, want 1", r.result, got)
		}
	}
}

func TestMetricsHeldRequestEndingInTheMaintenancePage(t *testing.T) {
	a := newBackend(t, "A", nil)
	b := newBackend(t, "B", nil)
	a.stop()
	h := startSwitcher(t, withMetrics+fastChecks+`hold_timeout = "200ms"`, []string{a.addr}, []string{b.addr})
	before := scrapeMetrics(t, h)
	if code, _ := do(t, http.MethodGet, h.proxy+"/", ""); code != http.StatusServiceUnavailable {
		t.Fatalf("GET with pool A down: %d, want 503", code)
	}
	after := scrapeMetrics(t, h)
	for _, c := range []struct {
		name   string
		labels []string
	}{
		{"turnout_maintenance_responses_total", []string{"reason=hold_timeout"}},
		{"turnout_hold_seconds", nil},
		{"turnout_http_requests_total", []string{"pool=A", "code=503"}},
	} {
		if got := after.value(c.name, c.labels...) - before.value(c.name, c.labels...); got != 1 {
			t.Errorf("%s%v moved by %v, want 1", c.name, c.labels, got)
		}
	}

	if err := h.sw.SetMaintenance(true, "upgrading"); err != nil {
		t.Fatal(err)
	}
	if code, _ := do(t, http.MethodGet, h.proxy+"/", ""); code != http.StatusServiceUnavailable {
		t.Fatalf("GET in maintenance mode: %d, want 503", code)
	}
	final := scrapeMetrics(t, h)
	if got := final.value("turnout_maintenance_responses_total", "reason=maintenance_mode"); got != 1 {
		t.Errorf("maintenance_responses_total{maintenance_mode} = %v, want 1", got)
	}
	if got := final.value("turnout_http_requests_total", "pool=none", "code=503"); got != 1 {
		t.Errorf("http_requests_total{none,503} = %v, want 1", got)
	}
}

func TestAccessLog(t *testing.T) {
	app := newBackend(t, "A", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/missing" {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte("hello"))
	})
	for _, on := range []bool{false, true} {
		dir := t.TempDir()
		text := "access_log = " + map[bool]string{true: "true", false: "false"}[on] + `
state = "` + filepath.Join(dir, "state.db") + `"
[pools.A]
servers = ["` + app.addr + `"]
[pools.B]
servers = ["` + testsock.FreeAddr(t) + `"]
`
		cfg, err := config.Parse([]byte(text), filepath.Join(dir, "turnout.toml"))
		if err != nil {
			t.Fatalf("config: %v\n%s", err, text)
		}
		store, err := state.Open(cfg.State, time.Second, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { store.Close() })
		var logs testlog.Buffer
		sw, err := New(Options{Config: cfg, Store: store, Logger: hclog.New(&hclog.LoggerOptions{Output: &logs, Level: hclog.Info})})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(sw.Close)
		front := httptest.NewServer(sw.Handler())
		t.Cleanup(front.Close)

		do(t, http.MethodGet, front.URL+"/hello?x=1", "")
		do(t, http.MethodGet, front.URL+"/missing", "")
		lines := logs.Lines("access:")
		if !on {
			if len(lines) != 0 {
				t.Errorf("access_log off logged %q", lines)
			}
			continue
		}
		if len(lines) != 2 {
			t.Fatalf("access log lines: %q, want 2", lines)
		}
		for i, want := range [][]string{
			{"method=GET", "path=/hello?x=1", "status=200", "bytes=5", "pool=A", "request_id="},
			{"path=/missing", "status=404"},
		} {
			for _, w := range want {
				if !strings.Contains(lines[i], w) {
					t.Errorf("access line %q lacks %q", lines[i], w)
				}
			}
		}
	}
}

// The request recorder must keep upgrades working: ReverseProxy hijacks the
// client connection through http.ResponseController.
func TestMetricsKeepUpgradesWorking(t *testing.T) {
	a := newBackend(t, "A", func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("backend hijack: %v", err)
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		brw.Flush()
		line, _ := brw.ReadString('\n')
		brw.WriteString("echo " + line)
		brw.Flush()
	})
	h := startSwitcher(t, withMetrics+fastChecks, []string{a.addr}, []string{testsock.FreeAddr(t)})
	conn, err := net.DialTimeout("tcp", h.addrs.Proxy[0], 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(conn, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v, %v", resp, err)
	}
	io.WriteString(conn, "hi\n")
	if got, err := br.ReadString('\n'); err != nil || got != "echo hi\n" {
		t.Fatalf("through the upgraded connection: %q, %v", got, err)
	}
	conn.Close()
	waitFor(t, "the upgraded request counted as 101", func() bool {
		return scrapeMetrics(t, h).value("turnout_http_requests_total", "pool=A", "code=101") == 1
	})
}

// Requests the front serves itself (no recorder around its writer) are
// counted by their real status too.
func TestMetricsCountFrontRequestsByStatus(t *testing.T) {
	a := newBackend(t, "A", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/missing" {
			http.NotFound(w, r)
		}
	})
	h := startSwitcher(t, withMetrics, []string{a.addr}, []string{a.addr})
	for _, path := range []string{"/", "/missing", "/missing"} {
		do(t, http.MethodGet, h.proxy+path, "")
	}
	sc := scrapeMetrics(t, h)
	if n := sc.value("turnout_http_requests_total", "pool=A", "code=404"); n != 2 {
		t.Errorf("404s counted: %v, want 2", n)
	}
	if n := sc.value("turnout_http_requests_total", "pool=A", "code=200"); n != 1 {
		t.Errorf("200s counted: %v, want 1", n)
	}
}
