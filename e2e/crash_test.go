package e2e

import (
	"fmt"
	mathrand "math/rand/v2"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/turnout/turnout/state"
)

// newestSwitch is the pool the newest switched (or forced) record of recs
// names, or initial when there is none.
func newestSwitch(recs []state.Record, initial string) string {
	for _, r := range recs { // newest first
		if r.Result == "switched" || r.Result == "forced" {
			return r.To
		}
	}
	return initial
}

// TestKillDuringSwitches is the crash promise: turnout killed with
// SIGKILL at random points of 20 switches (accepted with --no-wait, or
// while a waiting switch runs) comes back on the pool the history's newest
// switch names, serves it with the first request, and never finds its
// state file corrupt.
func TestKillDuringSwitches(t *testing.T) {
	a, b := newBackend(t, "A", "tcp"), newBackend(t, "B", "tcp")
	c := newCfgSpec(t, []string{a.Spec()}, []string{b.Spec()})
	path := writeCfg(t, c)
	seed := uint64(time.Now().UnixNano())
	t.Logf("random seed %d", seed)
	rng := mathrand.New(mathrand.NewPCG(seed, 0))

	active := "A"
	d := serveDaemon(t, path, c)
	outcomes := map[string]int{}
	for i := range 20 {
		to := map[string]string{"A": "B", "B": "A"}[active]
		args := []string{"switch", to, "--control", c.Control, "--reason", fmt.Sprintf("crash %d", i)}
		noWait := rng.IntN(2) == 0
		if noWait {
			args = append(args, "--no-wait")
		}
		delay := time.Duration(rng.IntN(300)) * time.Millisecond
		_, cliDone := goCLI(t, nil, args...)
		<-time.After(delay) // the crash comes at a random point: a pause of the scenario
		d.kill9(t)
		if out := d.output.String(); strings.Contains(out, "DATA RACE") {
			t.Fatalf("round %d: data race in turnout:\n%s", i, out)
		}

		want := newestSwitch(historyJSON(t, "--state", c.State), "A")
		if want != active && want != to {
			t.Fatalf("round %d: history names %s, want %s or %s", i, want, active, to)
		}
		kind := map[bool]string{true: "no-wait", false: "waiting"}[noWait]
		outcomes[fmt.Sprintf("%s kill, came back on the %s pool", kind, map[bool]string{true: "new", false: "old"}[want == to])]++

		// The restart comes while a waiting CLI reconnects: its verdict
		// must be what the state file says.
		d = serveDaemon(t, path, c)
		cli := <-cliDone
		if !noWait && (cli.code == 0) != (want == to) {
			t.Errorf("round %d: the CLI exited %d for the switch to %s, but the state file names %s\n%s", i, cli.code, to, want, cli)
		}
		status, backend, body, err := proxyGet(d.URL + "/")
		if err != nil || status != http.StatusOK || backend != want {
			t.Errorf("round %d (%s kill after %s): first request after the restart: %d from %q (%v), want 200 from %s; body %.200q",
				i, kind, delay, status, backend, err, want, body)
		}
		if st := fetchStatus(t, d.Control); st.Active != want {
			t.Errorf("round %d: restarted on %s, want %s", i, st.Active, want)
		}
		if m, _ := filepath.Glob(c.State + ".damaged-*"); len(m) > 0 {
			t.Fatalf("round %d: the state file was found damaged after a kill: %v\n%s", i, m, d.output)
		}
		active = want
	}
	t.Logf("outcomes: %v", outcomes)
}

// TestStateFileLocked: a second `turnout serve` on the same state file
// exits 2 with a message naming the file, and the first keeps serving.
func TestStateFileLocked(t *testing.T) {
	a := newBackend(t, "A", "tcp")
	c := newCfgSpec(t, []string{a.Spec()}, []string{freeTCPAddr(t)})
	path := writeCfg(t, c)
	d := serveDaemon(t, path, c)

	r := runCLI(t, nil, "serve", "--config", path)
	if r.code != 2 || !strings.Contains(r.stderr, c.State) {
		t.Errorf("second serve on %s: want exit 2 naming the state file\n%s", c.State, r)
	}
	if status, backend, _, err := proxyGet(d.URL + "/"); err != nil || status != http.StatusOK || backend != "A" {
		t.Errorf("the first turnout after the second one's attempt: %d from %q (%v), want 200 from A", status, backend, err)
	}
}
