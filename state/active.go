package state

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// The active-pool file is a second, independent record of the active pool:
// a one-line text file beside the bbolt file ("<state>.active"), replaced
// atomically on every change. When the bbolt file is found damaged, it is
// what keeps traffic on the pool that served last.

// ActiveFile returns the path of the active-pool file that goes with the
// state file at path.
func ActiveFile(path string) string { return path + ".active" }

// readActiveFile returns the pool named by the active-pool file of the state
// file at path. A missing file is an error wrapping fs.ErrNotExist.
func readActiveFile(path string) (string, error) {
	name := ActiveFile(path)
	data, err := os.ReadFile(name)
	if err != nil {
		return "", err
	}
	pool := strings.TrimSpace(string(data))
	if !poolName.MatchString(pool) {
		return "", fmt.Errorf("%s does not hold a pool name (%.40q)", name, data)
	}
	return pool, nil
}

// writeActiveFile replaces the active-pool file of the state file at path
// with pool: written to a temporary file, fsynced, renamed over the old
// one, and the directory fsynced, so that a crash leaves the old or the new
// name, never a torn one.
func writeActiveFile(path, pool string) (err error) {
	name := ActiveFile(path)
	dir := filepath.Dir(name)
	tmp, err := os.CreateTemp(dir, filepath.Base(name)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
			err = fmt.Errorf("write %s: %w", name, err)
		}
	}()
	if err := tmp.Chmod(0o600); err != nil {
		return err
	}
	if _, err := tmp.WriteString(pool + "\n"); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), name); err != nil {
		return err
	}
	return syncDir(dir)
}

// activeFileMissing reports whether err says the active-pool file is absent.
func activeFileMissing(err error) bool { return errors.Is(err, fs.ErrNotExist) }
