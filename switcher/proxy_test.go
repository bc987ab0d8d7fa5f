package switcher

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/turnout/turnout/api"
	"github.com/turnout/turnout/config"
	"github.com/turnout/turnout/internal/testlog"
	"github.com/turnout/turnout/internal/testsock"
	"github.com/turnout/turnout/state"
)

// backend is a real HTTP server on a loopback port that can be stopped and
// started again on the same port.
type backend struct {
	t       *testing.T
	name    string
	addr    string
	handler http.Handler
	srv     *http.Server
	hits    atomic.Int64
}

func newBackend(t *testing.T, name string, h http.HandlerFunc) *backend {
	t.Helper()
	b := &backend{t: t, name: name}
	b.handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			io.WriteString(w, "ok")
			return
		}
		b.hits.Add(1)
		if h != nil {
			h(w, r)
			return
		}
		io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "%s %s", b.name, r.Method)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b.addr = ln.Addr().String()
	b.serve(ln)
	t.Cleanup(b.stop)
	return b
}

func (b *backend) serve(ln net.Listener) {
	b.srv = &http.Server{Handler: b.handler}
	go b.srv.Serve(ln)
}

func (b *backend) stop() {
	if b.srv != nil {
		b.srv.Close()
	}
}

func (b *backend) start() {
	ln, err := net.Listen("tcp", b.addr)
	if err != nil {
		b.t.Fatal(err)
	}
	b.serve(ln)
}

// harness is a running Switcher on loopback.
type harness struct {
	path  string // the config file
	sw    *Switcher
	proxy string
	addrs Addrs
	store *state.Store
	stop  func() // shuts the switcher down and waits for Serve to return; Cleanup calls it too
}

// startSwitcher serves a config made of base settings and the two pools;
// with logs, the switcher logs there at info level.
func startSwitcher(t testing.TB, base string, poolA, poolB []string, logs ...*testlog.Buffer) *harness {
	t.Helper()
	dir := t.TempDir()
	sock := testsock.ShortDir(t)
	text := fmt.Sprintf(`listen = ["127.0.0.1:0"]
control = %q
state = %q
initial = "A"
%s
[pools.A]
servers = [%s]
[pools.B]
servers = [%s]
`, filepath.Join(sock, "c.sock"), filepath.Join(dir, "state.db"), base, quoteAll(poolA), quoteAll(poolB))
	path := filepath.Join(dir, "turnout.toml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("config: %v\n%s", err, text)
	}
	store, err := state.Open(cfg.State, time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	var logger hclog.Logger
	if len(logs) > 0 {
		logger = hclog.New(&hclog.LoggerOptions{Output: logs[0], Level: hclog.Info})
	}
	sw, err := New(Options{Config: cfg, Store: store, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan Addrs, 1)
	done := make(chan error, 1)
	go func() { done <- sw.Serve(ctx, metricsListener(sw), func(a Addrs) { ready <- a }) }()
	h := &harness{path: path, sw: sw, store: store}
	select {
	case h.addrs = <-ready:
	case err := <-done:
		t.Fatalf("serve: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("switcher not ready")
	}
	h.proxy = "http://" + h.addrs.Proxy[0]
	var once sync.Once
	h.stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(func() {
		h.stop()
		store.Close()
	})
	return h
}

func quoteAll(xs []string) string {
	q := make([]string, len(xs))
	for i, x := range xs {
		q[i] = fmt.Sprintf("%q", x)
	}
	return strings.Join(q, ", ")
}

// fastChecks makes health checks quick enough for tests.
const fastChecks = `
[health]
interval = "20ms"
standby_interval = "20ms"
timeout = "500ms"
rise = 1
fall = 1
[switch]
warm_interval = "20ms"
timeout = "10s"
[proxy]
drain_timeout = "10s"
`

var client = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 30 * time.Second}

func do(t *testing.T, method, url, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestHeldRequestWaitsForTheServerToComeBack(t *testing.T) {
	a := newBackend(t, "A", nil)
	b := newBackend(t, "B", nil)
	a.stop()
	h := startSwitcher(t, fastChecks+`hold_timeout = "20s"`, []string{a.addr}, []string{b.addr})
	for _, method := range []string{http.MethodPost, http.MethodGet} {
		a.stop()
		got := make(chan string, 1)
		go func() {
			code, body := do(t, method, h.proxy+"/", "payload")
			got <- fmt.Sprint(code, " ", body)
		}()
		// The request is held (the pool has no live server) until A listens.
		waitFor(t, "a held request", func() bool { return h.sw.Held() == 1 })
		a.start()
		if r := <-got; r != "200 A "+method {
			t.Fatalf("%s held request got %q, want 200 from A", method, r)
		}
	}
}

func TestRefusedConnectionGoesToAnotherServer(t *testing.T) {
	a1 := newBackend(t, "A1", nil)
	dead := testsock.FreeAddr(t)
	b := newBackend(t, "B", nil)
	h := startSwitcher(t, `[health]
interval = "1h"
`, []string{dead, a1.addr}, []string{b.addr})
	for i := range 4 {
		method := []string{http.MethodPost, http.MethodGet}[i%2]
		if code, body := do(t, method, h.proxy+"/", "x"); code != 200 || body != "A1 "+method {
			t.Fatalf("%s got %d %q, want 200 from A1", method, code, body)
		}
	}
}

func TestResetAfterDeliveryRetriesOnlyIdempotentRequests(t *testing.T) {
	reset := func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
	}
	bad := newBackend(t, "bad", reset)
	good := newBackend(t, "good", nil)
	h := startSwitcher(t, `[health]
interval = "1h"
`, []string{bad.addr, good.addr}, []string{good.addr})
	sawBadGateway := false
	for range 6 {
		if code, body := do(t, http.MethodGet, h.proxy+"/", ""); code != 200 || body != "good GET" {
			t.Fatalf("GET got %d %q, want 200 from the good server", code, body)
		}
		code, _ := do(t, http.MethodPost, h.proxy+"/", "x")
		switch code {
		case 200:
		case 502:
			sawBadGateway = true
		default:
			t.Fatalf("POST got %d, want 200 or 502", code)
		}
	}
	if !sawBadGateway {
		t.Fatal("a POST that reached a server that reset it was retried; it must get 502")
	}
	req, _ := http.NewRequest(http.MethodPost, h.proxy+"/", strings.NewReader("x"))
	req.Header.Set("Idempotency-Key", "k1")
	for range 4 {
		resp, err := client.Do(req.Clone(context.Background()))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("POST with Idempotency-Key got %d, want 200 after a retry", resp.StatusCode)
		}
		req.Body = io.NopCloser(strings.NewReader("x"))
	}
}

func TestInFlightRequestFinishesOnTheOldPoolAfterASwitch(t *testing.T) {
	release := make(chan struct{})
	arrived := make(chan struct{}, 1)
	a := newBackend(t, "A", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			arrived <- struct{}{}
			<-release
		}
		fmt.Fprint(w, "A")
	})
	b := newBackend(t, "B", nil)
	h := startSwitcher(t, fastChecks, []string{a.addr}, []string{b.addr})

	slow := make(chan string, 1)
	go func() {
		code, body := do(t, http.MethodPost, h.proxy+"/slow", "x")
		slow <- fmt.Sprint(code, " ", body)
	}()
	<-arrived
	switched := make(chan error, 1)
	go func() {
		_, err := h.sw.Switch(context.Background(), SwitchRequest{To: "b", Actor: "test"}, nil)
		switched <- err
	}()
	waitFor(t, "the switch to B", func() bool { return h.sw.Active() == "B" })
	if code, body := do(t, http.MethodGet, h.proxy+"/", ""); code != 200 || body != "B GET" {
		t.Fatalf("new request after the swap got %d %q, want B", code, body)
	}
	select {
	case err := <-switched:
		t.Fatalf("switch returned (%v) before A drained", err)
	default:
	}
	close(release)
	if r := <-slow; r != "200 A" {
		t.Fatalf("in-flight request got %q, want 200 from A", r)
	}
	if err := <-switched; err != nil {
		t.Fatal(err)
	}
	hist, err := h.sw.History(0)
	if err != nil || len(hist) != 1 || hist[0].Result != state.ResultSwitched || hist[0].FinishedAt.IsZero() {
		t.Fatalf("history %+v (%v), want one finished switched record", hist, err)
	}
}

