package e2e

import (
	"crypto/rand"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestKillMidDrainCLIReadsOutcome is the switch verdict after a crash: the daemon killed
// with SIGKILL after it persisted a switch, while a slow request keeps the
// drain going, and started again: `turnout switch` reconnects, reads the
// switch's record from the history and exits 0, and the daemon serves B.
func TestKillMidDrainCLIReadsOutcome(t *testing.T) {
	a, b := newBackend(t, "A", "tcp"), newBackend(t, "B", "tcp")
	c := newCfgSpec(t, []string{a.Spec()}, []string{b.Spec()})
	c.Drain = "60s"
	path := writeCfg(t, c)
	d := serveDaemon(t, path, c)
	waitPoolUp(t, d.Control, "B")

	// A slow request on A keeps the drain going; it dies with the daemon.
	go func() {
		client := &http.Client{Timeout: 60 * time.Second}
		if resp, err := client.Get(d.URL + "/slow?ms=50000"); err == nil {
			resp.Body.Close()
		}
	}()
	pollUntil(t, "the slow request in flight on A", func() (bool, string) {
		servers := fetchStatus(t, d.Control).pool("A")
		return len(servers) == 1 && servers[0].InFlight == 1, fmt.Sprintf("%+v", servers)
	})

	_, cliDone := goCLI(t, nil, "switch", "B", "--control", c.Control, "--timeout", "30s", "--reason", "kill mid-drain")
	waitActive := func() (bool, string) {
		st := fetchStatus(t, d.Control)
		return st.Active == "B" && st.Switching != nil, fmt.Sprintf("active %s, switching %v", st.Active, st.Switching != nil)
	}
	pollUntil(t, "B active while A drains", waitActive)
	d.kill9(t)
	select {
	case r := <-cliDone:
		t.Fatalf("the CLI gave up when the daemon died instead of reconnecting:\n%s", r)
	default:
	}

	d = serveDaemon(t, path, c)
	r := awaitCLI(t, cliDone)
	if r.code != 0 || !strings.Contains(r.stdout, "switched to B") || !strings.Contains(r.stderr, "reconnecting") {
		t.Errorf("want exit 0, \"switched to B\" after reconnecting:\n%s", r)
	}
	if status, backend, _, err := proxyGet(d.URL + "/"); err != nil || status != http.StatusOK || backend != "B" {
		t.Errorf("after the restart: %d from %q (%v), want 200 from B", status, backend, err)
	}
}

// TestKillWhileWarmingCLISaysOldPool: the daemon killed while B warms (B
// never gets ready) and started again: the switch was never persisted, so
// the CLI exits 1 saying the old pool keeps traffic, and A serves.
func TestKillWhileWarmingCLISaysOldPool(t *testing.T) {
	a := newBackend(t, "A", "tcp")
	c := newCfgSpec(t, []string{a.Spec()}, []string{freeTCPAddr(t)})
	path := writeCfg(t, c)
	d := serveDaemon(t, path, c)

	_, cliDone := goCLI(t, nil, "switch", "B", "--control", c.Control, "--timeout", "30s")
	pollUntil(t, "the switch to B warming", func() (bool, string) {
		st := fetchStatus(t, d.Control)
		return st.Switching != nil, fmt.Sprintf("switching %v", st.Switching != nil)
	})
	d.kill9(t)
	d = serveDaemon(t, path, c)
	r := awaitCLI(t, cliDone)
	if r.code != 1 || !strings.Contains(r.stderr, "never persisted") || !strings.Contains(r.stderr, "A is active") {
		t.Errorf("want exit 1 saying the switch was never persisted and A is active:\n%s", r)
	}
	if st := fetchStatus(t, d.Control); st.Active != "A" {
		t.Errorf("restarted on %s, want A", st.Active)
	}
}

// stateDamages are the ways a state file is found damaged at rest.
var stateDamages = []struct {
	name   string
	damage func(t *testing.T, path string)
}{
	{"empty", func(t *testing.T, path string) { writeBytes(t, path, nil) }},
	{"4096 zero bytes", func(t *testing.T, path string) { writeBytes(t, path, make([]byte, 4096)) }},
	{"4096 random bytes", func(t *testing.T, path string) { writeBytes(t, path, randomData(t, 4096)) }},
	{"random bytes", func(t *testing.T, path string) { writeBytes(t, path, randomData(t, 64<<10)) }},
	{"truncated", func(t *testing.T, path string) {
		if err := os.Truncate(path, 5000); err != nil {
			t.Fatal(err)
		}
	}},
}

func writeBytes(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func randomData(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// TestDamagedStateFileKeepsActivePool is point 10: after a switch to B, a
// state file damaged at rest is moved aside, logged at ERROR, and turnout
// starts on B (from state.db.active), not on `initial`; with that record
// gone too, it refuses to start and says what to write where.
func TestDamagedStateFileKeepsActivePool(t *testing.T) {
	for _, tt := range stateDamages {
		t.Run(tt.name, func(t *testing.T) {
			a, b := newBackend(t, "A", "tcp"), newBackend(t, "B", "tcp")
			c := newCfgSpec(t, []string{a.Spec()}, []string{b.Spec()})
			path := writeCfg(t, c)
			d := serveDaemon(t, path, c)
			if r := runCLI(t, nil, "switch", "B", "--control", c.Control); r.code != 0 {
				t.Fatalf("switch to B: %s", r)
			}
			if err := d.stop(t, syscall.SIGTERM, eventTimeout); err != nil {
				t.Fatalf("SIGTERM: %v\n%s", err, d.output)
			}
			tt.damage(t, c.State)

			d = serveDaemon(t, path, c)
			if m, _ := filepath.Glob(c.State + ".damaged-*"); len(m) != 1 {
				t.Errorf("want the damaged file moved aside as %s.damaged-*, found %v", c.State, m)
			}
			if status, backend, body, err := proxyGet(d.URL + "/"); err != nil || status != http.StatusOK || backend != "B" {
				t.Errorf("first request: %d from %q (%v), want 200 from B (the last active pool); body %.200q", status, backend, err, body)
			}
			if out := d.output.String(); !regexp.MustCompile(`\[ERROR\] turnout.state: state file is damaged`).MatchString(out) {
				t.Errorf("no ERROR line about the damaged file:\n%s", out)
			}
			if err := d.stop(t, syscall.SIGTERM, eventTimeout); err != nil {
				t.Fatalf("SIGTERM: %v\n%s", err, d.output)
			}

			// Damaged again, and the second record gone: refuse, move nothing.
			tt.damage(t, c.State)
			os.Remove(c.State + ".active")
			r := runCLI(t, nil, "serve", "--config", path)
			if r.code != 2 || !strings.Contains(r.stderr, "echo B > "+c.State+".active") {
				t.Errorf("serve with a damaged file and no record of the active pool: want exit 2 saying what to write\n%s", r)
			}
			if m, _ := filepath.Glob(c.State + ".damaged-*"); len(m) != 1 {
				t.Errorf("the refused start moved files: %v", m)
			}
		})
	}
}

// TestStateDamagedWhileRunning is point 11: the state file truncated or
// overwritten under a running daemon: no crash, no hang. history, switch
// and maintenance answer with an error naming the damage, the damage is
// logged at ERROR, traffic keeps flowing to B, and SIGTERM exits 0.
func TestStateDamagedWhileRunning(t *testing.T) {
	for _, tt := range []struct {
		name   string
		damage func(t *testing.T, path string)
	}{
		{"truncated to 0", func(t *testing.T, path string) { os.Truncate(path, 0) }},
		{"truncated to 5000 bytes", func(t *testing.T, path string) { os.Truncate(path, 5000) }},
		{"overwritten with garbage", func(t *testing.T, path string) {
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			writeBytes(t, path, randomData(t, int(fi.Size())))
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a, b := newBackend(t, "A", "tcp"), newBackend(t, "B", "tcp")
			c := newCfgSpec(t, []string{a.Spec()}, []string{b.Spec()})
			path := writeCfg(t, c)
			d := serveDaemon(t, path, c)
			for i := range 3 { // some history, so the file spans pages
				to := []string{"B", "A", "B"}[i]
				if r := runCLI(t, nil, "switch", to, "--control", c.Control, "--reason", strings.Repeat("x", 300)); r.code != 0 {
					t.Fatalf("switch to %s: %s", to, r)
				}
			}
			tt.damage(t, c.State)

			for _, args := range [][]string{
				{"history"},
				{"switch", "A"},
				{"maintenance", "on"},
				{"history"},
			} {
				r := runCLI(t, nil, append(args, "--control", c.Control)...)
				out := r.stdout + r.stderr
				if r.code == 0 || !strings.Contains(out, "damaged") || !strings.Contains(out, c.State+".active") {
					t.Errorf("turnout %s after the damage: want a failure naming the damage and %s.active\n%s", args[0], c.State, r)
				}
			}
			if status, backend, _, err := proxyGet(d.URL + "/"); err != nil || status != http.StatusOK || backend != "B" {
				t.Errorf("traffic after the damage: %d from %q (%v), want 200 from B", status, backend, err)
			}
			if out := d.output.String(); strings.Count(out, "[ERROR] turnout.state: state file damaged while running") != 1 {
				t.Errorf("want one ERROR line about the damage:\n%s", out)
			}
			if err := d.stop(t, syscall.SIGTERM, eventTimeout); err != nil {
				t.Errorf("SIGTERM after the damage: %v\n%s", err, d.output)
			}

			// The restart moves the file aside and comes back on B.
			d = serveDaemon(t, path, c)
			if status, backend, _, err := proxyGet(d.URL + "/"); err != nil || status != http.StatusOK || backend != "B" {
				t.Errorf("after the restart: %d from %q (%v), want 200 from B", status, backend, err)
			}
		})
	}
}

// awaitCLI waits for the CLI run that reconnects to a daemon that came back.
func awaitCLI(t *testing.T, done <-chan cliRun) cliRun {
	t.Helper()
	select {
	case r := <-done:
		return r
	case <-time.After(eventTimeout):
		t.Fatal("the CLI did not finish after the daemon came back")
		return cliRun{}
	}
}
