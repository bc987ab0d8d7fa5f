package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// configSaver saves text as the config at path the way one tool does.
type configSaver func(t *testing.T, path, text string)

// saveRenameOver writes a temporary file beside path and renames it over
// path, as most editors save.
func saveRenameOver(t *testing.T, path, text string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), ".turnout.toml.tmp")
	if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// saveTruncate truncates path and writes text into the same inode.
func saveTruncate(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// saveMv writes text in another directory and runs `mv` over path.
func saveMv(t *testing.T, path, text string) {
	t.Helper()
	src := filepath.Join(t.TempDir(), "new.toml")
	if err := os.WriteFile(src, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mv", src, path).CombinedOutput(); err != nil {
		t.Fatalf("mv %s %s: %v: %s", src, path, err, out)
	}
}

// k8sSaver saves like a Kubernetes ConfigMap volume: path is a link to
// ..data/turnout.toml, ..data a link to a versioned directory; a save
// writes the next version's directory and renames a new ..data link over
// the old one.
type k8sSaver struct{ version int }

func (k *k8sSaver) save(t *testing.T, path, text string) {
	t.Helper()
	dir := filepath.Dir(path)
	k.version++
	vdir := fmt.Sprintf("..v%d", k.version)
	if err := os.Mkdir(filepath.Join(dir, vdir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, vdir, "turnout.toml"), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(dir, "..data_tmp")
	if err := os.Symlink(vdir, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
}

// shortHash is the config hash status shows: the first 12 hex digits of
// the file's SHA-256.
func shortHash(text string) string {
	sum := sha256.Sum256([]byte(text))
	return hex.EncodeToString(sum[:])[:12]
}

var reloadedRE = regexp.MustCompile(`config reloaded`)

// TestConfigReloadsUnderLoad is the promise that config edits apply live without losing a request, under 200 req/s of GET
// and POST: a Kubernetes-style symlink swap, a rename-over save, a
// truncate-and-write and an `mv`, each adding or removing a server of the
// active pool, are applied while the servers that stayed are up
// throughout; a broken file is not applied and is shown with its
// file:line until fixed; a pinned `active` refuses `turnout switch` and
// switches when edited; 50 rapid saves make a handful of reloads and the
// last one wins. No request fails.
func TestConfigReloadsUnderLoad(t *testing.T) {
	a1, a2, a3 := newBackend(t, "A", "tcp"), newBackend(t, "A", "tcp"), newBackend(t, "A", "tcp")
	b := newBackend(t, "B", "tcp")
	dir := t.TempDir()
	path := filepath.Join(dir, "turnout.toml")
	c := newCfgSpec(t, []string{a1.Spec()}, []string{b.Spec()})
	k8s := &k8sSaver{}
	k8s.save(t, path, c.render(t))
	if err := os.Symlink(filepath.Join("..data", "turnout.toml"), path); err != nil {
		t.Fatal(err)
	}
	d := serveDaemon(t, path, c)
	waitPoolUp(t, d.Control, "A")
	stop := startLoadUntil(t, loadSpec{URL: d.URL + "/", Workers: 100, Rate: 200, PostBody: "config load"})

	saves := []struct {
		name    string
		servers []*backend
		save    configSaver
	}{
		{"symlink swap (adds a server)", []*backend{a1, a2}, k8s.save},
		{"rename over (removes a server)", []*backend{a1}, saveRenameOver},
		{"truncate and write (adds a server)", []*backend{a1, a3}, saveTruncate},
		{"mv (removes a server)", []*backend{a3}, saveMv},
	}
	for _, s := range saves {
		stayed := map[string]bool{}
		next := []string{}
		for _, srv := range s.servers {
			stayed[srv.Spec()] = slices.Contains(c.A, srv.Spec())
			next = append(next, srv.Spec())
		}
		c.A = next
		began := time.Now()
		s.save(t, path, c.render(t))
		var applied time.Duration
		var notUp []string
		pollUntil(t, s.name+": applied and every server up", func() (bool, string) {
			servers := fetchStatus(t, d.Control).pool("A")
			var addrs []string
			allUp := true
			for _, srv := range servers {
				addrs = append(addrs, srv.Address)
				if srv.State != "up" {
					allUp = false
					if stayed[srv.Address] {
						notUp = append(notUp, fmt.Sprintf("%s %s", srv.Address, srv.State))
					}
				}
			}
			slices.Sort(addrs)
			if applied == 0 && slices.Equal(addrs, slices.Sorted(slices.Values(c.A))) {
				applied = time.Since(began)
			}
			return applied > 0 && allUp, fmt.Sprintf("%+v", servers)
		})
		t.Logf("%s: applied in %s (target: within 1s)", s.name, applied.Round(time.Millisecond))
		if len(notUp) > 0 {
			t.Errorf("%s: servers that stayed were not up at some status polls: %v", s.name, notUp)
		}
	}

	// A broken file is not applied; status names its file:line until fixed.
	good := c.render(t)
	lines := strings.Split(good, "\n")
	const brokenLine = 5
	broken := strings.Join(slices.Insert(slices.Clone(lines), brokenLine-1, `log_levle = "info"`), "\n")
	saveRenameOver(t, path, broken)
	pollUntil(t, "the broken file's error in status", func() (bool, string) {
		st := fetchStatus(t, d.Control)
		return st.Config.LastError != "", st.Config.LastError
	})
	st := fetchStatus(t, d.Control)
	if want := fmt.Sprintf("turnout.toml:%d:", brokenLine); !strings.Contains(st.Config.LastError, want) {
		t.Errorf("config.last_error %q does not name %s", st.Config.LastError, want)
	}
	if st.Config.Hash != shortHash(good) {
		t.Errorf("config.hash %s after a broken save, want the running %s", st.Config.Hash, shortHash(good))
	}
	if servers := st.pool("A"); len(servers) != 1 || servers[0].Address != a3.Spec() || servers[0].State != "up" {
		t.Errorf("pool A after a broken save: %+v, want %s up", servers, a3.Spec())
	}
	saveRenameOver(t, path, good)
	pollUntil(t, "the fixed file clears the error", func() (bool, string) {
		st := fetchStatus(t, d.Control)
		return st.Config.LastError == "", st.Config.LastError
	})

	// 50 rapid saves: a handful of reloads, and the last content wins.
	before := countLines(d.output.String(), reloadedRE)
	var final string
	for n := range 50 {
		final = good + fmt.Sprintf("# save %d\n", n+1)
		saveRenameOver(t, path, final)
	}
	pollUntil(t, "the last of 50 saves applied", func() (bool, string) {
		st := fetchStatus(t, d.Control)
		return st.Config.Hash == shortHash(final), "hash " + st.Config.Hash + ", want " + shortHash(final)
	})
	reloads := countLines(d.output.String(), reloadedRE) - before
	t.Logf("50 rapid saves made %d reloads", reloads)
	if reloads >= 15 {
		t.Errorf("50 rapid saves made %d reloads, want fewer than 15", reloads)
	}

	// `active` in the file decides: the CLI refuses, an edit switches.
	c.Top = `active = "A"`
	pinned := c.render(t)
	saveRenameOver(t, path, pinned)
	pollUntil(t, "the pinned file applied", func() (bool, string) {
		st := fetchStatus(t, d.Control)
		return st.Config.Hash == shortHash(pinned), "hash " + st.Config.Hash + ", error " + st.Config.LastError
	})
	if r := runCLI(t, nil, "switch", "B", "--control", d.Control); r.code != 2 || !strings.Contains(r.stderr, "edit") {
		t.Errorf("switch with active pinned: want exit 2 telling to edit the file\n%s", r)
	}
	c.Top = `active = "B"`
	saveRenameOver(t, path, c.render(t))
	waitActive(t, d.Control, "B")
	recs := historyJSON(t, "--control", d.Control)
	if len(recs) != 1 || recs[0].Actor != "config" || recs[0].To != "B" || recs[0].Result != "switched" {
		t.Errorf("want one switched record to B by actor config, got %+v", recs)
	}

	res := stop()
	requireNoFailure(t, res)
	if res.Backends["B"] == 0 {
		t.Errorf("B got no traffic after the config switched to it: %v", res.Backends)
	}
}
