package switcher

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
)

// watchDebounce gathers the bursts of events that one save makes (editors
// write, rename and chmod) into one reload.
const watchDebounce = 100 * time.Millisecond

// maxLinks bounds the symlinks followed when resolving the config path, as
// the kernel's ELOOP limit does.
const maxLinks = 40

// Watch starts reloading the config when its file changes, until ctx ends.
// It resolves the config path through every symlink in any of its parts and
// watches the directory of each link it passes and of the final file, so
// that rename-on-save, `mv`, delete-and-recreate, a link to a link swapped by
// a deploy, a Capistrano-style `current` directory link re-pointed with
// `ln -sfn` or a rename, and Kubernetes ConfigMap swaps (`..data`) all count.
// The chain is resolved again after each reload, and the watches follow it.
// The watch is in place when Watch returns; the loop runs in its own
// goroutine.
func (s *Switcher) Watch(ctx context.Context) error {
	path := s.Config().Path
	if path == "" {
		return nil
	}
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch the config file %s: %w (reload with SIGHUP instead)", path, err)
	}
	dirs := map[string]bool{}
	var chain map[string]bool
	follow := func() {
		links := configChain(path)
		chain = map[string]bool{}
		want := map[string]bool{}
		for _, p := range links {
			chain[p] = true
			want[filepath.Dir(p)] = true
		}
		for dir := range want {
			if !dirs[dir] {
				if err := w.Add(dir); err != nil {
					s.logger.Warn("cannot watch directory", "dir", dir, "error", err)
					continue
				}
				dirs[dir] = true
			}
		}
		for dir := range dirs {
			if !want[dir] {
				_ = w.Remove(dir) // fails only when the directory is gone, which ends its watch anyway
				delete(dirs, dir)
			}
		}
	}
	follow()
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
				if chain[ev.Name] || strings.HasPrefix(filepath.Base(ev.Name), "..") {
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
				// Follow the new chain first, so that a change made while
				// the reload reads the file is seen too.
				follow()
				s.Reload("file")
			}
		}
	}()
	return nil
}

// configChain resolves path (absolute, clean) through every symlink in any
// of its parts and returns each symlink it passed, by a path whose
// directories hold no symlink, and last the file it reaches. A swap of any
// of them is an event named by that path in its directory. A part that is
// missing (mid-swap) ends the chain there.
func configChain(path string) []string {
	var chain []string
	for range maxLinks {
		link, next, ok := firstLink(path)
		if !ok {
			break
		}
		chain = append(chain, link)
		path = next
	}
	return append(chain, path)
}

// firstLink finds the first part of path that is a symlink. It returns that
// part's path and path with the part replaced by the link's target.
func firstLink(path string) (link, next string, ok bool) {
	parts := strings.Split(strings.TrimPrefix(filepath.Clean(path), "/"), "/")
	cur := "/"
	for i, part := range parts {
		cur = filepath.Join(cur, part)
		fi, err := os.Lstat(cur)
		if err != nil {
			return "", "", false
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			continue
		}
		target, err := os.Readlink(cur)
		if err != nil {
			return "", "", false
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(filepath.Dir(cur), target)
		}
		return cur, filepath.Join(append([]string{target}, parts[i+1:]...)...), true
	}
	return "", "", false
}
