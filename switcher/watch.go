package switcher

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
)

// watchDebounce gathers the bursts of events that one save makes (editors
// write, rename and chmod) into one reload.
const watchDebounce = 100 * time.Millisecond

// Watch starts reloading the config when its file changes, until ctx ends.
// It watches the file's directory, so that rename-on-save, `mv`,
// delete-and-recreate and Kubernetes-style symlink swaps (`..data`) all
// count, and the directory of the symlink's target too. The watch is in place
// when Watch returns; the loop runs in its own goroutine.
func (s *Switcher) Watch(ctx context.Context) error {
	path := s.Config().Path
	if path == "" {
		return nil
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch the config file %s: %w (reload with SIGHUP instead)", path, err)
	}
	dirs := map[string]bool{}
	watchDirs := func() {
		for _, dir := range watchedDirs(path) {
			if !dirs[dir] {
				if err := w.Add(dir); err != nil {
					s.logger.Warn("cannot watch directory", "dir", dir, "error", err)
					continue
				}
				dirs[dir] = true
			}
		}
	}
	watchDirs()
	go func() {
		defer w.Close()
		var (
			timer  = time.NewTimer(time.Hour)
			timerC <-chan time.Time
		)
		timer.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-w.Events:
				if !ok {
					return
				}
				if relevant(path, ev.Name) {
					timer.Reset(watchDebounce)
					timerC = timer.C
				}
			case err, ok := <-w.Errors:
				if !ok {
					return
				}
				s.logger.Warn("config watcher error", "error", err)
			case <-timerC:
				timerC = nil
				s.Reload("file")
				watchDirs()
			}
		}
	}()
	return nil
}

// watchedDirs is the config file's directory and, when the file is a
// symlink, the directory of its final target.
func watchedDirs(path string) []string {
	dirs := []string{filepath.Dir(path)}
	if target, err := filepath.EvalSymlinks(path); err == nil {
		if d := filepath.Dir(target); d != dirs[0] {
			dirs = append(dirs, d)
		}
	}
	return dirs
}

// relevant reports whether an event on name may change the config at path:
// the file itself, its symlink target, or a Kubernetes `..data`-style link.
func relevant(path, name string) bool {
	base := filepath.Base(name)
	if base == filepath.Base(path) || strings.HasPrefix(base, "..") {
		return true
	}
	target, err := filepath.EvalSymlinks(path)
	return err == nil && target == name
}
