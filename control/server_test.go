package control

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/turnout/turnout/api"
	"github.com/turnout/turnout/config"
	"github.com/turnout/turnout/internal/testsock"
	"github.com/turnout/turnout/state"
	"github.com/turnout/turnout/switcher"
)

// ctlDaemon is a real turnout serving the control API on a unix socket in
// a temporary directory, in front of real backends on loopback.
type ctlDaemon struct {
	sw     *switcher.Switcher
	addrs  switcher.Addrs
	client *http.Client // over the control socket
	bDown  *atomic.Bool // pool B's health checks fail while set
	bAddrs []string
}

const ctlToken = "tok-9f8e7d6c5b4a"

// ctlBackend starts a backend that answers /healthz with 200, or 500 while
// down is set, and everything else with its name.
func ctlBackend(t *testing.T, name string, down *atomic.Bool) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" && down != nil && down.Load() {
			http.Error(w, "not ready", http.StatusInternalServerError)
			return
		}
		fmt.Fprint(w, name)
	}))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// ctlStart starts a daemon with pools A (one server) and B (two servers);
// controlListen, when set, also serves the control API on that TCP address.
func ctlStart(t *testing.T, controlListen string) *ctlDaemon {
	t.Helper()
	return ctlStartWith(t, controlListen, Options{})
}

