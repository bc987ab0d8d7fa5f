package e2e

import (
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDemo runs `turnout demo` as the README says, follows what it prints
// (curl the proxy, switch to B with the printed control socket) and stops
// it with Ctrl-C.
func TestDemo(t *testing.T) {
	skipUnderStdlib(t, "turnout demo writes its own config, on the default engine")
	cmd := exec.Command(turnoutBin, "demo", "--listen", freeTCPAddr(t), "--metrics", freeTCPAddr(t))
	cmd.Env = append(os.Environ(), raceExitEnv())
	p := start(t, cmd, false, regexp.MustCompile(`^Ctrl-C stops the demo\.$`))
	out := p.output.String()
	proxy := regexp.MustCompile(`proxy +(http://\S+)`).FindStringSubmatch(out)
	control := regexp.MustCompile(`control +(/\S+)`).FindStringSubmatch(out)
	if proxy == nil || control == nil || !strings.Contains(out, "switch B --control") {
		p.stop(t, syscall.SIGINT, eventTimeout)
		t.Fatalf("the demo did not print the proxy, the control socket and the switch command:\n%s", out)
	}
	get := func() string {
		t.Helper()
		resp, err := http.Get(proxy[1])
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	if body := get(); !strings.Contains(body, "pool A") {
		t.Fatalf("the demo proxy answered %q, want pool A", body)
	}
	if run := runCLI(t, nil, "switch", "B", "--control", control[1], "--reason", "try it"); run.code != 0 {
		t.Fatalf("switch B in the demo: %s", run)
	}
	if body := get(); !strings.Contains(body, "pool B") {
		t.Fatalf("after the switch the demo proxy answered %q, want pool B", body)
	}
	if err := p.stop(t, syscall.SIGINT, 30*time.Second); err != nil {
		t.Fatalf("the demo did not stop cleanly on Ctrl-C: %v\n%s", err, p.output)
	}
	if _, err := os.Stat(control[1]); !os.IsNotExist(err) {
		t.Fatalf("the demo left its temporary directory behind (%s: %v)", control[1], err)
	}
}
