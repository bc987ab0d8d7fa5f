package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/turnout/turnout/internal/testlog"
)

// This file runs turnout in front of real app servers (uwsgi, gunicorn)
// serving testdata/app.py, restarts them the ways their users do under load,
// and counts at the application level what the clients saw: the proof
// that app server restarts lose nothing. The same pieces serve the restart recovery bench
// (restartbench_test.go, scripts/bench-restart).

// appServerKind is the app server a test runs.
type appServerKind string

const (
	uwsgi    appServerKind = "uwsgi"
	gunicorn appServerKind = "gunicorn"
)

// appServerSpec is an app server as a test starts it.
type appServerSpec struct {
	Kind appServerKind
	// Backlog is the listen backlog (uwsgi --listen, gunicorn --backlog);
	// 0 keeps the server's default (100 for uwsgi, 2048 for gunicorn).
	Backlog int
}

func (s appServerSpec) String() string {
	if s.Backlog == 0 {
		return string(s.Kind) + " (default backlog)"
	}
	return fmt.Sprintf("%s (backlog %d)", s.Kind, s.Backlog)
}

// needAppServer skips the test when kind is not installed, and fails it
// when the environment variable CI is set: .ci/run installs them there.
func needAppServer(t *testing.T, kind appServerKind) {
	t.Helper()
	var err error
	switch kind {
	case uwsgi:
		// Debian splits the server (uwsgi-core) from its Python plugin.
		if _, err = exec.LookPath("uwsgi"); err == nil {
			if out, perr := exec.Command("uwsgi", "--need-plugin", "python3", "--version").CombinedOutput(); perr != nil {
				err = fmt.Errorf("uwsgi has no python3 plugin (%v): %s", perr, out)
			}
		}
	case gunicorn:
		_, err = exec.LookPath("gunicorn")
	}
	if err == nil {
		return
	}
	msg := fmt.Sprintf("%s is needed: apt-get install uwsgi-core uwsgi-plugin-python3 gunicorn (%v)", kind, err)
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// appServer is one app server (a master and its 4 worker processes) serving
// testdata/app.py on a unix socket, in a process group of its own.
type appServer struct {
	t    *testing.T
	Spec appServerSpec
	// Sock is the socket it serves; Applied the file where the app records
	// every POST it applied; Touch the file whose touch reloads uwsgi.
	Sock, Applied, Touch string
	proc                 *process
	// earlier holds the output of the processes a restart replaced.
	earlier []*testlog.Buffer
}

// newAppServer starts an app server; it is killed at the end of the test.
func newAppServer(t *testing.T, spec appServerSpec) *appServer {
	t.Helper()
	needAppServer(t, spec.Kind)
	dir := shortDir(t)
	a := &appServer{t: t, Spec: spec, Sock: filepath.Join(dir, "app.sock"),
		Applied: filepath.Join(dir, "applied.log"), Touch: filepath.Join(dir, "reload")}
	if err := os.WriteFile(a.Touch, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	a.Start()
	t.Cleanup(func() {
		if a.proc.running() {
			a.kill()
		}
		if t.Failed() {
			for _, out := range append(a.earlier, a.proc.output) {
				t.Logf("%s's output:\n%s", spec.Kind, out)
			}
		}
	})
	return a
}

// appServerReady matches the log line an app server writes once it has
// bound its socket; the app is ready once it answers.
var appServerReady = regexp.MustCompile(`bound to UNIX address|Listening at: unix:`)

func (a *appServer) command() *exec.Cmd {
	a.t.Helper()
	app, err := filepath.Abs("testdata/app.py")
	if err != nil {
		a.t.Fatal(err)
	}
	var cmd *exec.Cmd
	switch a.Spec.Kind {
	case uwsgi:
		// --die-on-term: without it uwsgi 2.0 reloads on SIGTERM instead of
		// stopping, which is not what a service manager means.
		args := []string{"--need-plugin", "python3", "--master", "--processes", "4",
			"--http-socket", a.Sock, "--wsgi-file", app, "--need-app", "--die-on-term",
			"--disable-logging", "--touch-reload", a.Touch}
		if a.Spec.Backlog > 0 {
			args = append(args, "--listen", strconv.Itoa(a.Spec.Backlog))
		}
		cmd = exec.Command("uwsgi", args...)
	case gunicorn:
		args := []string{"--workers", "4", "--bind", "unix:" + a.Sock, "--chdir", filepath.Dir(app)}
		if a.Spec.Backlog > 0 {
			args = append(args, "--backlog", strconv.Itoa(a.Spec.Backlog))
		}
		cmd = exec.Command("gunicorn", append(args, "app:application")...)
	default:
		a.t.Fatalf("app server %q: want uwsgi or gunicorn", a.Spec.Kind)
	}
	cmd.Env = append(os.Environ(), "APP_APPLIED_LOG="+a.Applied)
	// Its own process group, so that a kill reaches the workers too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return cmd
}

// Start (re)starts the app server and waits until the app answers.
func (a *appServer) Start() {
	a.t.Helper()
	if a.proc != nil {
		a.earlier = append(a.earlier, a.proc.output)
	}
	a.proc = start(a.t, a.command(), true, appServerReady)
	deadline := time.Now().Add(eventTimeout)
	for {
		if _, err := probeApp(a.Sock); err == nil {
			return
		} else if time.Now().After(deadline) || !a.proc.running() {
			a.kill()
			a.t.Fatalf("%s does not answer on %s: %v\n%s", a.Spec.Kind, a.Sock, err, a.proc.output)
		}
		<-time.After(10 * time.Millisecond)
	}
}

// StopStart stops the app server gracefully with SIGTERM, as a service
// manager does, waits for it to exit and starts it again.
func (a *appServer) StopStart() {
	a.t.Helper()
	if err := a.proc.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		a.t.Fatalf("SIGTERM to %s: %v", a.Spec.Kind, err)
	}
	select {
	case <-a.proc.exited:
	case <-time.After(30 * time.Second):
		a.kill()
		a.t.Fatalf("%s did not exit within 30 s of SIGTERM:\n%s", a.Spec.Kind, a.proc.output)
	}
	a.Start()
}

// Reload sends sig (SIGHUP: uwsgi's and gunicorn's graceful reload) to the
// master process.
func (a *appServer) Reload(sig syscall.Signal) {
	a.t.Helper()
	if err := a.proc.cmd.Process.Signal(sig); err != nil {
		a.t.Fatalf("%v to %s: %v", sig, a.Spec.Kind, err)
	}
}

// TouchReload touches the file of uwsgi's --touch-reload.
func (a *appServer) TouchReload() {
	a.t.Helper()
	now := time.Now()
	if err := os.Chtimes(a.Touch, now, now); err != nil {
		a.t.Fatal(err)
	}
}

// kill kills the app server's process group and waits for the master.
func (a *appServer) kill() {
	syscall.Kill(-a.proc.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-a.proc.exited:
	case <-time.After(eventTimeout):
		a.t.Errorf("%s did not exit after SIGKILL", a.Spec.Kind)
	}
}

// AppliedPOSTs reads the ids of the POSTs the app applied, with how often.
func (a *appServer) AppliedPOSTs() map[string]int {
	a.t.Helper()
	f, err := os.Open(a.Applied)
	if errors.Is(err, os.ErrNotExist) {
		return map[string]int{}
	}
	if err != nil {
		a.t.Fatal(err)
	}
	defer f.Close()
	applied := map[string]int{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		applied[sc.Text()]++
	}
	if err := sc.Err(); err != nil {
		a.t.Fatal(err)
	}
	return applied
}

// probeApp sends GET /healthz to the app on a fresh connection to sock and
// returns when the answering app was loaded (imported).
func probeApp(sock string) (time.Time, error) {
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
	}}
	resp, err := client.Get("http://app/healthz")
	if err != nil {
		return time.Time{}, err
	}
	defer resp.Body.Close()
	var h struct {
		Booted int64 `json:"booted"`
	}
	data, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("%s: %s", resp.Status, data)
	}
	if err == nil {
		err = json.Unmarshal(data, &h)
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("GET /healthz: %w", err)
	}
	return time.Unix(0, h.Booted), nil
}

