package e2e

import (
	"bytes"
	"context"
	"fmt"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// chromiumFlags start Debian's Chromium headless, quiet and offline: this
// machine's network is closed, and background services would only fail.
var chromiumFlags = []string{
	"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
	"--disable-background-networking", "--disable-component-update", "--disable-sync",
	"--hide-scrollbars", "--window-size=1280,1000",
}

// findChromium returns the browser's path; without one the test is skipped
// on a developer's machine and fails in CI, where .ci/run installs it.
func findChromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("no chromium on PATH: .ci/run installs Debian's chromium package")
	}
	t.Skip("no chromium on PATH (apt-get install chromium to run the browser check)")
	return ""
}

// TestStatusPageInABrowser renders the status page in a real headless
// Chromium after a switch, saves a screenshot and checks from the rendered
// DOM that both pools, their servers and the last switch are shown.
func TestStatusPageInABrowser(t *testing.T) {
	browser := findChromium(t)
	a, b := newBackend(t, "A", "tcp"), newBackend(t, "B", "unix")
	c := newCfgSpec(t, []string{a.Spec()}, []string{b.Spec()})
	metrics := freeTCPAddr(t)
	c.Top = fmt.Sprintf("initial = \"A\"\nmetrics_listen = %q", metrics)
	d := serveDaemon(t, writeCfg(t, c), c)
	waitPoolUp(t, d.Control, "B")
	if run := runCLI(t, nil, "switch", "B", "--control", d.Control, "--reason", "browser check"); run.code != 0 {
		t.Fatalf("switch: %s", run)
	}

	dir := os.Getenv("TURNOUT_ARTIFACTS")
	if dir == "" {
		dir = t.TempDir()
	}
	shot := filepath.Join(dir, "status-page.png")
	url := "http://" + metrics + "/"
	chrome := func(args ...string) []byte {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		args = append(append(append([]string{}, chromiumFlags...), "--user-data-dir="+t.TempDir()), args...)
		var stderr bytes.Buffer
		cmd := exec.CommandContext(ctx, browser, append(args, url)...)
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("chromium %v: %v\n%s", args, err, stderr.String())
		}
		return out
	}
	dom := string(chrome("--dump-dom"))
	for _, want := range []string{">A<", ">B<", a.Spec(), b.Spec(), "switched", "browser check"} {
		if !strings.Contains(dom, want) {
			t.Errorf("the rendered status page does not show %q", want)
		}
	}
	chrome("--screenshot=" + shot)
	f, err := os.Open(shot)
	if err != nil {
		t.Fatalf("no screenshot: %v", err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("screenshot %s: %v", shot, err)
	}
	if r := img.Bounds(); r.Dx() < 800 || r.Dy() < 600 {
		t.Fatalf("screenshot is %v, want the whole window", r)
	}
	t.Logf("screenshot: %s", shot)
}
