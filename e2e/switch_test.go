package e2e

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestSwitchTwentyTimesUnderLoad is the switch's main promise: 20 switches
// A↔B with the real CLI under 300 req/s of GET and POST lose no request,
// each exits 0, and the history holds the 20 switches in order.
func TestSwitchTwentyTimesUnderLoad(t *testing.T) {
	a1, a2 := newBackend(t, "A", "tcp"), newBackend(t, "A", "unix")
	b1, b2 := newBackend(t, "B", "tcp"), newBackend(t, "B", "unix")
	c := newCfgSpec(t, []string{a1.Spec(), a2.Spec()}, []string{b1.Spec(), b2.Spec()})
	d := serveDaemon(t, writeCfg(t, c), c)

	stop := startLoadUntil(t, loadSpec{URL: d.URL + "/", Workers: 100, Rate: 300, PostBody: "switch load"})
	began := time.Now()
	for i := range 20 {
		to := "B"
		if i%2 == 1 {
			to = "A"
		}
		r := runCLI(t, nil, "switch", to, "--control", d.Control, "--reason", strconv.Itoa(i+1))
		if r.code != 0 {
			requireNoFailure(t, stop())
			t.Fatalf("switch %d: want exit 0\n%s", i+1, r)
		}
	}
	t.Logf("20 switches in %s", time.Since(began).Round(time.Millisecond))
	res := stop()
	requireNoFailure(t, res)
	if res.Backends["A"] == 0 || res.Backends["B"] == 0 {
		t.Errorf("want traffic on both pools, got %v", res.Backends)
	}

	recs := historyJSON(t, "--control", d.Control)
	if len(recs) != 20 {
		t.Fatalf("history holds %d records, want 20: %+v", len(recs), recs)
	}
	for k := range 20 {
		rec := recs[19-k] // newest first
		wantTo, wantFrom := "B", "A"
		if k%2 == 1 {
			wantTo, wantFrom = "A", "B"
		}
		if rec.Result != "switched" || rec.To != wantTo || rec.From != wantFrom || rec.Reason != strconv.Itoa(k+1) {
			t.Errorf("switch %d: record %+v, want switched %s -> %s with reason %d", k+1, rec, wantFrom, wantTo, k+1)
		}
	}
}

// TestSwitchToDownPoolAborts: a switch to a pool whose servers are down
// exits 1 at its timeout, A keeps every request, and the history says why
// for each server.
func TestSwitchToDownPoolAborts(t *testing.T) {
	a := newBackend(t, "A", "tcp")
	c := newCfgSpec(t, []string{a.Spec()}, []string{freeTCPAddr(t), freeTCPAddr(t)})
	d := serveDaemon(t, writeCfg(t, c), c)

	stop := startLoadUntil(t, loadSpec{URL: d.URL + "/", Workers: 100, Rate: 300, PostBody: "abort load"})
	watch := activeWatch(t, d.Control)
	r := runCLI(t, nil, "switch", "B", "--timeout", "1s", "--control", d.Control, "--reason", "down pool")
	seen := watch()
	res := stop()

	if r.code != 1 || !strings.Contains(r.stderr, "aborted") {
		t.Errorf("want exit 1 with an 'aborted' message\n%s", r)
	}
	requireAllFromA(t, res, seen)
	recs := historyJSON(t, "--control", d.Control)
	if len(recs) != 1 {
		t.Fatalf("history holds %d records, want 1: %+v", len(recs), recs)
	}
	rec := recs[0]
	if rec.Result != "aborted" || rec.To != "B" || len(rec.Servers) != 2 {
		t.Fatalf("record %+v, want aborted A -> B with 2 servers", rec)
	}
	for _, s := range rec.Servers {
		if s.LastError == "" {
			t.Errorf("server %s of the aborted switch has no last_error: %+v", s.Address, rec)
		}
	}
}

// progressRE is a progress line of `turnout switch` on a non-terminal.
var progressRE = regexp.MustCompile(`^progress (\S+) (\d+)/(\d+) (\S+)`)

