package switcher

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/turnout/turnout/healthcheck"
	"github.com/turnout/turnout/internal/testsock"
	"github.com/turnout/turnout/state"
)

// configText is the config startSwitcher writes, for rewriting in tests.
func configText(t *testing.T, h *harness, poolA []string, extra string) string {
	t.Helper()
	b, err := os.ReadFile(h.path)
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	start := strings.Index(text, "[pools.A]\nservers = [")
	end := strings.Index(text, "[pools.B]")
	return extra + text[:start] + "[pools.A]\nservers = [" + quoteAll(poolA) + "]\n" + text[end:]
}

func serverKeys(h *harness, pool string) string {
	var keys []string
	for _, s := range h.sw.Pool(pool).Servers() {
		keys = append(keys, s.Key())
	}
	return strings.Join(keys, ",")
}

func TestWatchAppliesEveryKindOfSave(t *testing.T) {
	a1, a2, b := newBackend(t, "A1", nil), newBackend(t, "A2", nil), newBackend(t, "B", nil)
	h := startSwitcher(t, fastChecks, []string{a1.addr}, []string{b.addr})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	must(t, h.sw.Watch(ctx))
	kept := h.sw.Pool("A").Servers()[0]
	dir := filepath.Dir(h.path)

	saves := []struct {
		name string
		save func(text string)
	}{
		{"rename over (vim, sed -i)", func(text string) {
			tmp := h.path + ".swp"
			must(t, os.WriteFile(tmp, []byte(text), 0o600))
			must(t, os.Rename(tmp, h.path))
		}},
		{"truncate and write (cp, shell >)", func(text string) {
			must(t, os.WriteFile(h.path, []byte(text), 0o600))
		}},
		{"mv of a new file", func(text string) {
			other := filepath.Join(t.TempDir(), "new.toml")
			must(t, os.WriteFile(other, []byte(text), 0o600))
			must(t, os.Rename(other, h.path))
		}},
	}
	for i, s := range saves {
		servers := []string{a1.addr}
		if i%2 == 0 {
			servers = append(servers, a2.addr)
		}
		s.save(configText(t, h, servers, fmt.Sprintf("# save %d\n", i)))
		want := strings.Join(servers, ",")
		waitFor(t, s.name+" applied", func() bool { return serverKeys(h, "A") == want })
		if h.sw.Pool("A").Servers()[0] != kept || kept.State() != healthcheck.Up {
			t.Fatalf("%s: the server that stayed lost its state (%s)", s.name, kept.State())
		}
	}
	_ = dir
}