func TestSwitchNeedsFreshPassesAndAbortsOnFlapping(t *testing.T) {
	var n atomic.Int64
	a := newBackend(t, "A", nil)
	flappy := &backend{t: t, name: "B"}
	flappy.handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1)%2 == 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	flappy.addr = ln.Addr().String()
	flappy.serve(ln)
	t.Cleanup(flappy.stop)
	h := startSwitcher(t, strings.Replace(fastChecks, "rise = 1", "rise = 3", 1), []string{a.addr}, []string{flappy.addr})

	var maxPasses int
	_, err = h.sw.Switch(context.Background(), SwitchRequest{To: "B", Timeout: 500 * time.Millisecond, Actor: "test"}, func(e api.Event) {
		for _, s := range e.Servers {
			maxPasses = max(maxPasses, s.Passes)
		}
	})
	if !errors.Is(err, ErrAborted) {
		t.Fatalf("switch to a flapping pool: %v, want aborted", err)
	}
	if h.sw.Active() != "A" || maxPasses >= 3 {
		t.Fatalf("active %s, max passes %d; want A and fewer than rise", h.sw.Active(), maxPasses)
	}
	hist, _ := h.sw.History(1)
	if len(hist) != 1 || hist[0].Result != state.ResultAborted || hist[0].Servers[0].LastError == "" {
		t.Fatalf("history %+v, want an aborted record with the server's last error", hist)
	}
}

// waitFor waits for cond, checking at every server state change and at
// least every 10ms, for at most 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// metricsListener serves /metrics on metrics_listen, when it is set, as
// package control does for the daemon.
func metricsListener(sw *Switcher) []Listener {
	addr := sw.Config().MetricsListen
	if addr == "" {
		return nil
	}
	return []Listener{{
		Listen:  func() (net.Listener, error) { return net.Listen("tcp", addr) },
		Addr:    func(a *Addrs, addr string) { a.Metrics = addr },
		Handler: sw.MetricsHandler(),
	}}
}