// TestSwitchNeedsFreshPasses: a target that was up before the switch is
// put back to probation and needs rise fresh passes; the CLI shows them
// counting up before `switched`.
func TestSwitchNeedsFreshPasses(t *testing.T) {
	a, b := newBackend(t, "A", "tcp"), newBackend(t, "B", "tcp")
	c := newCfgSpec(t, []string{a.Spec()}, []string{b.Spec()})
	c.PoolB = "[pools.B.health]\nrise = 3\n"
	d := serveDaemon(t, writeCfg(t, c), c)
	pollUntil(t, "B up with 3 passes before the switch", func() (bool, string) {
		s := fetchStatus(t, d.Control).pool("B")
		return len(s) == 1 && s[0].State == "up" && s[0].Passes >= 3, fmt.Sprintf("%+v", s)
	})

	r := runCLI(t, nil, "switch", "B", "--control", d.Control)
	if r.code != 0 {
		t.Fatalf("want exit 0\n%s", r)
	}
	var passes []int
	switched := false
	for _, line := range strings.Split(r.stdout, "\n") {
		if line == "switched" {
			switched = true
		}
		m := progressRE.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		if switched {
			t.Errorf("progress line after switched: %q", line)
		}
		n, _ := strconv.Atoi(m[2])
		if m[3] != "3" {
			t.Errorf("progress line %q: want rise 3", line)
		}
		passes = append(passes, n)
	}
	// The first event normally shows 0/3 or 1/3; events are coalesced when
	// the daemon is busy, so only "below rise" is certain.
	if !switched || len(passes) == 0 || passes[0] >= 3 || !strings.Contains(r.stdout, " probation") {
		t.Fatalf("want progress lines of a server in probation counting toward 3/3, then switched; passes %v\n%s", passes, r)
	}
	for i := 1; i < len(passes); i++ {
		if passes[i] < passes[i-1] {
			t.Errorf("passes went down: %v", passes)
		}
	}
	recs := historyJSON(t, "--control", d.Control)
	// Three fresh checks at warm_interval 50ms (±10% jitter) take at least
	// two intervals; a target trusted on its old passes would take none.
	if len(recs) != 1 || recs[0].WarmMS < 80 {
		t.Errorf("want one record with a warm-up of at least 80ms, got %+v", recs)
	}
}

// flappingServer serves /healthz alternately 200 and 500 and echoes every
// other request as backend "F"; it runs in the test process.
func flappingServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var checks atomic.Int64
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			if checks.Add(1)%2 == 0 {
				http.Error(w, "flapping", http.StatusInternalServerError)
				return
			}
			io.WriteString(w, "ok")
			return
		}
		(&backendServer{name: "F"}).echo(w, r)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// TestFlappingTargetNeverActive: a target whose checks alternate pass and
// fail never gets rise=2 passes in a row, so it never takes traffic.
func TestFlappingTargetNeverActive(t *testing.T) {
	a := newBackend(t, "A", "tcp")
	c := newCfgSpec(t, []string{a.Spec()}, []string{flappingServer(t)})
	d := serveDaemon(t, writeCfg(t, c), c)

	stop := startLoadUntil(t, loadSpec{URL: d.URL + "/", Workers: 100, Rate: 300, PostBody: "flap load"})
	watch := activeWatch(t, d.Control)
	r := runCLI(t, nil, "switch", "B", "--timeout", "1500ms", "--control", d.Control)
	seen := watch()
	res := stop()
	if r.code != 1 {
		t.Errorf("want exit 1\n%s", r)
	}
	requireAllFromA(t, res, seen)
	recs := historyJSON(t, "--control", d.Control)
	if len(recs) != 1 || recs[0].Result != "aborted" || len(recs[0].Servers) != 1 || recs[0].Servers[0].LastError == "" {
		t.Errorf("want one aborted record whose server has a last_error, got %+v", recs)
	}
}

