package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"text/template"
	"time"

	"github.com/turnout/turnout/api"
	"github.com/turnout/turnout/control"
	"github.com/turnout/turnout/internal/testlog"
	"github.com/turnout/turnout/state"
)

// This file holds the harness pieces the switch, crash, config and deploy
// tests need beyond harness_test.go: a config they write whole (so they can
// set `active`, control_listen, pool health, drain_timeout), a daemon they
// can kill and restart on the same state file, the CLI as a process, and
// the control API read through control.Client for polling.

// cfgSpec is a whole turnout config as these tests write it.
type cfgSpec struct {
	Listen, Control, State string
	// Top is extra top-level lines; `initial = "A"` when empty.
	Top string
	// Drain is proxy.drain_timeout; "2s" when empty.
	Drain string
	// Proxy is extra lines for the [proxy] table; a hold_timeout there
	// replaces the default "10s".
	Proxy string
	// A and B are the pools' servers as the config writes them.
	A, B []string
	// PoolA and PoolB are extra lines after each pool's servers, such as
	// a [pools.B.health] table.
	PoolA, PoolB string
}

// newCfgSpec returns a spec with fresh addresses: a free loopback port, a
// control socket in a short directory and a state file in t.TempDir().
func newCfgSpec(t *testing.T, a, b []string) cfgSpec {
	t.Helper()
	return cfgSpec{
		Listen:  freeTCPAddr(t),
		Control: filepath.Join(shortDir(t), "c.sock"),
		State:   filepath.Join(t.TempDir(), "state.db"),
		A:       a,
		B:       b,
	}
}

var cfgSpecTemplate = template.Must(template.New("cfg").Parse(`listen  = ["{{.Listen}}"]
control = "{{.Control}}"
state   = "{{.State}}"
{{.Top}}
log_level = "debug"

[proxy]
{{.Proxy}}
drain_timeout = "{{.Drain}}"

[switch]
warm_interval = "50ms"

[health]
interval         = "100ms"
standby_interval = "100ms"
timeout          = "500ms"
rise = 2
fall = 1

[pools.A]
servers = [{{range $i, $s := .A}}{{if $i}}, {{end}}"{{$s}}"{{end}}]
{{.PoolA}}
[pools.B]
servers = [{{range $i, $s := .B}}{{if $i}}, {{end}}"{{$s}}"{{end}}]
{{.PoolB}}
`))

// render returns the config file's text.
func (c cfgSpec) render(t *testing.T) string {
	t.Helper()
	if c.Top == "" {
		c.Top = `initial = "A"`
	}
	if c.Drain == "" {
		c.Drain = "2s"
	}
	if !strings.Contains(c.Proxy, "hold_timeout") {
		c.Proxy = "hold_timeout  = \"10s\"\n" + c.Proxy
	}
	c.Proxy = strings.TrimSuffix(c.Proxy, "\n")
	var buf bytes.Buffer
	if err := cfgSpecTemplate.Execute(&buf, c); err != nil {
		t.Fatal(err)
	}
	return withEngine(buf.String())
}

