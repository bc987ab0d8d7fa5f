package state

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// ErrLocked is wrapped by Open and OpenReadOnly when another process (or
// another Store in this one) holds the state file's lock past the timeout.
var ErrLocked = errors.New("state file locked")

// ErrDamaged is wrapped by every method of a Store whose file was found
// damaged while it was open (truncated, overwritten, replaced or removed).
var ErrDamaged = errors.New("state file damaged")

// errCorrupt marks a file whose content is not a usable state file, as
// opposed to lock or I/O errors, which must never cause a file to be moved.
var errCorrupt = errors.New("corrupt state file")

// poolName is the syntax of pool names, as config checks it, used to spot
// garbage in the stored active pool.
var poolName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,32}$`)

// Open opens the state file at path for reading and writing, creating it
// (mode 0600) and its parent directory (mode 0700) when absent. It waits at
// most timeout for the file's lock (0 waits for ever, as in bbolt); when
// another process holds it, the error wraps ErrLocked and names the file.
//
// Beside the file, ActiveFile(path) keeps a second record of the active
// pool. A damaged file (empty, not a bbolt file, bad meta pages, truncated,
// or with missing or garbled buckets) is renamed to "<path>.damaged-<UTC
// time>", and a fresh file takes its place whose active pool is the one the
// active-pool file names; both names are logged at Error. When that record
// is missing or unreadable too, Open refuses, moves nothing, and says how to
// name the pool by hand. A missing file with an active-pool file beside it
// starts on that pool with an empty history. A nil logger discards the log.
func Open(path string, timeout time.Duration, logger hclog.Logger) (*Store, error) {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create directory %s for state file: %w", dir, err)
	}
	recorded, recErr := readActiveFile(path)
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		if err := create(path); err != nil {
			return nil, fmt.Errorf("create state file %s: %w", path, err)
		}
		if recErr == nil {
			logger.Warn("state file missing: starting with an empty history on the pool the active-pool file names (remove that file too to start on the config's initial pool)",
				"path", path, "active_file", ActiveFile(path), "pool", recorded)
		}
	}

	opts := &bolt.Options{Timeout: timeout}
	db, file, err := openChecked(path, opts)
	if errors.Is(err, errCorrupt) {
		if recErr != nil {
			return nil, refuseDamaged(path, err, recErr)
		}
		aside, mvErr := moveAside(path)
		if mvErr != nil {
			return nil, fmt.Errorf("state file %s is damaged (%v) and could not be moved aside: %w; move or delete it by hand", path, err, mvErr)
		}
		logger.Error("state file is damaged: moved it aside; starting with an empty history on the pool the active-pool file names",
			"path", path, "moved_to", aside, "active_file", ActiveFile(path), "pool", recorded, "error", err)
		if err := create(path); err != nil {
			return nil, fmt.Errorf("create state file %s: %w", path, err)
		}
		db, file, err = openChecked(path, opts)
	}
	if err != nil {
		if errors.Is(err, ErrLocked) {
			return nil, fmt.Errorf("state file %s is in use by another turnout: stop it or set a different `state` path: %w", path, ErrLocked)
		}
		return nil, fmt.Errorf("open state file %s: %w", path, err)
	}
	s := newStore(db, file, path, logger)
	err = s.update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketMeta, bucketHistory} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		err = s.reconcileActiveFile(recorded, recErr)
	}
	if err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("initialise state file %s: %w", path, err)
	}
	return s, nil
}

// refuseDamaged is Open's answer when the state file is damaged and the
// active-pool file cannot say which pool served: guessing could send the
// traffic to a stopped pool.
func refuseDamaged(path string, damage, recErr error) error {
	why := "missing"
	if !activeFileMissing(recErr) {
		why = fmt.Sprintf("unreadable (%v)", recErr)
	}
	af := ActiveFile(path)
	return fmt.Errorf("state file %s is damaged (%w), and %s, its record of the active pool, is %s, so turnout cannot tell which pool served last and will not guess. "+
		"Write the name of the pool that serves now into %s (for example `echo B > %s`) and start again: the damaged file is then moved aside and the history starts afresh. "+
		"Or move %s away yourself to start on the config's initial pool",
		path, damage, af, why, af, af, path)
}

// reconcileActiveFile makes the active-pool file agree with the bbolt file,
// which is authoritative when readable; a bbolt file that names no pool yet
// (new, or just replaced after damage) takes the recorded one. Failing to
// write the active-pool file is logged, not returned.
func (s *Store) reconcileActiveFile(recorded string, recErr error) error {
	active, err := s.Active()
	if err != nil {
		return err
	}
	switch {
	case active == "" && recErr == nil:
		return s.SetActive(recorded)
	case active == "" || (recErr == nil && recorded == active):
		return nil
	case recErr != nil && !activeFileMissing(recErr):
		s.logger.Warn("the active-pool file is unreadable: rewriting it from the state file", "active_file", ActiveFile(s.path), "pool", active, "error", recErr)
	case recErr == nil:
		s.logger.Warn("the active-pool file names another pool than the state file: rewriting it from the state file",
			"active_file", ActiveFile(s.path), "recorded", recorded, "pool", active)
	}
	// The bbolt file is sound and authoritative: a second record that
	// cannot be written (a read-only directory, say) is no reason to stop.
	if err := writeActiveFile(s.path, active); err != nil {
		s.logger.Error("cannot write the second record of the active pool; a damaged state file would then stop turnout from starting", "pool", active, "error", err)
	}
	return nil
}

// create makes a new, initialised state file at path atomically: bbolt
// writes it under a temporary name, which is then linked into place, so a
// crash never leaves a half-made file at path (an empty file there is
// damage). A file that appeared at path meanwhile is kept.
func create(path string) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, filepath.Base(path)+".new-*")
	if err != nil {
		return err
	}
	name := tmp.Name()
	tmp.Close()
	defer os.Remove(name)
	db, err := bolt.Open(name, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return err
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketMeta, bucketHistory} {
			if _, err := tx.CreateBucket(b); err != nil {
				return err
			}
		}
		return nil
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := os.Link(name, path); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	// The directory entry must be durable too, or a power loss could lose
	// the whole new file with its first acknowledged switch.
	return syncDir(dir)
}

// OpenReadOnly opens an existing state file read-only, for `turnout history
// --state PATH` while no daemon runs. It waits at most timeout for a shared
// lock; a running daemon holds the file exclusively, so that error wraps
// ErrLocked. A missing or damaged file is an error naming it; nothing is
// created or moved. Writes on the returned Store fail.
func OpenReadOnly(path string, timeout time.Duration) (*Store, error) {
	if _, err := os.Stat(path); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("state file %s does not exist: check the path, or the `state` setting of the config: %w", path, err)
		}
		return nil, fmt.Errorf("state file %s: %w", path, err)
	}
	db, file, err := openChecked(path, &bolt.Options{Timeout: timeout, ReadOnly: true})
	switch {
	case errors.Is(err, ErrLocked):
		return nil, fmt.Errorf("state file %s is in use by a running turnout: run the command without --state to ask the daemon: %w", path, ErrLocked)
	case errors.Is(err, errCorrupt):
		return nil, fmt.Errorf("state file %s is damaged (%w): `turnout serve` moves it aside and starts on the pool named in %s", path, err, ActiveFile(path))
	case err != nil:
		return nil, fmt.Errorf("open state file %s: %w", path, err)
	}
	return newStore(db, file, path, nil), nil
}

