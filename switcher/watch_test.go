package switcher

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/turnout/turnout/config"
	"github.com/turnout/turnout/state"
)

// watchedConfig is the text of a config whose pool A has servers.
func watchedConfig(t *testing.T, servers ...string) []byte {
	t.Helper()
	return fmt.Appendf(nil, "listen = [\"127.0.0.1:0\"]\nstate = %q\ninitial = \"A\"\n[health]\ninterval = \"1h\"\nstandby_interval = \"1h\"\n[pools.A]\nservers = [%s]\n[pools.B]\nservers = [\"127.0.0.1:1\"]\n",
		filepath.Join(t.TempDir(), "state.db"), quoteAll(servers))
}

// watchSwitcher builds a Switcher (not serving) on the config at path, as
// the daemon opens it, and starts its watch.
func watchSwitcher(t *testing.T, path string) *Switcher {
	t.Helper()
	cfg, err := config.Load(path)
	must(t, err)
	store, err := state.Open(cfg.State, time.Second, nil)
	must(t, err)
	sw, err := New(Options{Config: cfg, Store: store})
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() {
		cancel()
		sw.Close()
		store.Close()
	})
	must(t, sw.Watch(ctx))
	return sw
}

func poolAKeys(sw *Switcher) string {
	var keys []string
	for _, s := range sw.Pool("A").Servers() {
		keys = append(keys, s.Key())
	}
	return strings.Join(keys, ",")
}

// swapLink points the symlink at link to target atomically, as `ln -sfn`
// and deploy tools do: a new link renamed over the old one.
func swapLink(t *testing.T, target, link string) {
	t.Helper()
	tmp := link + ".tmp"
	must(t, os.Symlink(target, tmp))
	must(t, os.Rename(tmp, link))
}

// TestWatchFollowsAChainOfSymlinks: turnout.toml -> links/current.toml ->
// r1/turnout.toml; a deploy swaps the middle link to r2, then edits the
// file in r2, then swaps to r3 by an absolute link: each is applied.
func TestWatchFollowsAChainOfSymlinks(t *testing.T) {
	dir := t.TempDir()
	for _, r := range []string{"r1", "r2", "r3", "links"} {
		must(t, os.Mkdir(filepath.Join(dir, r), 0o700))
	}
	must(t, os.WriteFile(filepath.Join(dir, "r1", "turnout.toml"), watchedConfig(t, "127.0.0.1:1001"), 0o600))
	must(t, os.Symlink("../r1/turnout.toml", filepath.Join(dir, "links", "current.toml")))
	path := filepath.Join(dir, "turnout.toml")
	must(t, os.Symlink("links/current.toml", path))
	sw := watchSwitcher(t, path)

	must(t, os.WriteFile(filepath.Join(dir, "r2", "turnout.toml"), watchedConfig(t, "127.0.0.1:1002"), 0o600))
	swapLink(t, "../r2/turnout.toml", filepath.Join(dir, "links", "current.toml"))
	waitFor(t, "the swap of the middle link applied", func() bool { return poolAKeys(sw) == "127.0.0.1:1002" })

	must(t, os.WriteFile(filepath.Join(dir, "r2", "turnout.toml"), watchedConfig(t, "127.0.0.1:1002", "127.0.0.1:1003"), 0o600))
	waitFor(t, "an edit of the new target applied", func() bool { return poolAKeys(sw) == "127.0.0.1:1002,127.0.0.1:1003" })

	must(t, os.WriteFile(filepath.Join(dir, "r3", "turnout.toml"), watchedConfig(t, "127.0.0.1:1004"), 0o600))
	swapLink(t, filepath.Join(dir, "r3", "turnout.toml"), filepath.Join(dir, "links", "current.toml"))
	waitFor(t, "the swap to an absolute link applied", func() bool { return poolAKeys(sw) == "127.0.0.1:1004" })
}

// TestWatchFollowsCapistranoCurrent: the config is app/current/turnout.toml
// and `current` is a directory link re-pointed at each release, with
// `ln -sfn`-style rename or by removing and re-creating it.
func TestWatchFollowsCapistranoCurrent(t *testing.T) {
	app := t.TempDir()
	release := func(n int, servers ...string) string {
		rel := filepath.Join("releases", fmt.Sprint(n))
		must(t, os.MkdirAll(filepath.Join(app, rel), 0o700))
		must(t, os.WriteFile(filepath.Join(app, rel, "turnout.toml"), watchedConfig(t, servers...), 0o600))
		return rel
	}
	current := filepath.Join(app, "current")
	must(t, os.Symlink(release(1, "127.0.0.1:2001"), current))
	sw := watchSwitcher(t, filepath.Join(current, "turnout.toml"))

	swapLink(t, release(2, "127.0.0.1:2002"), current)
	waitFor(t, "release 2 applied", func() bool { return poolAKeys(sw) == "127.0.0.1:2002" })

	must(t, os.Remove(current))
	must(t, os.Symlink(filepath.Join(app, release(3, "127.0.0.1:2003")), current))
	waitFor(t, "release 3 (link removed and re-created) applied", func() bool { return poolAKeys(sw) == "127.0.0.1:2003" })

	// The watch moved to the release now current: editing it applies.
	must(t, os.WriteFile(filepath.Join(app, "releases", "3", "turnout.toml"), watchedConfig(t, "127.0.0.1:2003", "127.0.0.1:2004"), 0o600))
	waitFor(t, "an edit in the current release applied", func() bool { return poolAKeys(sw) == "127.0.0.1:2003,127.0.0.1:2004" })
}

func TestConfigChain(t *testing.T) {
	dir := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(dir, "app", "releases", "7"), 0o700))
	must(t, os.WriteFile(filepath.Join(dir, "app", "releases", "7", "t.toml"), nil, 0o600))
	must(t, os.Symlink("releases/7", filepath.Join(dir, "app", "current")))
	must(t, os.Symlink("app/current/t.toml", filepath.Join(dir, "link.toml")))
	must(t, os.Symlink("link.toml", filepath.Join(dir, "t.toml")))
	got := configChain(filepath.Join(dir, "t.toml"))
	want := []string{
		filepath.Join(dir, "t.toml"),
		filepath.Join(dir, "link.toml"),
		filepath.Join(dir, "app", "current"),
		filepath.Join(dir, "app", "releases", "7", "t.toml"),
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("configChain:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	must(t, os.Symlink("loop", filepath.Join(dir, "loop")))
	if got := configChain(filepath.Join(dir, "loop")); len(got) != maxLinks+1 {
		t.Errorf("a symlink loop: %d entries, want the %d links followed and the last path", len(got), maxLinks+1)
	}
}
