package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// freePort is the port of freeTCPAddr.
func freePort(t *testing.T) string {
	t.Helper()
	_, port, err := net.SplitHostPort(freeTCPAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// deployRun is a finished run of scripts/deploy-example.sh.
type deployRun struct {
	code   int
	output string
}

// TestDeployExample runs scripts/deploy-example.sh end to end against real
// app servers (the e2e backend, started by the script through APP_CMD)
// under 200 req/s, pool A on TCP ports and pool B on unix sockets: a good
// deploy switches to the new version and stops the old one; a version that
// never gets healthy is rolled back with exit 1 and the running version
// keeps serving. No request fails in either case.
func TestDeployExample(t *testing.T) {
	portsA := []string{freePort(t), freePort(t)}
	serversA := []string{"127.0.0.1:" + portsA[0], "127.0.0.1:" + portsA[1]}
	sockDir := t.TempDir()
	serversB := []string{"unix:" + filepath.Join(sockDir, "b1.sock"), "unix:" + filepath.Join(sockDir, "b2.sock")}
	c := newCfgSpec(t, serversA, serversB)
	d := serveDaemon(t, writeCfg(t, c), c)
	runDir := t.TempDir()
	t.Cleanup(func() {
		// The script leaves the deployed version running, as it should.
		pids, _ := filepath.Glob(filepath.Join(runDir, "*.pid"))
		for _, f := range pids {
			data, _ := os.ReadFile(f)
			if pid, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil && pid > 0 {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})

	// The app server: the e2e backend named after $VERSION, on $ADDRESS.
	appCmd := fmt.Sprintf("env %s=$VERSION %s=$NETWORK %s=$ADDRESS '%s' '-test.run=^$'",
		backendEnv, backendNetworkEnv, backendAddrEnv, os.Args[0])

	// Version v1 runs on pool A, started as the script starts servers, with
	// its pid files where the script looks for them.
	var v1 []*process
	for _, server := range serversA {
		cmd := exec.Command("bash", "-c", "exec "+appCmd)
		cmd.Env = append(os.Environ(), raceExitEnv(), "ADDRESS="+server, "NETWORK=tcp", "VERSION=v1")
		p := start(t, cmd, false, regexp.MustCompile(`^ready$`))
		t.Cleanup(func() {
			if p.running() {
				p.stop(t, syscall.SIGKILL, eventTimeout)
			}
		})
		pidFile := "A-" + strings.ReplaceAll(server, ":", "_") + ".pid" // as the script names it
		if err := os.WriteFile(filepath.Join(runDir, pidFile), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644); err != nil {
			t.Fatal(err)
		}
		v1 = append(v1, p)
	}
	waitPoolUp(t, d.Control, "A")

	deployWith := func(turnoutCmd, version, app, timeout string) deployRun {
		t.Helper()
		cmd := exec.Command("bash", filepath.Join("..", "scripts", "deploy-example.sh"))
		cmd.Env = append(os.Environ(), raceExitEnv(),
			"APP_CMD="+app, "VERSION="+version,
			"SERVERS_A="+strings.Join(serversA, " "), "SERVERS_B="+strings.Join(serversB, " "),
			"RUN_DIR="+runDir, "TURNOUT="+turnoutCmd, "TIMEOUT="+timeout)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		timer := time.AfterFunc(60*time.Second, func() { cmd.Process.Kill() })
		defer timer.Stop()
		err := cmd.Run()
		r := deployRun{output: out.String()}
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			r.code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("run the deploy script: %v\n%s", err, r.output)
		}
		t.Logf("deploy %s: exit %d\n%s", version, r.code, r.output)
		return r
	}
	deploy := func(version, app, timeout string) deployRun {
		t.Helper()
		return deployWith(turnoutBin+" --control "+c.Control, version, app, timeout)
	}

	// A good deploy: v2 on B, traffic moves, v1 is stopped.
	stop := startLoadUntil(t, loadSpec{URL: d.URL + "/", Workers: 100, Rate: 200, PostBody: "deploy load"})
	r := deploy("v2", appCmd, "20s")
	res := stop()
	if r.code != 0 {
		t.Errorf("good deploy: exit %d, want 0", r.code)
	}
	requireNoFailure(t, res)
	if res.Backends["v2"] == 0 {
		t.Errorf("the good deploy: v2 got no traffic: %v", res.Backends)
	}
	if st := fetchStatus(t, d.Control); st.Active != "B" {
		t.Errorf("after the good deploy %s is active, want B", st.Active)
	}
	for i, p := range v1 {
		select {
		case <-p.exited:
		case <-time.After(eventTimeout):
			t.Errorf("v1 server on %s still runs after the deploy", serversA[i])
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	// A version that never serves /healthz: rolled back, v2 keeps serving.
	stop = startLoadUntil(t, loadSpec{URL: d.URL + "/", Workers: 100, Rate: 200, PostBody: "deploy load"})
	r = deploy("v3", "sleep 30", "2s")
	res = stop()
	if r.code != 1 || !strings.Contains(r.output, "rolling back") {
		t.Errorf("bad deploy: exit %d, want 1 with a rollback", r.code)
	}
	requireNoFailure(t, res)
	if len(res.Backends) != 1 || res.Backends["v2"] == 0 {
		t.Errorf("the bad deploy: want every response from v2, got %v", res.Backends)
	}
	if st := fetchStatus(t, d.Control); st.Active != "B" {
		t.Errorf("after the rollback %s is active, want B", st.Active)
	}
	if left, _ := filepath.Glob(filepath.Join(runDir, "A-*.pid")); len(left) > 0 {
		t.Errorf("the rollback left pool A's pid files: %v", left)
	}
	recs := historyJSON(t, "--control", d.Control)
	if len(recs) != 2 || recs[0].Result != "aborted" || recs[0].To != "A" || recs[0].Reason != "deploy v3" ||
		recs[1].Result != "switched" || recs[1].To != "B" || recs[1].Reason != "deploy v2" {
		t.Errorf("history: want the aborted v3 deploy then the switched v2 deploy, got %+v", recs)
	}
	if t.Failed() {
		t.FailNow()
	}

	// A switch that took traffic but exits 1 (a turnout wrapper that lies):
	// the script rolls back, yet never stops the pool that serves.
	liar := filepath.Join(t.TempDir(), "turnout-liar")
	script := fmt.Sprintf("#!/bin/bash\n'%s' --control '%s' \"$@\"; rc=$?\n[ \"$1\" = switch ] && exit 1\nexit $rc\n", turnoutBin, c.Control)
	if err := os.WriteFile(liar, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	r = deployWith(liar, "v4", appCmd, "20s")
	if r.code != 5 || !strings.Contains(r.output, "pool A serves traffic") {
		t.Errorf("deploy whose switch exit code lies: exit %d, want 5 with pool A left running", r.code)
	}
	if st := fetchStatus(t, d.Control); st.Active != "A" {
		t.Errorf("after the v4 deploy %s is active, want A", st.Active)
	}
	if status, backend, _, err := proxyGet(d.URL + "/"); err != nil || status != http.StatusOK || backend != "v4" {
		t.Errorf("after the v4 deploy: %d from %q (%v), want 200 from v4 (pool A still running)", status, backend, err)
	}
}