// openChecked opens path with bbolt and verifies its content, returning the
// DB and bbolt's handle on the file. Lock timeouts come back as ErrLocked;
// problems with the content wrap errCorrupt, I/O errors stay as they are.
// The lock is taken before bbolt reads anything, so a file held by another
// process is never judged damaged.
func openChecked(path string, opts *bolt.Options) (db *bolt.DB, file *os.File, err error) {
	// Keep the file handle so a panic inside bolt.Open can still release it
	// (and its lock); the mapping made before such a panic is leaked, which
	// is acceptable once per damaged file.
	opts.OpenFile = func(name string, flag int, perm os.FileMode) (*os.File, error) {
		f, err := os.OpenFile(name, flag, perm)
		if err != nil {
			return nil, err
		}
		// bbolt would initialise an empty file as a new one; files are
		// created whole (see create), so an empty one lost its content.
		if fi, err := f.Stat(); err == nil && fi.Size() == 0 {
			f.Close()
			return nil, fmt.Errorf("%w: the file is empty", errCorrupt)
		}
		file = f
		return f, nil
	}
	// Garbage page ids make bbolt read outside the mapping or past the end of
	// the file; turn those faults, and bbolt's own panics, into errCorrupt.
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			if db != nil {
				_ = db.Close()
			} else if file != nil {
				_ = file.Close()
			}
			db, file, err = nil, nil, fmt.Errorf("%w: %v", errCorrupt, r)
		}
	}()

	db, err = bolt.Open(path, 0o600, opts)
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return nil, nil, ErrLocked
	case errors.Is(err, errCorrupt):
		return nil, nil, err
	case err != nil && isIOError(err):
		return nil, nil, err
	case err != nil:
		// bbolt's other refusals (bad magic, version, checksum, "file size
		// too small") are all about the content.
		return nil, nil, fmt.Errorf("%w: %w", errCorrupt, err)
	}
	if err := verify(db); err != nil {
		_ = db.Close()
		return nil, nil, err
	}
	return db, file, nil
}