// ctlStartWith is ctlStart with the control API's options o and more
// top-level config lines.
func ctlStartWith(t *testing.T, controlListen string, o Options, more ...string) *ctlDaemon {
	t.Helper()
	dir := testsock.ShortDir(t)
	d := &ctlDaemon{bDown: new(atomic.Bool)}
	a := ctlBackend(t, "A", nil)
	d.bAddrs = []string{ctlBackend(t, "B", d.bDown), ctlBackend(t, "B", d.bDown)}
	sock := filepath.Join(dir, "run", "control.sock")
	extra := ""
	if controlListen != "" {
		extra = fmt.Sprintf("control_listen = %q\ncontrol_tokens = { deploy = %q }\n", controlListen, ctlToken)
	}
	extra += strings.Join(more, "\n")
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
listen  = ["127.0.0.1:0"]
control = %q
state   = %q
initial = "A"
%s
[proxy]
drain_timeout = "1s"
hold_timeout  = "100ms"
[switch]
timeout       = "10s"
warm_interval = "20ms"
[health]
interval         = "20ms"
standby_interval = "20ms"
timeout          = "1s"
rise             = 2
fall             = 2
[pools.A]
servers = [%q]
[pools.B]
servers = [%q, %q]
`, sock, filepath.Join(t.TempDir(), "state.db"), extra, a, d.bAddrs[0], d.bAddrs[1])), "test.toml")
	if err != nil {
		t.Fatal(err)
	}
	store, err := state.Open(cfg.State, time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	d.sw, err = switcher.New(switcher.Options{Config: cfg, Store: store})
	if err != nil {
		t.Fatal(err)
	}
	admin := New(d.sw, o).Listeners()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan switcher.Addrs, 1)
	done := make(chan error, 1)
	go func() { done <- d.sw.Serve(ctx, admin, func(a switcher.Addrs) { ready <- a }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		store.Close()
	})
	select {
	case d.addrs = <-ready:
	case err := <-done:
		t.Fatalf("Serve: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("the daemon did not become ready within 10s")
	}
	if d.addrs.Control != sock {
		t.Fatalf("Addrs.Control = %q, want %q", d.addrs.Control, sock)
	}
	d.client = &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
	}}
	return d
}

// do sends a control request and returns the status and decoded JSON body.
func (d *ctlDaemon) do(t *testing.T, method, path, body string, out any) int {
	t.Helper()
	req, err := http.NewRequest(method, "http://turnout"+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	status, data := fetch(t, d.client, req)
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s %s: decode %q: %v", method, path, data, err)
		}
	}
	return status
}

// fetch sends req with c and returns the status and the whole body.
func fetch(t *testing.T, c *http.Client, req *http.Request) (int, []byte) {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, data
}

// stream posts a switch with Accept: application/x-ndjson and returns the
// response, whose body yields one JSON line per event.
func (d *ctlDaemon) stream(t *testing.T, body string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://turnout/v1/switch", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", ndjson)
	resp, err := d.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// streamLine is an event or the final result of a stream.
type streamLine struct {
	api.Event
	Result string        `json:"result"`
	Record *state.Record `json:"record"`
	Error  string        `json:"error"`
}

func readStream(t *testing.T, resp *http.Response) []streamLine {
	t.Helper()
	var lines []streamLine
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		var l streamLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("stream line %q: %v", sc.Bytes(), err)
		}
		lines = append(lines, l)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(lines) == 0 || lines[len(lines)-1].Type != "result" {
		t.Fatalf("the stream does not end with a result line: %+v", lines)
	}
	return lines
}

// waitIdle waits until no switch is in progress.
func (d *ctlDaemon) waitIdle(t *testing.T) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for d.sw.Status().Switching != nil {
		select {
		case <-time.After(20 * time.Millisecond):
		case <-deadline:
			t.Fatal("the switch did not end within 10s")
		}
	}
}

func TestControlStatusShape(t *testing.T) {
	d := ctlStart(t, "")
	var st map[string]any
	if code := d.do(t, http.MethodGet, "/v1/status", "", &st); code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	for _, k := range []string{"active", "maintenance", "switching", "pools", "config"} {
		if _, ok := st[k]; !ok {
			t.Errorf("status has no %q: %v", k, st)
		}
	}
	if st["active"] != "A" || st["switching"] != nil || st["maintenance"] != false {
		t.Errorf("active, switching, maintenance = %v, %v, %v; want A, null, false", st["active"], st["switching"], st["maintenance"])
	}
	pools := st["pools"].([]any)
	if len(pools) != 2 {
		t.Fatalf("pools = %v", pools)
	}
	p := pools[0].(map[string]any)
	for _, k := range []string{"name", "active", "live", "ready", "servers"} {
		if _, ok := p[k]; !ok {
			t.Errorf("pool has no %q: %v", k, p)
		}
	}
	srv := p["servers"].([]any)[0].(map[string]any)
	for _, k := range []string{"address", "weight", "state", "passes", "fails", "last_error", "in_flight"} {
		if _, ok := srv[k]; !ok {
			t.Errorf("server has no %q: %v", k, srv)
		}
	}
	cfg := st["config"].(map[string]any)
	for _, k := range []string{"path", "loaded_at", "last_error"} {
		if _, ok := cfg[k]; !ok {
			t.Errorf("config has no %q: %v", k, cfg)
		}
	}
}

func TestControlSwitchStreams(t *testing.T) {
	d := ctlStart(t, "")
	resp := d.stream(t, `{"to":"b","reason":"deploy 42"}`)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != ndjson {
		t.Fatalf("status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	lines := readStream(t, resp)
	var types []string
	for _, l := range lines {
		types = append(types, l.Type)
	}
	if types[0] != "accepted" || !strings.Contains(strings.Join(types, " "), "progress") {
		t.Errorf("events = %v; want accepted, progress…", types)
	}
	for _, want := range []string{"ready", "switched", "drained"} {
		if !strings.Contains(strings.Join(types, " "), want) {
			t.Errorf("events = %v; no %s", types, want)
		}
	}
	res := lines[len(lines)-1]
	if res.Result != "switched" || res.Record == nil || res.Record.To != "B" || res.Error != "" {
		t.Fatalf("result = %+v", res)
	}
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	var hist []state.Record
	if code := d.do(t, http.MethodGet, "/v1/history?limit=5", "", &hist); code != http.StatusOK {
		t.Fatalf("history status %d", code)
	}
	if len(hist) != 1 || hist[0].ID != res.Record.ID || hist[0].Result != "switched" ||
		hist[0].Reason != "deploy 42" || hist[0].Actor != me.Username {
		t.Fatalf("history = %+v; want one switched record by %s", hist, me.Username)
	}
	if d.sw.Active() != "B" {
		t.Errorf("active = %s, want B", d.sw.Active())
	}

	if lines := readStream(t, d.stream(t, `{"to":"B"}`)); len(lines) != 1 || lines[0].Result != "already_active" {
		t.Errorf("streamed switch to the active pool: %+v; want one already_active line", lines)
	}
	var again api.SwitchResult
	if code := d.do(t, http.MethodPost, "/v1/switch", `{"to":"B"}`, &again); code != http.StatusOK || again.Result != "already_active" {
		t.Errorf("switch to the active pool: %d %+v", code, again)
	}
}

func TestControlSwitchAbortsWhenServersAreDown(t *testing.T) {
	d := ctlStart(t, "")
	d.bDown.Store(true)
	t.Run("stream", func(t *testing.T) {
		lines := readStream(t, d.stream(t, `{"to":"B","timeout":"300ms"}`))
		res := lines[len(lines)-1]
		if res.Result != "aborted" || res.Record == nil || !strings.Contains(res.Error, "not ready within") {
			t.Fatalf("result = %+v", res)
		}
		for _, srv := range res.Record.Servers {
			if !strings.Contains(srv.LastError, "500") {
				t.Errorf("server %s last error %q; want the failing status", srv.Address, srv.LastError)
			}
		}
		if len(res.Record.Servers) != 2 {
			t.Errorf("record servers = %+v; want both of B", res.Record.Servers)
		}
	})
	t.Run("plain", func(t *testing.T) {
		var res api.SwitchResult
		code := d.do(t, http.MethodPost, "/v1/switch", `{"to":"B","timeout":"300ms"}`, &res)
		if code != http.StatusUnprocessableEntity || res.Code != "aborted" || res.Record == nil {
			t.Fatalf("%d %+v", code, res)
		}
	})
	if d.sw.Active() != "A" {
		t.Errorf("active = %s; A must keep traffic", d.sw.Active())
	}
}

func TestControlConcurrentSwitchConflictsAndDisconnectAborts(t *testing.T) {
	d := ctlStart(t, "")
	d.bDown.Store(true)
	resp := d.stream(t, `{"to":"B","timeout":"10s"}`)
	var first streamLine
	if err := json.NewDecoder(resp.Body).Decode(&first); err != nil || first.Type != "accepted" {
		t.Fatalf("first line %+v, %v", first, err)
	}
	var e map[string]string
	if code := d.do(t, http.MethodPost, "/v1/switch", `{"to":"B"}`, &e); code != http.StatusConflict || e["code"] != "conflict" {
		t.Fatalf("second switch: %d %v; want 409 conflict", code, e)
	}
	resp.Body.Close() // the client hangs up during warm-up
	d.waitIdle(t)
	var hist []state.Record
	d.do(t, http.MethodGet, "/v1/history", "", &hist)
	if len(hist) != 1 || hist[0].Result != "aborted" {
		t.Fatalf("history = %+v; want the cancelled switch recorded as aborted", hist)
	}
}

func TestControlErrors(t *testing.T) {
	d := ctlStart(t, "")
	for _, tc := range []struct {
		name, method, path, body string
		status                   int
		code, says               string
	}{
		{"expect_active mismatch", "POST", "/v1/switch", `{"to":"B","expect_active":"B"}`, 409, "conflict", "A is active"},
		{"unknown pool", "POST", "/v1/switch", `{"to":"C"}`, 404, "unknown_pool", "the pools are"},
		{"bad JSON", "POST", "/v1/switch", `{"to":`, 400, "bad_request", "not valid"},
		{"unknown field", "POST", "/v1/switch", `{"to":"B","tiemout":"1s"}`, 400, "bad_request", `unknown field "tiemout"`},
		{"bad duration", "POST", "/v1/switch", `{"to":"B","timeout":"ten"}`, 400, "bad_request", `like "30s"`},
		{"missing to", "POST", "/v1/switch", `{"reason":"x"}`, 400, "bad_request", `"to" is missing`},
		{"empty body", "POST", "/v1/switch", ``, 400, "bad_request", "empty"},
		{"too large", "POST", "/v1/switch", `{"reason":"` + strings.Repeat("x", maxControlBody) + `"}`, 413, "too_large", "smaller"},
		{"wrong method", "GET", "/v1/switch", ``, 405, "method_not_allowed", "use POST"},
		{"unknown path", "GET", "/v2/status", ``, 404, "not_found", "/v1/status"},
		{"bad limit", "GET", "/v1/history?limit=x", ``, 400, "bad_request", "limit"},
		{"maintenance without on", "POST", "/v1/maintenance", `{"message":"x"}`, 400, "bad_request", `"on" is missing`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var e map[string]string
			code := d.do(t, tc.method, tc.path, tc.body, &e)
			if code != tc.status || e["code"] != tc.code || !strings.Contains(e["error"], tc.says) {
				t.Errorf("%d %v; want %d, code %s, error saying %q", code, e, tc.status, tc.code, tc.says)
			}
		})
	}
	if d.sw.Active() != "A" || d.sw.Status().Switching != nil {
		t.Errorf("bad requests changed something: active %s", d.sw.Active())
	}
}

func TestControlMaintenance(t *testing.T) {
	d := ctlStart(t, "")
	front := "http://" + d.addrs.Proxy[0] + "/"
	page := func() (int, string) { return get(t, front) }
	if code, body := page(); code != 200 || body != "A" {
		t.Fatalf("before: %d %q", code, body)
	}
	var res map[string]any
	if code := d.do(t, "POST", "/v1/maintenance", `{"on":true,"message":"back at five"}`, &res); code != 200 || res["maintenance"] != true {
		t.Fatalf("maintenance on: %d %v", code, res)
	}
	if code, body := page(); code != 503 || !strings.Contains(body, "back at five") {
		t.Errorf("in maintenance: %d %q; want 503 with the message", code, body)
	}
	if !d.sw.Status().Maintenance {
		t.Error("status does not show maintenance")
	}
	if code := d.do(t, "POST", "/v1/maintenance", `{"on":false}`, &res); code != 200 {
		t.Fatalf("maintenance off: %d %v", code, res)
	}
	if code, body := page(); code != 200 || body != "A" {
		t.Errorf("after: %d %q", code, body)
	}
}

func TestControlTCPNeedsToken(t *testing.T) {
	// Serve reports only the unix socket's address, so pick a free port.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctlStart(t, addr)
	for _, tc := range []struct {
		name, auth string
		status     int
	}{
		{"no token", "", 401},
		{"wrong token", "Bearer nope", 401},
		{"not bearer", "Basic " + ctlToken, 401},
		{"right token", "Bearer " + ctlToken, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", "http://"+addr+"/v1/status", nil)
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d %s; want %d", resp.StatusCode, body, tc.status)
			}
			if strings.Contains(string(body), ctlToken) {
				t.Errorf("the token value appears in the answer: %s", body)
			}
			if tc.status == 401 && !strings.Contains(string(body), `"code": "unauthorized"`) {
				t.Errorf("401 body %s", body)
			}
		})
	}

	// The token's name is the actor.
	req, _ := http.NewRequest("POST", "http://"+addr+"/v1/switch", strings.NewReader(`{"to":"B","force":true}`))
	req.Header.Set("Authorization", "Bearer "+ctlToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var res api.SwitchResult
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
		t.Fatal(err)
	}
	if res.Result != "forced" || res.Record == nil || res.Record.Actor != "deploy" {
		t.Errorf("forced switch over TCP: %+v; want actor deploy", res)
	}
}

func TestControlSocketRefusesLiveDaemon(t *testing.T) {
	d := ctlStart(t, "")
	if _, err := listenControlSocket(d.addrs.Control); err == nil || !strings.Contains(err.Error(), "another turnout is listening") {
		t.Fatalf("second listen: %v", err)
	}
	fi, err := os.Stat(d.addrs.Control)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o660 {
		t.Errorf("socket mode %v, want 0660", fi.Mode().Perm())
	}
}

func TestControlSocketReplacesStale(t *testing.T) {
	path := filepath.Join(testsock.ShortDir(t), "c.sock")
	stale, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	stale.Close() // leaves the socket file, with nothing answering
	ln, err := listenControlSocket(path)
	if err != nil {
		t.Fatalf("listen over a stale socket: %v", err)
	}
	ln.Close()
}

// Every control connection is closed once it has taken too long: one that
// stops halfway through its body (on the unix socket, and on TCP where it
// gets 401 without its body being read), one that stops halfway through its
// head, and one that waits for a next request. A streamed switch that
// lasts longer than all of them is not cut.
func TestControlConnectionsTimeOut(t *testing.T) {
	tcp := testsock.FreeAddr(t)
	d := ctlStartWith(t, tcp, Options{Timeouts: Timeouts{Header: 300 * time.Millisecond, Body: 300 * time.Millisecond, Idle: 300 * time.Millisecond}})
	for _, tc := range []struct {
		name, network, addr, raw string
		answered                 bool // an answer comes before the close
	}{
		{"half a body", "unix", d.addrs.Control, "POST /v1/maintenance HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n{\"on\"", true},
		{"half a body, 401", "tcp", tcp, "POST /v1/switch HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n{\"to\"", false},
		{"half a head", "unix", d.addrs.Control, "GET /v1/status HTTP/1.1\r\nHost: t\r\n", false},
		{"half a head, TCP", "tcp", tcp, "GET /v1/status HTTP/1.1\r\n", false},
		{"idle after an answer", "unix", d.addrs.Control, "GET /v1/status HTTP/1.1\r\nHost: t\r\n\r\n", true},
		{"idle after a 401", "tcp", tcp, "GET /v1/status HTTP/1.1\r\nHost: t\r\n\r\n", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial(tc.network, tc.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second)) // far past the timeouts: a wait for the close, not a timed test
			if _, err := io.WriteString(c, tc.raw); err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(c)
			if tc.answered {
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatalf("no answer: %v", err)
				}
				io.Copy(io.Discard, resp.Body)
			}
			if _, err := io.Copy(io.Discard, br); err != nil {
				t.Fatalf("the connection was not closed by the daemon: %v", err)
			}
		})
	}

	// A streamed switch outlives every timeout: B warms for longer.
	d.bDown.Store(true)
	c, err := net.Dial("unix", d.addrs.Control)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	body := `{"to":"B","timeout":"5s"}`
	fmt.Fprintf(c, "POST /v1/switch HTTP/1.1\r\nHost: t\r\nAccept: %s\r\nContent-Length: %d\r\n\r\n%s", ndjson, len(body), body)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(resp.Body)
	for progress := 0; sc.Scan(); {
		if strings.Contains(sc.Text(), `"progress"`) {
			if progress++; progress == 30 { // 30 × warm_interval (20ms): past the timeouts
				d.bDown.Store(false)
			}
		}
		if strings.Contains(sc.Text(), `"type":"result"`) {
			if !strings.Contains(sc.Text(), `"result":"switched"`) {
				t.Fatalf("the streamed switch ended with %s", sc.Text())
			}
			return
		}
	}
	t.Fatalf("the stream ended without a result: %v", sc.Err())
}

// A timeout left out of Options is the daemon's, not zero (a zero body
// timeout would end every request with a body at once).
func TestUnsetTimeoutsAreTheDaemons(t *testing.T) {
	got := New(nil, Options{Timeouts: Timeouts{Header: time.Second}}).timeouts
	want := Timeouts{Header: time.Second, Body: defaultTimeouts.Body, Idle: defaultTimeouts.Idle}
	if got != want {
		t.Fatalf("timeouts %+v, want %+v", got, want)
	}
}