func TestWatchFollowsKubernetesSymlinkSwaps(t *testing.T) {
	a1, a2, b := newBackend(t, "A1", nil), newBackend(t, "A2", nil), newBackend(t, "B", nil)
	h := startSwitcher(t, fastChecks, []string{a1.addr}, []string{b.addr})
	// Lay the config out as a ConfigMap volume: turnout.toml -> ..data/turnout.toml,
	// ..data -> ..v1, and swap ..data atomically to ..v2.
	dir := filepath.Dir(h.path)
	text, err := os.ReadFile(h.path)
	must(t, err)
	must(t, os.Mkdir(filepath.Join(dir, "..v1"), 0o700))
	must(t, os.WriteFile(filepath.Join(dir, "..v1", "turnout.toml"), text, 0o600))
	must(t, os.Symlink("..v1", filepath.Join(dir, "..data")))
	must(t, os.Remove(h.path))
	must(t, os.Symlink("..data/turnout.toml", h.path))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	must(t, h.sw.Watch(ctx))

	must(t, os.Mkdir(filepath.Join(dir, "..v2"), 0o700))
	must(t, os.WriteFile(filepath.Join(dir, "..v2", "turnout.toml"), []byte(configText(t, h, []string{a1.addr, a2.addr}, "")), 0o600))
	must(t, os.Symlink("..v2", filepath.Join(dir, "..data_tmp")))
	must(t, os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")))
	want := a1.addr + "," + a2.addr
	waitFor(t, "the symlink swap applied", func() bool { return serverKeys(h, "A") == want })
}

func TestBrokenConfigIsNotApplied(t *testing.T) {
	a1, a2, b := newBackend(t, "A1", nil), newBackend(t, "A2", nil), newBackend(t, "B", nil)
	h := startSwitcher(t, fastChecks, []string{a1.addr}, []string{b.addr})
	good := configText(t, h, []string{a1.addr, a2.addr}, "")
	must(t, os.WriteFile(h.path, []byte("hold_timeout = \"1s\"\n"+good), 0o600))
	err := h.sw.Reload("test")
	if err == nil || serverKeys(h, "A") != a1.addr {
		t.Fatalf("broken file: err %v, servers %s; want an error and nothing applied", err, serverKeys(h, "A"))
	}
	st := h.sw.Status()
	if !strings.Contains(st.Config.LastError, "turnout.toml:1:1") {
		t.Fatalf("status last_error %q, want the file:line:col", st.Config.LastError)
	}
	if code, body := do(t, "GET", h.proxy+"/", ""); code != 200 || body != "A1 GET" {
		t.Fatalf("traffic after a broken reload: %d %q", code, body)
	}
	must(t, os.WriteFile(h.path, []byte(good), 0o600))
	if err := h.sw.Reload("test"); err != nil {
		t.Fatal(err)
	}
	if st := h.sw.Status(); st.Config.LastError != "" || serverKeys(h, "A") != a1.addr+","+a2.addr {
		t.Fatalf("after a fixed file: last_error %q, servers %s", st.Config.LastError, serverKeys(h, "A"))
	}
}

func TestPinnedActiveSwitchesThroughWarmUp(t *testing.T) {
	a, b := newBackend(t, "A", nil), newBackend(t, "B", nil)
	dead := testsock.FreeAddr(t)
	h := startSwitcher(t, `active = "A"`+"\n"+fastChecks, []string{a.addr}, []string{b.addr})
	if _, err := h.sw.Switch(context.Background(), SwitchRequest{To: "B"}, nil); !errors.Is(err, ErrPinned) {
		t.Fatalf("switch with a pinned active: %v, want ErrPinned", err)
	}
	text, err := os.ReadFile(h.path)
	must(t, err)
	must(t, os.WriteFile(h.path, []byte(strings.Replace(string(text), `active = "A"`, `active = "B"`, 1)), 0o600))
	must(t, h.sw.Reload("test"))
	waitFor(t, "the config switch to B", func() bool { return h.sw.Active() == "B" })
	waitFor(t, "the config switch to finish", func() bool { return h.sw.Status().Switching == nil })
	hist, _ := h.sw.History(1)
	if len(hist) != 1 || hist[0].Actor != "config" || hist[0].Result != state.ResultSwitched || hist[0].ReadyAt.IsZero() {
		t.Fatalf("history %+v, want a warmed switch by config", hist)
	}

	// To a dead pool: the switch aborts and A... here B keeps traffic.
	text, _ = os.ReadFile(h.path)
	dead2 := strings.Replace(string(text), `active = "B"`, `active = "A"`, 1)
	dead2 = strings.Replace(dead2, `servers = ["`+a.addr+`"]`, `servers = ["`+dead+`"]`, 1)
	dead2 = strings.Replace(dead2, `timeout = "10s"`, `timeout = "300ms"`, 1)
	must(t, os.WriteFile(h.path, []byte(dead2), 0o600))
	must(t, h.sw.Reload("test"))
	waitFor(t, "the aborted config switch", func() bool {
		hist, _ := h.sw.History(1)
		return len(hist) == 1 && hist[0].Result == state.ResultAborted
	})
	if h.sw.Active() != "B" {
		t.Fatalf("active %s after an aborted config switch, want B", h.sw.Active())
	}

	// The pinned pool comes to life; a reload of the unchanged file (SIGHUP)
	// tries again and follows the file.
	revived := &backend{t: t, name: "A", addr: dead}
	revived.handler = a.handler
	revived.start()
	t.Cleanup(revived.stop)
	must(t, h.sw.Reload("SIGHUP"))
	waitFor(t, "the retried config switch to A", func() bool { return h.sw.Active() == "A" })
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

var _ = time.Second

func TestRevertingThePinnedPoolCancelsTheConfigSwitch(t *testing.T) {
	a := newBackend(t, "A", nil)
	dead := testsock.FreeAddr(t)
	h := startSwitcher(t, `active = "A"`+"\n"+fastChecks, []string{a.addr}, []string{dead})
	text, err := os.ReadFile(h.path)
	must(t, err)
	toB := strings.Replace(string(text), `active = "A"`, `active = "B"`, 1)
	must(t, os.WriteFile(h.path, []byte(toB), 0o600))
	must(t, h.sw.Reload("test"))
	waitFor(t, "the config switch to B to warm", func() bool { return h.sw.Status().Switching != nil })
	must(t, os.WriteFile(h.path, text, 0o600))
	must(t, h.sw.Reload("test"))
	waitFor(t, "the config switch to B to be cancelled", func() bool { return h.sw.Status().Switching == nil })
	hist, _ := h.sw.History(1)
	if h.sw.Active() != "A" || len(hist) != 1 || hist[0].Result != state.ResultAborted {
		t.Fatalf("active %s, history %+v; want A and the superseded switch aborted", h.sw.Active(), hist)
	}
}