// isIOError reports whether err comes from the operating system (permission,
// I/O) rather than from what the file holds.
func isIOError(err error) bool {
	var pe *fs.PathError
	var errno syscall.Errno
	return errors.As(err, &pe) || errors.As(err, &errno)
}

// verify checks that db is a state file: not truncated, and either empty
// (never initialised) or holding the two buckets with well-formed values,
// and passing bbolt's own consistency check.
func verify(db *bolt.DB) error {
	return db.View(func(tx *bolt.Tx) error {
		fi, err := os.Stat(db.Path())
		if err != nil {
			return err
		}
		if tx.Size() > fi.Size() {
			return fmt.Errorf("%w: file is truncated (%d bytes, needs %d)", errCorrupt, fi.Size(), tx.Size())
		}
		if k, _ := tx.Cursor().First(); k == nil {
			return nil
		}
		meta, hist := tx.Bucket(bucketMeta), tx.Bucket(bucketHistory)
		if meta == nil || hist == nil {
			return fmt.Errorf("%w: bucket %q or %q is missing", errCorrupt, bucketMeta, bucketHistory)
		}
		if v := meta.Get(keyActive); v != nil && !poolName.Match(v) {
			return fmt.Errorf("%w: active pool %q is not a pool name", errCorrupt, v)
		}
		if v := meta.Get(keyMaintenance); v != nil {
			if err := json.Unmarshal(v, &maintenanceValue{}); err != nil {
				return fmt.Errorf("%w: maintenance flag: %v", errCorrupt, err)
			}
		}
		err = hist.ForEach(func(k, v []byte) error {
			if len(k) != 8 || v == nil {
				return fmt.Errorf("%w: history key %x is not a record", errCorrupt, k)
			}
			var r Record
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("%w: history record %x: %v", errCorrupt, k, err)
			}
			if r.ID != binary.BigEndian.Uint64(k) {
				return fmt.Errorf("%w: history record %x has id %d", errCorrupt, k, r.ID)
			}
			return nil
		})
		if err != nil {
			return err
		}
		// Drain the whole channel: Check's goroutine reads the transaction
		// until it closes it, so it must finish before the View returns.
		var first error
		for err := range tx.Check() {
			if first == nil {
				first = fmt.Errorf("%w: %v", errCorrupt, err)
			}
		}
		return first
	})
}

// moveAside renames the file at path to "<path>.damaged-<UTC time>" (with a
// counter if that name is taken) and returns the new name.
func moveAside(path string) (string, error) {
	base := path + ".damaged-" + time.Now().UTC().Format("20060102T150405Z")
	aside := base
	for i := 2; ; i++ {
		if _, err := os.Lstat(aside); errors.Is(err, fs.ErrNotExist) {
			break
		}
		aside = fmt.Sprintf("%s-%d", base, i)
	}
	if err := os.Rename(path, aside); err != nil {
		return "", err
	}
	return aside, syncDir(filepath.Dir(path))
}

// syncDir fsyncs a directory so that entries created or renamed in it survive a crash.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}