// watchBack measures how long the app takes to come back after a restart
// that begins at since: the time until a direct GET /healthz (a fresh
// connection to sock, tried every 10 ms) is answered by an app loaded after
// since. This is measurement only; nothing waits on it but the report. A
// uwsgi reload keeps its socket open, so a successful connect alone would
// not tell that the app is back. The result is 0 if it is not back when
// quit is closed.
func watchBack(sock string, since time.Time, quit <-chan struct{}) <-chan time.Duration {
	back := make(chan time.Duration, 1)
	go func() {
		for {
			booted, err := probeApp(sock)
			if err == nil && !booted.Before(since) {
				back <- time.Since(since)
				return
			}
			select {
			case <-quit:
				back <- 0
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	return back
}

// idLoad sends requests at a steady rate, each in its own goroutine so that
// held requests never slow the rate down, alternating GET and POST with a
// unique id, and checks each answer at the application level: a 200 from the
// app that names the request's id. Go's client silently re-sends a GET that
// failed on a reused connection; a POST it does not, and the app records
// every POST it applied.
type idLoad struct {
	url    string
	client *http.Client
	quit   chan struct{}
	sender sync.WaitGroup // the dispatcher
	reqs   sync.WaitGroup // requests in flight
	ok     atomic.Int64

	mu       sync.Mutex
	sent     int
	waits    []time.Duration
	byStatus map[int]int
	failures []string
	posts    map[string]bool // POST ids sent: answered 200 or not
}

// maxIDLoad bounds an idLoad in time (and so in count: rate × maxIDLoad).
const maxIDLoad = 60 * time.Second

// startIDLoad sends rate requests per second to url until stop is called, for
// maxIDLoad at the most; it is stopped at the end of the test.
func startIDLoad(t *testing.T, url string, rate int) *idLoad {
	t.Helper()
	l := &idLoad{
		url: url, quit: make(chan struct{}), byStatus: map[int]int{}, posts: map[string]bool{},
		// Keep-alive connections, as browsers and API clients use them.
		client: &http.Client{
			Transport: &http.Transport{MaxIdleConnsPerHost: 2000, DisableCompression: true},
			Timeout:   30 * time.Second,
		},
	}
	begin := time.Now()
	l.sender.Add(1)
	go func() {
		defer l.sender.Done()
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
		limit := time.NewTimer(maxIDLoad)
		defer limit.Stop()
		// Each tick sends every request due by now, so ticks the runtime
		// drops on a busy machine do not lower the rate.
		for i := 0; ; {
			select {
			case <-tick.C:
			case <-l.quit:
				return
			case <-limit.C:
				return
			}
			for due := int(time.Since(begin).Seconds() * float64(rate)); i < due; i++ {
				l.reqs.Add(1)
				n := i
				go func() {
					defer l.reqs.Done()
					l.one(n)
				}()
			}
		}
	}()
	t.Cleanup(func() { l.stop() })
	return l
}

// one sends request number i and records its outcome.
func (l *idLoad) one(i int) {
	method, id, body := http.MethodGet, fmt.Sprintf("g-%d", i), ""
	if i%2 == 1 {
		method, id = http.MethodPost, fmt.Sprintf("p-%d", i)
		body = "payload of " + id
	}
	req, err := http.NewRequest(method, l.url+"?id="+id, strings.NewReader(body))
	if err != nil {
		panic(err)
	}
	begin := time.Now()
	status, failure := 0, ""
	resp, err := l.client.Do(req)
	if err == nil {
		var data []byte
		data, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		status = resp.StatusCode
		var got struct{ ID, Method string }
		switch {
		case err != nil:
		case status != http.StatusOK:
			failure = fmt.Sprintf("%s %s: %s after %s: %.120q", method, id, resp.Status, time.Since(begin).Round(time.Millisecond), data)
		case json.Unmarshal(data, &got) != nil || got.ID != id || got.Method != method:
			failure = fmt.Sprintf("%s %s: not the app's answer: %.120q", method, id, data)
		}
	}
	wait := time.Since(begin)
	if err != nil {
		failure = fmt.Sprintf("%s %s after %s: %v", method, id, wait.Round(time.Millisecond), err)
	}
	if failure == "" {
		l.ok.Add(1)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sent++
	l.waits = append(l.waits, wait)
	if status != 0 {
		l.byStatus[status]++
	}
	if failure != "" {
		l.failures = append(l.failures, failure)
	}
	if method == http.MethodPost {
		l.posts[id] = failure == ""
	}
}

// waitAnswered waits until n requests were answered well.
func (l *idLoad) waitAnswered(t *testing.T, n int64) {
	t.Helper()
	deadline := time.Now().Add(eventTimeout)
	for l.ok.Load() < n {
		if time.Now().After(deadline) {
			l.mu.Lock()
			defer l.mu.Unlock()
			t.Fatalf("the load got %d good answers within %s, want %d; the first failures: %v", l.ok.Load(), eventTimeout, n, l.failures[:min(len(l.failures), 5)])
		}
		<-time.After(10 * time.Millisecond)
	}
}

// loadFigures is what a load saw.
type loadFigures struct {
	Requests, Failed   int
	ByStatus           map[int]int
	Longest, P99       time.Duration
	Failures           []string
	POSTsOK, POSTsSent int
	posts              map[string]bool
}

// stop ends the load, waits for every request in flight and returns the
// figures.
func (l *idLoad) stop() loadFigures {
	l.mu.Lock()
	select {
	case <-l.quit:
	default:
		close(l.quit)
	}
	l.mu.Unlock()
	l.sender.Wait()
	l.reqs.Wait()
	l.client.CloseIdleConnections()
	l.mu.Lock()
	defer l.mu.Unlock()
	waits := slices.Sorted(slices.Values(l.waits))
	f := loadFigures{Requests: l.sent, Failed: len(l.failures), ByStatus: maps.Clone(l.byStatus),
		Failures: slices.Clone(l.failures), POSTsSent: len(l.posts), posts: maps.Clone(l.posts)}
	if len(waits) > 0 {
		f.Longest = waits[len(waits)-1]
		f.P99 = waits[(len(waits)*99)/100]
	}
	for _, ok := range l.posts {
		if ok {
			f.POSTsOK++
		}
	}
	return f
}

// postCheck compares the POSTs the clients sent with those the app applied:
// lost (answered 200, not applied), applied more than once, applied but
// not sent, and applied although the client saw a failure.
type postCheck struct {
	Lost, Twice, Unknown, FailedButApplied []string
}

func checkPOSTs(f loadFigures, applied map[string]int) postCheck {
	var c postCheck
	for id, ok := range f.posts {
		switch n := applied[id]; {
		case n > 1:
			c.Twice = append(c.Twice, fmt.Sprintf("%s ×%d", id, n))
		case ok && n == 0:
			c.Lost = append(c.Lost, id)
		case !ok && n == 1:
			c.FailedButApplied = append(c.FailedButApplied, id)
		}
	}
	for id := range applied {
		if _, sent := f.posts[id]; !sent {
			c.Unknown = append(c.Unknown, id)
		}
	}
	return c
}

// restartStyle is how an app server is restarted; nil means not at all.
type restartStyle func(a *appServer)

var (
	stopStart   restartStyle = (*appServer).StopStart
	touchReload restartStyle = (*appServer).TouchReload
	sighup      restartStyle = func(a *appServer) { a.Reload(syscall.SIGHUP) }
)

// restartRun is the outcome of one restart under load.
type restartRun struct {
	loadFigures
	// Back is how long the app took to come back (0 without a restart).
	Back time.Duration
	// Direct is the slowest answer to a direct request while the app was
	// up (outside the restart): how slow the app and the machine were.
	Direct time.Duration
	POSTs  postCheck
}

func (r restartRun) String() string {
	return fmt.Sprintf("%d requests, %d failed %v, longest wait %s, back after %s, p99 %s, slowest direct answer %s; POSTs: %d sent, %d answered 200, %d lost, %d applied twice, %d failed but applied",
		r.Requests, r.Failed, r.ByStatus, r.Longest.Round(time.Millisecond), r.Back.Round(time.Millisecond), r.P99.Round(time.Millisecond),
		r.Direct.Round(time.Millisecond), r.POSTsSent, r.POSTsOK, len(r.POSTs.Lost), len(r.POSTs.Twice), len(r.POSTs.FailedButApplied))
}

// directPulse asks the app directly for GET /healthz every 50 ms, to tell
// how slow the app (and the machine) is apart from any proxy; it records
// each answer's span.
type directPulse struct {
	quit, done chan struct{}
	end        sync.Once
	spans      []span // written by the pulse's goroutine until done
}

type span struct{ start, end time.Time }

// startDirectPulse starts the pulse; it ends with stop, or with the test.
func startDirectPulse(t *testing.T, sock string) *directPulse {
	p := &directPulse{quit: make(chan struct{}), done: make(chan struct{})}
	t.Cleanup(func() { p.stop(span{}) })
	go func() {
		defer close(p.done)
		for {
			begin := time.Now()
			if _, err := probeApp(sock); err == nil {
				p.spans = append(p.spans, span{begin, time.Now()})
			}
			select {
			case <-p.quit:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	return p
}

// stop ends the pulse and returns its slowest answer that neither started
// nor ended during the restart.
func (p *directPulse) stop(restart span) time.Duration {
	p.end.Do(func() { close(p.quit) })
	<-p.done
	var slowest time.Duration
	for _, s := range p.spans {
		if s.end.Before(restart.start) || s.start.After(restart.end) {
			slowest = max(slowest, s.end.Sub(s.start))
		}
	}
	return slowest
}

// loadRate is the request rate of the restart scenarios.
const loadRate = 200

// restartUnderLoad loads url (a proxy in front of a) at loadRate, restarts a
// with restart once 200 requests were answered, and ends the load 3 s after
// the app is back.
func restartUnderLoad(t *testing.T, url string, a *appServer, restart restartStyle) restartRun {
	t.Helper()
	load := startIDLoad(t, url, loadRate)
	pulse := startDirectPulse(t, a.Sock)
	load.waitAnswered(t, loadRate)
	var back time.Duration
	since := time.Now()
	if restart != nil {
		quit := make(chan struct{})
		endWatch := sync.OnceFunc(func() { close(quit) })
		defer endWatch() // also when restart ends the test
		backC := watchBack(a.Sock, since, quit)
		restart(a)
		select {
		case back = <-backC:
		case <-time.After(30 * time.Second):
			endWatch()
			back = <-backC
			t.Errorf("%s did not come back within 30 s", a.Spec)
		}
	}
	<-time.After(3 * time.Second) // the load goes on after the restart
	f := load.stop()
	direct := pulse.stop(span{since, since.Add(back)})
	return restartRun{loadFigures: f, Back: back, Direct: direct, POSTs: checkPOSTs(f, a.AppliedPOSTs())}
}

// startTurnoutOnDefaults runs turnout on its defaults with pool A = server
// (active) and a pool B nobody serves; it returns the proxy's URL and the
// control socket once A's server is up.
func startTurnoutOnDefaults(t *testing.T, server string) (url, control string) {
	t.Helper()
	c := newCfgSpec(t, []string{server}, []string{freeTCPAddr(t)})
	cfg := fmt.Sprintf(`listen  = [%q]
control = %q
state   = %q
initial = "A"

[pools.A]
servers = [%q]

[pools.B]
servers = [%q]
`, c.Listen, c.Control, c.State, c.A[0], c.B[0])
	path := filepath.Join(t.TempDir(), "turnout.toml")
	if err := os.WriteFile(path, []byte(withEngine(cfg)), 0o644); err != nil {
		t.Fatal(err)
	}
	d := serveDaemon(t, path, c)
	waitPoolUp(t, c.Control, "A")
	return d.URL, c.Control
}

// appServerRestart is one of the restart scenarios.
type appServerRestart struct {
	name    string
	server  appServerSpec
	restart restartStyle
	// slack is how much longer than the app took to come back a request
	// may wait.
	slack time.Duration
}

// appServerRestarts are the restarts users of uwsgi and gunicorn do: stop + start,
// touch-reload, SIGHUP, and gunicorn's graceful reload; the first one, without a
// restart, checks the harness.
var appServerRestarts = []appServerRestart{
	{"uwsgi/no restart", appServerSpec{Kind: uwsgi}, nil, 1500 * time.Millisecond},
	{"uwsgi/stop+start", appServerSpec{Kind: uwsgi}, stopStart, 1500 * time.Millisecond},
	{"uwsgi/touch-reload", appServerSpec{Kind: uwsgi}, touchReload, 1500 * time.Millisecond},
	{"uwsgi/SIGHUP", appServerSpec{Kind: uwsgi}, sighup, 1500 * time.Millisecond},
	{"gunicorn backlog 64/SIGTERM+start", appServerSpec{Kind: gunicorn, Backlog: 64}, stopStart, 1500 * time.Millisecond},
	{"gunicorn/SIGTERM+start", appServerSpec{Kind: gunicorn}, stopStart, time.Second},
	{"gunicorn backlog 64/SIGHUP", appServerSpec{Kind: gunicorn, Backlog: 64}, sighup, 1500 * time.Millisecond},
}

// TestAppServerRestarts is the proof that app server restarts lose nothing: turnout on its defaults in front
// of one real app server on a unix socket, under 200 req/s of GET and POST,
// while the app server restarts the ways its users restart it. Every request
// gets the app's 200, no POST is lost or applied twice, and the longest
// request waits at most slack longer than the app took to come back (plus
// the slowest direct answer of the app outside the restart, a few
// milliseconds on a machine that is not overloaded).
func TestAppServerRestarts(t *testing.T) {
	for _, sc := range appServerRestarts {
		t.Run(sc.name, func(t *testing.T) {
			a := newAppServer(t, sc.server)
			url, _ := startTurnoutOnDefaults(t, "unix:"+a.Sock)
			r := restartUnderLoad(t, url+"/work", a, sc.restart)
			t.Logf("%s: %s", sc.name, r)
			requireRecovery(t, r, sc.slack)
		})
	}
}

// requireRecovery fails the test unless every request of r got the app's
// 200, no POST was lost or applied twice, and the longest request waited at
// most slack longer than the app took to come back.
func requireRecovery(t *testing.T, r restartRun, slack time.Duration) {
	t.Helper()
	if r.Failed > 0 {
		t.Errorf("%d of %d requests failed, want 0; the first: %s", r.Failed, r.Requests, strings.Join(r.Failures[:min(len(r.Failures), 5)], "\n  "))
	}
	if len(r.POSTs.Lost)+len(r.POSTs.Twice)+len(r.POSTs.Unknown) > 0 {
		t.Errorf("POSTs lost (answered 200, never applied) %v, applied twice %v, applied but never sent %v",
			firstIDs(r.POSTs.Lost), firstIDs(r.POSTs.Twice), firstIDs(r.POSTs.Unknown))
	}
	// A machine too busy to answer fast directly is not turnout's fault:
	// its slowness widens the bound.
	if limit := r.Back + slack + r.Direct; r.Longest > limit {
		t.Errorf("the longest request waited %s; the app was back after %s and answered direct requests within %s, so want at most %s",
			r.Longest.Round(time.Millisecond), r.Back.Round(time.Millisecond), r.Direct.Round(time.Millisecond), limit.Round(time.Millisecond))
	}
}

// TestPauseWhileAppServerRestarts is the pause's promise: under 200 req/s,
// `turnout pause` holds every request while uwsgi stops and starts, for 3 s
// in all; `turnout resume` lets them go to the app, and nothing fails or is
// lost. Here "back" is the resume: the longest request waits at most 1.5 s
// longer than the pause lasted.
func TestPauseWhileAppServerRestarts(t *testing.T) {
	a := newAppServer(t, appServerSpec{Kind: uwsgi})
	url, control := startTurnoutOnDefaults(t, "unix:"+a.Sock)
	load := startIDLoad(t, url+"/work", loadRate)
	pulse := startDirectPulse(t, a.Sock)
	load.waitAnswered(t, loadRate)

	paused := time.Now()
	if r := runCLI(t, nil, "pause", "--control", control, "--max", "30s", "--message", "uwsgi restarts"); r.code != 0 {
		t.Fatalf("pause: %s", r)
	}
	a.StopStart()
	<-time.After(time.Until(paused.Add(3 * time.Second))) // the pause lasts 3 s
	r := runCLI(t, nil, "resume", "--control", control)
	if r.code != 0 || !strings.Contains(r.stdout, "resumed") {
		t.Fatalf("resume: %s", r)
	}
	back := r.done.Sub(paused)
	<-time.After(3 * time.Second) // the load goes on after the resume

	f := load.stop()
	run := restartRun{loadFigures: f, Back: back, Direct: pulse.stop(span{paused, paused.Add(back)}), POSTs: checkPOSTs(f, a.AppliedPOSTs())}
	t.Logf("pause, uwsgi stop+start, resume: %s", run)
	requireRecovery(t, run, 1500*time.Millisecond)
}

// firstIDs returns the first few of ids, sorted.
func firstIDs(ids []string) []string {
	slices.Sort(ids)
	return ids[:min(len(ids), 5)]
}

// TestCheckPOSTs checks the harness's own accounting of POSTs against the
// app's record.
func TestCheckPOSTs(t *testing.T) {
	sent := loadFigures{posts: map[string]bool{"p-1": true, "p-3": true, "p-5": false, "p-7": true, "p-9": false}}
	applied := map[string]int{"p-1": 1, "p-3": 2, "p-5": 1, "p-11": 1}
	got := checkPOSTs(sent, applied)
	want := postCheck{Lost: []string{"p-7"}, Twice: []string{"p-3 ×2"}, Unknown: []string{"p-11"}, FailedButApplied: []string{"p-5"}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("checkPOSTs = %+v, want %+v", got, want)
	}
}
