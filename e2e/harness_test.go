package e2e

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/turnout/turnout/internal/testlog"
)

// eventTimeout bounds waits for events that normally take milliseconds; it
// is generous so that a slow machine does not fail a test.
const eventTimeout = 10 * time.Second

// turnoutBin is the binary built once by TestMain.
var turnoutBin string

// engineEnv names the [proxy] engine every config of the suite sets
// (scripts/test runs the suite once more with "stdlib"); unset, the
// configs leave it to the default.
const engineEnv = "TURNOUT_E2E_ENGINE"

// engine is engineEnv's value.
var engine = os.Getenv(engineEnv)

// withEngine returns the config text with engine set in its [proxy]
// table, when the suite runs with one.
func withEngine(text string) string {
	if engine == "" {
		return text
	}
	line := fmt.Sprintf("engine = %q\n", engine)
	if before, after, ok := strings.Cut(text, "\n[proxy]\n"); ok {
		return before + "\n[proxy]\n" + line + after
	}
	return text + "\n[proxy]\n" + line
}

// skipUnderStdlib skips a test that the engine setting cannot reach (or
// that is about the lean front itself) when the suite runs with engine =
// "stdlib".
func skipUnderStdlib(t *testing.T, why string) {
	t.Helper()
	if engine == "stdlib" {
		t.Skip("engine = \"stdlib\": " + why)
	}
}

func TestMain(m *testing.M) {
	if os.Getenv(backendEnv) != "" {
		os.Exit(backendMain())
	}
	if engine != "" && engine != "turnout" && engine != "stdlib" {
		fmt.Fprintf(os.Stderr, "e2e: %s=%q: use turnout or stdlib, or leave it unset\n", engineEnv, engine)
		os.Exit(2)
	}
	dir, err := os.MkdirTemp("", "turnout-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: make a temporary directory:", err)
		os.Exit(1)
	}
	turnoutBin = filepath.Join(dir, "turnout")
	args := []string{"build", "-o", turnoutBin}
	if raceEnabled {
		// The daemon's data races are bugs too: a race report makes it
		// exit 66, which the stop check of every test catches.
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, "./cmd/turnout")...)
	build.Dir = ".."
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: build ./cmd/turnout:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// freeTCPAddr returns a loopback address nothing listens on right now, so a
// process can bind exactly that address, and bind it again after a restart.
func freeTCPAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("pick a free port: %v", err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// shortDir is a temporary directory with a short path: unix socket paths are
// limited to 108 bytes, which t.TempDir() may exceed.
func shortDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "te")
	if err != nil {
		t.Fatalf("make a socket directory: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// waitLine reads r line by line into log, and reports on found the first
// line that matches re; eof is closed when r is read to its end.
func waitLine(r io.Reader, log io.Writer, re *regexp.Regexp) (found <-chan string, eof <-chan struct{}) {
	match, done := make(chan string, 1), make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(r)
		sent := false
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(log, line)
			if !sent && re.MatchString(line) {
				match <- line
				sent = true
			}
		}
	}()
	return match, done
}

// process is a started child process and the channel closed when it exits.
type process struct {
	cmd    *exec.Cmd
	exited chan struct{}
	err    error // set before exited is closed
	output *testlog.Buffer
}

// start runs cmd and waits until a line of the stream (stdout or stderr)
// matches ready; the process's output is kept for failure reports.
func start(t *testing.T, cmd *exec.Cmd, stderrIsReady bool, ready *regexp.Regexp) *process {
	t.Helper()
	p := &process{cmd: cmd, exited: make(chan struct{}), output: &testlog.Buffer{}}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", cmd.Path, err)
	}
	readyStream, other := stdout, stderr
	if stderrIsReady {
		readyStream, other = stderr, stdout
	}
	var copied sync.WaitGroup
	copied.Add(1)
	go func() {
		defer copied.Done()
		io.Copy(p.output, other)
	}()
	found, eof := waitLine(readyStream, p.output, ready)
	go func() {
		// Wait must come after the pipes are read to the end.
		<-eof
		copied.Wait()
		p.err = cmd.Wait()
		close(p.exited)
	}()
	select {
	case <-found:
	case <-p.exited:
		t.Fatalf("%s exited before it was ready (%v):\n%s", strings.Join(cmd.Args, " "), p.err, p.output)
	case <-time.After(eventTimeout):
		cmd.Process.Kill()
		<-p.exited
		t.Fatalf("%s was not ready within %s:\n%s", strings.Join(cmd.Args, " "), eventTimeout, p.output)
	}
	return p
}