// writeCfg writes c to a turnout.toml in a new temporary directory and
// returns its path.
func writeCfg(t *testing.T, c cfgSpec) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "turnout.toml")
	if err := os.WriteFile(path, []byte(c.render(t)), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// daemon is a `turnout serve` these tests start, stop or kill themselves.
type daemon struct {
	*process
	Config, Control, State string
	// URL is the proxy's base URL.
	URL string
}

// serveDaemon runs `turnout serve --config path` (c is the config written
// there) with the extra environment env, until it logs that it listens. At
// the end of the test a daemon still running is stopped with SIGTERM and
// must exit 0; any daemon's log must be free of data races.
func serveDaemon(t *testing.T, path string, c cfgSpec, env ...string) *daemon {
	t.Helper()
	cmd := exec.Command(turnoutBin, "serve", "--config", path)
	cmd.Env = append(os.Environ(), raceExitEnv())
	cmd.Env = append(cmd.Env, env...)
	p := start(t, cmd, true, listeningRE)
	if engine != "" && !strings.Contains(p.output.String(), "engine="+engine) {
		p.stop(t, syscall.SIGKILL, eventTimeout)
		t.Fatalf("%s=%s, but the daemon does not run that engine (a config written without withEngine?):\n%s", engineEnv, engine, p.output)
	}
	d := &daemon{process: p, Config: path, Control: c.Control, State: c.State, URL: "http://" + c.Listen}
	t.Cleanup(func() {
		var err error
		if p.running() {
			err = p.stop(t, syscall.SIGTERM, 30*time.Second)
		}
		out := p.output.String()
		switch {
		case err != nil || strings.Contains(out, "DATA RACE"):
			t.Errorf("turnout did not exit cleanly after SIGTERM (%v):\n%s", err, out)
		case t.Failed():
			t.Logf("turnout's log:\n%s", out)
		}
	})
	return d
}

// kill9 kills the daemon with SIGKILL, as a crash would, and waits for it.
func (d *daemon) kill9(t *testing.T) {
	t.Helper()
	d.stop(t, syscall.SIGKILL, eventTimeout)
}

// cliRun is a finished turnout command.
type cliRun struct {
	args           []string
	code           int
	stdout, stderr string
	done           time.Time
}

func (r cliRun) String() string {
	return fmt.Sprintf("turnout %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(r.args, " "), r.code, r.stdout, r.stderr)
}

// cliCmd prepares `turnout args...` with the extra environment env.
func cliCmd(env []string, args ...string) (*exec.Cmd, *testlog.Buffer, *testlog.Buffer) {
	cmd := exec.Command(turnoutBin, args...)
	cmd.Env = append(os.Environ(), raceExitEnv())
	cmd.Env = append(cmd.Env, env...)
	var stdout, stderr testlog.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	return cmd, &stdout, &stderr
}

// raceExitEnv keeps a -race build of the CLI from sleeping the race
// runtime's default 1 s at exit (GORACE atexit_sleep_ms), which would make
// every command take a second.
func raceExitEnv() string {
	return "GORACE=" + strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0")
}

// goCLI starts `turnout args...`; the channel hears its result. It is
// killed if it runs for more than 60 s.
func goCLI(t *testing.T, env []string, args ...string) (*exec.Cmd, <-chan cliRun) {
	t.Helper()
	cmd, stdout, stderr := cliCmd(env, args...)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start turnout %v: %v", args, err)
	}
	done := make(chan cliRun, 1)
	go func() {
		timer := time.AfterFunc(60*time.Second, func() { cmd.Process.Kill() })
		err := cmd.Wait()
		timer.Stop()
		r := cliRun{args: args, stdout: stdout.String(), stderr: stderr.String(), done: time.Now()}
		var ee *exec.ExitError
		switch {
		case err == nil:
		case errors.As(err, &ee):
			r.code = ee.ExitCode()
		default:
			r.code = -1
			r.stderr += "\n(wait: " + err.Error() + ")"
		}
		done <- r
	}()
	return cmd, done
}

// runCLI runs `turnout args...` to its end.
func runCLI(t *testing.T, env []string, args ...string) cliRun {
	t.Helper()
	_, done := goCLI(t, env, args...)
	return <-done
}

// apiStatus is GET /v1/status, with its pools by name.
type apiStatus struct{ api.Status }

// pool returns the servers of the pool named name.
func (s apiStatus) pool(name string) []api.ServerStatus {
	for _, p := range s.Pools {
		if p.Name == name {
			return p.Servers
		}
	}
	return nil
}

// fetchStatus reads GET /v1/status from the daemon's control socket sock.
func fetchStatus(t *testing.T, sock string) apiStatus {
	t.Helper()
	c, err := control.NewClient(sock, "")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), eventTimeout)
	defer cancel()
	st, err := c.Status(ctx)
	if err != nil {
		t.Fatalf("status from %s: %v", sock, err)
	}
	return apiStatus{st}
}

// historyJSON runs `turnout history --json --limit 0` with args (a
// --control or --state) and decodes it, newest first.
func historyJSON(t *testing.T, args ...string) []state.Record {
	t.Helper()
	r := runCLI(t, nil, append([]string{"history", "--json", "--limit", "0"}, args...)...)
	if r.code != 0 {
		t.Fatalf("history: %s", r)
	}
	var recs []state.Record
	if err := json.Unmarshal([]byte(r.stdout), &recs); err != nil {
		t.Fatalf("history --json is not a JSON list (%v):\n%s", err, r.stdout)
	}
	return recs
}

// pollUntil calls cond every 20 ms until it returns true, for at most
// eventTimeout; then the test fails with cond's last description.
func pollUntil(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(eventTimeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, last := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s; last seen: %s", what, eventTimeout, last)
		}
		<-tick.C
	}
}

// waitActive waits until the daemon's active pool is want.
func waitActive(t *testing.T, control, want string) {
	t.Helper()
	pollUntil(t, "active pool "+want, func() (bool, string) {
		st := fetchStatus(t, control)
		return st.Active == want && st.Switching == nil, fmt.Sprintf("active %s, switching %v", st.Active, st.Switching != nil)
	})
}

// waitPoolUp waits until every server of pool is up.
func waitPoolUp(t *testing.T, control, pool string) {
	t.Helper()
	pollUntil(t, "every server of "+pool+" up", func() (bool, string) {
		servers := fetchStatus(t, control).pool(pool)
		for _, s := range servers {
			if s.State != "up" {
				return false, fmt.Sprintf("%+v", servers)
			}
		}
		return len(servers) > 0, fmt.Sprintf("%+v", servers)
	})
}

// activeWatch polls the daemon's active pool every 20 ms in the background;
// stop returns every value seen.
func activeWatch(t *testing.T, sock string) (stop func() map[string]int) {
	t.Helper()
	c, err := control.NewClient(sock, "")
	if err != nil {
		t.Fatal(err)
	}
	ctx, quit := context.WithCancel(context.Background())
	seen := map[string]int{}
	var done sync.WaitGroup
	done.Add(1)
	go func() {
		defer done.Done()
		defer c.Close()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			if st, err := c.Status(ctx); err == nil {
				seen[st.Active]++
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return func() map[string]int {
		quit()
		done.Wait()
		return seen
	}
}

// proxyGet sends one GET through the proxy and returns its status, the
// backend that answered (from the echo body) and the body.
func proxyGet(url string) (int, string, string, error) {
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return 0, "", "", err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, "", "", err
	}
	var e echo
	json.Unmarshal(data, &e)
	return resp.StatusCode, e.Backend, string(data), nil
}

// countLines counts the lines of s that match re.
func countLines(s string, re *regexp.Regexp) int {
	return len(re.FindAllStringIndex(s, -1))
}
