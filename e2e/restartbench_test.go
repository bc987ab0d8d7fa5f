package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/turnout/turnout/internal/testlog"
)

// benchRestartEnv turns TestRestartRecoveryBench on; scripts/bench-restart
// sets it to the number of rounds.
const benchRestartEnv = "TURNOUT_BENCH_RESTART"

// TestRestartRecoveryBench is the restart recovery bench, not a test: for
// each of appServerRestarts it runs the same restart under the same load
// once behind turnout (on its defaults) and once behind nginx (Debian's
// defaults, proxy_pass to the same kind of socket), each time with a fresh
// app server, and prints requests, failed, longest wait and p99 per target
// and scenario. It never fails on the figures. scripts/bench-restart runs it.
func TestRestartRecoveryBench(t *testing.T) {
	rounds, err := strconv.Atoi(os.Getenv(benchRestartEnv))
	if err != nil || rounds < 1 {
		t.Skipf("a bench, not a test: scripts/bench-restart runs it (%s=ROUNDS)", benchRestartEnv)
	}
	if _, err := exec.LookPath("nginx"); err != nil {
		t.Fatalf("nginx is needed: apt-get install nginx-light (%v)", err)
	}
	type row struct {
		scenario, target string
		r                restartRun
	}
	var rows []row
	for round := 1; round <= rounds; round++ {
		for _, sc := range appServerRestarts {
			for _, target := range []string{"turnout", "nginx"} {
				t.Run(fmt.Sprintf("%d/%s/%s", round, sc.name, target), func(t *testing.T) {
					a := newAppServer(t, sc.server)
					var url string
					if target == "turnout" {
						url, _ = startTurnoutOnDefaults(t, "unix:"+a.Sock)
					} else {
						url = startNginx(t, a.Sock)
					}
					r := restartUnderLoad(t, url+"/work", a, sc.restart)
					t.Logf("%s behind %s: %s", sc.name, target, r)
					rows = append(rows, row{sc.name, target, r})
				})
			}
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n| app restart | behind | requests | failed | longest wait | back after | p99 | slowest direct | POSTs lost / applied twice |\n")
	fmt.Fprintf(&b, "|---|---|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, w := range rows {
		fmt.Fprintf(&b, "| %s | %s | %d | %d | %s | %s | %s | %s | %d / %d |\n", w.scenario, w.target, w.r.Requests, w.r.Failed,
			benchSeconds(w.r.Longest), benchSeconds(w.r.Back), benchSeconds(w.r.P99), benchSeconds(w.r.Direct),
			len(w.r.POSTs.Lost), len(w.r.POSTs.Twice))
	}
	fmt.Print(b.String())
}

// benchSeconds formats d for the table: "0.004 s", "1.40 s", "11.0 s".
func benchSeconds(d time.Duration) string {
	switch s := d.Seconds(); {
	case s < 1:
		return fmt.Sprintf("%.3f s", s)
	case s < 10:
		return fmt.Sprintf("%.2f s", s)
	default:
		return fmt.Sprintf("%.1f s", s)
	}
}

// startNginx runs nginx with Debian's default settings that matter here
// (worker_processes auto, 768 worker_connections, the proxy module's
// defaults) in front of the app on the unix socket sock; it returns the
// proxy's URL once nginx accepts connections, and stops nginx at the end of
// the test.
func startNginx(t *testing.T, sock string) string {
	t.Helper()
	dir := t.TempDir()
	listen := freeTCPAddr(t)
	user := ""
	if os.Getuid() == 0 {
		user = "user root;"
	}
	conf := fmt.Sprintf(`daemon off;
%s
worker_processes auto;
pid %[2]s/nginx.pid;
error_log %[2]s/error.log warn;
events { worker_connections 768; }
http {
	access_log off;
	client_body_temp_path %[2]s/body;
	proxy_temp_path %[2]s/proxy;
	fastcgi_temp_path %[2]s/fastcgi;
	uwsgi_temp_path %[2]s/uwsgi;
	scgi_temp_path %[2]s/scgi;
	server {
		listen %[3]s;
		location / {
			proxy_pass http://unix:%[4]s;
		}
	}
}
`, user, dir, listen, sock)
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("nginx", "-p", dir, "-c", path, "-e", filepath.Join(dir, "error.log"))
	out := &testlog.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start nginx: %v", err)
	}
	exited := make(chan struct{})
	var waitErr error // set before exited is closed
	go func() {
		waitErr = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(eventTimeout):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	})
	deadline := time.Now().Add(eventTimeout)
	for {
		conn, err := net.Dial("tcp", listen)
		if err == nil {
			conn.Close()
			return "http://" + listen
		}
		select {
		case <-exited:
			t.Fatalf("nginx exited (%v):\n%s", waitErr, out)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx does not accept on %s within %s:\n%s", listen, eventTimeout, out)
		}
	}
}
