package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestValidate runs `turnout validate` on good and bad files: a bad file
// exits 2 with the problem's file:line:col on stderr, a good one exits 0.
func TestValidate(t *testing.T) {
	t.Parallel()
	const head = "listen = [\"127.0.0.1:8080\"]\nstate = \"/nonexistent/state.db\"\n"
	const pools = "[pools.A]\nservers = [\"127.0.0.1:9001\"]\n\n[pools.B]\nservers = [\"unix:/run/b.sock weight=2\"]\n"
	for _, tc := range []struct {
		name, config string
		// at is where the error must point, "line:col"; "" for a good file.
		at, says string
	}{
		{"good", head + pools, "", ""},
		{"unknown key", head + "lisen = 1\n" + pools, "3:1", `unknown key "lisen"`},
		{"bad duration", head + "[proxy]\nhold_timeout = \"10 seconds\"\n" + pools, "4:16", "bad duration"},
		{"bad listen address", "listen = [\"localhost\"]\n" + pools, "1:11", "bad listen address"},
		{"bad server address", head + "[pools.A]\nservers = [\"127.0.0.1:99999\"]\n[pools.B]\nservers = [\"127.0.0.1:9101\"]\n", "4:12", "bad server"},
		{"third pool", head + pools + "\n[pools.C]\nservers = [\"127.0.0.1:9201\"]\n", "9:8", `pool "C"`},
		{"initial names no pool", head + "initial = \"Z\"\n" + pools, "3:11", "names no pool"},
		{"template does not parse", head + "[maintenance]\npage = \"bad.html\"\n" + pools, "4:8", "not a valid template"},
		{"empty file", "", "1:1", "the config file is empty"},
		{"only comments", "# soon\n", "1:1", "[pools.A]"},
		{"256.1.1.1", head + "[pools.A]\nservers = [\"256.1.1.1:9001\"]\n[pools.B]\nservers = [\"127.0.0.1:9101\"]\n", "4:12", "is not an IPv4 address"},
		{"engine typo", head + "[proxy]\nengine = \"stdlb\"\n" + pools, "4:10", `did you mean "stdlib"?`},
		{"health timeout 1ns", head + "[health]\ntimeout = \"1ns\"\n" + pools, "4:11", `health.timeout = "1ns" is below its floor of 10ms`},
		{"20,000 unknown keys", "no_such_key = 1\n" + manyKeys(20000) + pools, "1:1", "unknown key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "bad.html"), []byte("<p>{{.Message</p>"), 0o644); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, "turnout.toml")
			if err := os.WriteFile(path, []byte(tc.config), 0o644); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(turnoutBin, "validate", "--config", path)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			code := 0
			if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatalf("run turnout validate: %v", err)
			}
			if tc.at == "" {
				if code != 0 {
					t.Errorf("exit code %d, want 0; stderr:\n%s", code, &stderr)
				}
				return
			}
			if code != 2 {
				t.Errorf("exit code %d, want 2; stderr:\n%s", code, &stderr)
			}
			want := path + ":" + tc.at + ": "
			found := false
			for _, line := range strings.Split(stderr.String(), "\n") {
				if strings.HasPrefix(line, want) && strings.Contains(line, tc.says) {
					found = true
				}
			}
			if !found {
				t.Errorf("stderr has no line starting %q that says %q:\n%.2000s", want, tc.says, &stderr)
			}
			if n := strings.Count(stderr.String(), ": unknown key"); n > 100 || (strings.Contains(tc.name, "20,000") && (n != 100 || !strings.Contains(stderr.String(), "\nand 19901 more errors"))) {
				t.Errorf("%d unknown-key lines, want at most 100 followed by the count of the rest:\n%.300s", n, stderr.String()[max(0, stderr.Len()-300):])
			}
		})
	}
}

// manyKeys is n distinct unknown top-level keys.
func manyKeys(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "unknown_%d = %d\n", i, i)
	}
	return b.String()
}