// signal sends sig and waits for the process to exit.
func (p *process) stop(t *testing.T, sig syscall.Signal, within time.Duration) error {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Fatalf("signal %v to %s: %v", sig, p.cmd.Path, err)
	}
	select {
	case <-p.exited:
		return p.err
	case <-time.After(within):
		p.cmd.Process.Kill()
		<-p.exited
		t.Fatalf("%s did not exit within %s of %v:\n%s", strings.Join(p.cmd.Args, " "), within, sig, p.output)
		return nil
	}
}

func (p *process) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// turnout is a running `turnout serve`.
type turnout struct {
	*process
	// Addr is the proxy's listen address, URL its base URL.
	Addr, URL string
	// Config is the config file's path, Control its control socket.
	Config, Control string
}

// settings are the parts of a generated config a test chooses.
type settings struct {
	// A and B are the pools' servers as the config writes them; A is active.
	A, B []string
	// Proxy is extra lines for the [proxy] table; hold_timeout defaults to
	// "10s" unless given here.
	Proxy string
}

var listeningRE = regexp.MustCompile(`turnout: listening(:|$)`)

// startTurnout writes a config for s and runs `turnout serve` on it until the
// test ends, when it is stopped with SIGTERM and must exit 0.
func startTurnout(t *testing.T, s settings) *turnout {
	t.Helper()
	if len(s.B) == 0 {
		s.B = []string{freeTCPAddr(t)} // a standby pool nobody serves
	}
	c := newCfgSpec(t, s.A, s.B)
	c.Proxy = s.Proxy
	path := writeCfg(t, c)
	d := serveDaemon(t, path, c)
	return &turnout{process: d.process, Addr: c.Listen, URL: d.URL, Config: path, Control: c.Control}
}

// backend is one backend process that can be stopped and started again on
// the same address.
type backend struct {
	t                   *testing.T
	Name, Network, Addr string
	proc                *process
}

// newBackend starts a backend named name on network ("tcp" or "unix"); it
// is killed at the end of the test if still running.
func newBackend(t *testing.T, name, network string) *backend {
	t.Helper()
	addr := ""
	switch network {
	case "tcp":
		addr = freeTCPAddr(t)
	case "unix":
		addr = filepath.Join(shortDir(t), name+".sock")
	default:
		t.Fatalf("backend network %q: want tcp or unix", network)
	}
	b := &backend{t: t, Name: name, Network: network, Addr: addr}
	b.Start()
	t.Cleanup(func() {
		if b.proc.running() {
			b.proc.stop(t, syscall.SIGKILL, eventTimeout)
		}
	})
	return b
}

// Spec is the backend as a turnout config writes a server.
func (b *backend) Spec() string {
	if b.Network == "unix" {
		return "unix:" + b.Addr
	}
	return b.Addr
}

// Start (re)starts the backend on its address and waits until it listens.
func (b *backend) Start() {
	b.t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), backendEnv+"="+b.Name, backendNetworkEnv+"="+b.Network, backendAddrEnv+"="+b.Addr)
	b.proc = start(b.t, cmd, false, regexp.MustCompile(`^ready$`))
}

// Stop sends sig (SIGTERM: graceful; SIGKILL: a crash) and waits for the exit.
func (b *backend) Stop(sig syscall.Signal) {
	b.t.Helper()
	b.proc.stop(b.t, sig, eventTimeout)
}