// TestSwitchExitCodes: a second concurrent switch and a wrong
// --expect-active exit 4, a daemon that is not running exits 3 naming the
// socket, an unknown pool exits 1.
func TestSwitchExitCodes(t *testing.T) {
	a := newBackend(t, "A", "tcp")
	c := newCfgSpec(t, []string{a.Spec()}, []string{freeTCPAddr(t)})
	d := serveDaemon(t, writeCfg(t, c), c)

	first, firstDone := goCLI(t, nil, "switch", "B", "--timeout", "30s", "--control", d.Control)
	pollUntil(t, "the first switch in progress", func() (bool, string) {
		st := fetchStatus(t, d.Control)
		return st.Switching != nil, fmt.Sprintf("%+v", st)
	})
	if r := runCLI(t, nil, "switch", "B", "--control", d.Control); r.code != 4 || !strings.Contains(r.stderr, "in progress") {
		t.Errorf("second concurrent switch: want exit 4 saying a switch is in progress\n%s", r)
	}
	// Ctrl-C on the waiting CLI aborts the warm-up.
	if err := first.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-firstDone:
		if r.code != 1 {
			t.Errorf("interrupted switch: want exit 1\n%s", r)
		}
	case <-time.After(eventTimeout):
		t.Fatal("the interrupted switch did not end")
	}
	waitActive(t, d.Control, "A")

	cases := []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"expect-active mismatch", []string{"switch", "B", "--expect-active", "B", "--control", d.Control}, 4, "expect-active"},
		{"unknown pool", []string{"switch", "C", "--control", d.Control}, 1, `"C"`},
		{"daemon not running", []string{"switch", "B", "--control", filepath.Join(shortDir(t), "none.sock")}, 3, "none.sock"},
	}
	for _, tc := range cases {
		r := runCLI(t, nil, tc.args...)
		if r.code != tc.code || !strings.Contains(r.stderr, tc.stderr) {
			t.Errorf("%s: want exit %d with %q in stderr\n%s", tc.name, tc.code, tc.stderr, r)
		}
	}
	if st := fetchStatus(t, d.Control); st.Active != "A" {
		t.Errorf("active %s after the refused switches, want A", st.Active)
	}
}

// TestSwitchWaitsForSlowRequest: a 5 s request in flight on A when the
// switch happens completes with 200 from A, new requests go to B at once,
// and `turnout switch` returns after the slow request is done.
func TestSwitchWaitsForSlowRequest(t *testing.T) {
	a, b := newBackend(t, "A", "tcp"), newBackend(t, "B", "tcp")
	c := newCfgSpec(t, []string{a.Spec()}, []string{b.Spec()})
	c.Drain = "20s"
	d := serveDaemon(t, writeCfg(t, c), c)
	waitPoolUp(t, d.Control, "B")

	type answer struct {
		status  int
		backend string
		err     error
		at      time.Time
	}
	slow := make(chan answer, 1)
	sent := time.Now()
	go func() {
		status, backend, _, err := proxyGet(d.URL + "/slow?ms=5000")
		slow <- answer{status, backend, err, time.Now()}
	}()
	pollUntil(t, "the slow request in flight on A", func() (bool, string) {
		s := fetchStatus(t, d.Control).pool("A")
		return len(s) == 1 && s[0].InFlight > 0, fmt.Sprintf("%+v", s)
	})
	_, switchDone := goCLI(t, nil, "switch", "B", "--control", d.Control)
	waitActive(t, d.Control, "B")
	if status, backend, body, err := proxyGet(d.URL + "/"); err != nil || status != http.StatusOK || backend != "B" {
		t.Errorf("request after the swap: %d from %q (%v), want 200 from B; body %.200q", status, backend, err, body)
	}

	var s answer
	select {
	case s = <-slow:
	case <-time.After(20 * time.Second):
		t.Fatal("the slow request did not end")
	}
	if s.err != nil || s.status != http.StatusOK || s.backend != "A" {
		t.Errorf("slow request: %d from %q (%v), want 200 from A", s.status, s.backend, s.err)
	}
	r := <-switchDone
	if r.code != 0 || !strings.Contains(r.stdout, "drained") || strings.Contains(r.stdout, "drain_timeout") {
		t.Errorf("want exit 0 after a complete drain\n%s", r)
	}
	// The backend answers 5 s after it got the request, so a drain that
	// waited for it cannot end before then.
	if took := r.done.Sub(sent); took < 5*time.Second {
		t.Errorf("switch returned %s after the slow request was sent (it ended after %s): it did not wait for it",
			took.Round(time.Millisecond), s.at.Sub(sent).Round(time.Millisecond))
	}
}

// TestControlAPIOnTCP: the TCP control API refuses requests without the
// token, never shows or logs it, and `turnout switch` with TURNOUT_TOKEN
// works and is recorded with the token's name as actor.
func TestControlAPIOnTCP(t *testing.T) {
	a, b := newBackend(t, "A", "tcp"), newBackend(t, "B", "tcp")
	raw := make([]byte, 16)
	rand.Read(raw)
	token := "tok-" + hex.EncodeToString(raw)
	ctl := freeTCPAddr(t)
	c := newCfgSpec(t, []string{a.Spec()}, []string{b.Spec()})
	c.Top = fmt.Sprintf("initial = \"A\"\ncontrol_listen = %q\ncontrol_tokens = { deploy = \"env:TURNOUT_DEPLOY_TOKEN\" }", ctl)
	d := serveDaemon(t, writeCfg(t, c), c, "TURNOUT_DEPLOY_TOKEN="+token)
	base := "http://" + ctl

	call := func(method, path, auth, body string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, base+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(data)
	}
	refused := []struct{ method, path, auth, body string }{
		{"GET", "/v1/status", "", ""},
		{"GET", "/v1/status", "Bearer wrong", ""},
		{"GET", "/v1/status", token, ""}, // no "Bearer "
		{"GET", "/v1/history", "Bearer " + token + "x", ""},
		{"POST", "/v1/switch", "", `{"to":"B"}`},
		{"POST", "/v1/maintenance", "Bearer ", `{"on":true}`},
	}
	for _, r := range refused {
		if status, body := call(r.method, r.path, r.auth, r.body); status != http.StatusUnauthorized {
			t.Errorf("%s %s with Authorization %q: %d, want 401; body %s", r.method, r.path, r.auth, status, body)
		}
	}
	status, body := call("GET", "/v1/status", "Bearer "+token, "")
	if status != http.StatusOK || strings.Contains(body, token) {
		t.Errorf("GET /v1/status with the token: %d, want 200 without the token in the body:\n%s", status, body)
	}
	if r := runCLI(t, nil, "switch", "B", "--control", base); r.code != 2 {
		t.Errorf("switch without TURNOUT_TOKEN: want exit 2\n%s", r)
	}
	if st := fetchStatus(t, d.Control); st.Active != "A" {
		t.Fatalf("active %s after refused switches, want A", st.Active)
	}
	if r := runCLI(t, []string{"TURNOUT_TOKEN=" + token}, "switch", "B", "--control", base, "--reason", "tcp"); r.code != 0 {
		t.Fatalf("switch with TURNOUT_TOKEN: want exit 0\n%s", r)
	}
	recs := historyJSON(t, "--control", d.Control)
	if len(recs) != 1 || recs[0].Actor != "deploy" || recs[0].To != "B" || recs[0].Result != "switched" {
		t.Errorf("want one switched record to B by actor deploy, got %+v", recs)
	}
	if err := d.stop(t, syscall.SIGTERM, 30*time.Second); err != nil {
		t.Errorf("turnout did not exit cleanly: %v", err)
	}
	if strings.Contains(d.output.String(), token) {
		t.Errorf("the token appears in turnout's log:\n%s", d.output)
	}
}

// requireAllFromA fails unless the load lost nothing, every response came
// from A, and every status poll during the switch saw A active.
func requireAllFromA(t *testing.T, res *loadResult, seen map[string]int) {
	t.Helper()
	requireNoFailure(t, res)
	if len(res.Backends) != 1 || res.Backends["A"] == 0 {
		t.Errorf("want every response from A, got %v", res.Backends)
	}
	if len(seen) != 1 || seen["A"] == 0 {
		t.Errorf("want A active at every status poll during the switch, saw %v", seen)
	}
}
