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
	"time"

	"github.com/hashicorp/go-hclog"
	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// ErrLocked is wrapped by Open and OpenReadOnly when another process (or
// another Store in this one) holds the state file's lock past the timeout.
var ErrLocked = errors.New("state file locked")

// errCorrupt marks a file whose content is not a usable state file, as
// opposed to lock or I/O errors, which must never cause a file to be moved.
var errCorrupt = errors.New("corrupt state file")

// poolName is the syntax of pool names (SPEC.md 2), used to spot garbage in
// the stored active pool.
var poolName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,32}$`)

// Open opens the state file at path for reading and writing, creating it
// (mode 0600) and its parent directory (mode 0700) when absent. It waits at
// most timeout for the file's lock (0 waits for ever, as in bbolt); when
// another process holds it, the error wraps ErrLocked and names the file.
//
// A corrupt file (not a bbolt file, bad meta pages, truncated, or with
// missing or garbled buckets) is renamed to "<path>.corrupt-<UTC time>",
// logged at Warn with both names, and a fresh empty file takes its place.
// A nil logger discards the log.
func Open(path string, timeout time.Duration, logger hclog.Logger) (*Store, error) {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create directory %s for state file: %w", dir, err)
	}
	_, statErr := os.Stat(path)
	created := errors.Is(statErr, fs.ErrNotExist)

	opts := &bolt.Options{Timeout: timeout}
	db, err := openChecked(path, opts)
	if errors.Is(err, errCorrupt) {
		aside, mvErr := moveAside(path)
		if mvErr != nil {
			return nil, fmt.Errorf("state file %s is corrupt (%v) and could not be moved aside: %w; move or delete it by hand", path, err, mvErr)
		}
		logger.Warn("state file is corrupt: moved it aside and starting with empty state",
			"path", path, "moved_to", aside, "error", err)
		created = true
		db, err = openChecked(path, opts)
	}
	if err != nil {
		if errors.Is(err, ErrLocked) {
			return nil, fmt.Errorf("state file %s is in use by another turnout: stop it or set a different `state` path: %w", path, ErrLocked)
		}
		return nil, fmt.Errorf("open state file %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketMeta, bucketHistory} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil && created {
		// The file's directory entry must be durable too, or a power loss
		// could lose the whole new file with its first acknowledged switch.
		err = syncDir(dir)
	}
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("initialise state file %s: %w", path, err)
	}
	return &Store{db: db, path: path, maxHistory: MaxHistory}, nil
}

// OpenReadOnly opens an existing state file read-only, for `turnout history
// --state PATH` while no daemon runs. It waits at most timeout for a shared
// lock; a running daemon holds the file exclusively, so that error wraps
// ErrLocked. A missing or corrupt file is an error naming it; nothing is
// created or moved. Writes on the returned Store fail.
func OpenReadOnly(path string, timeout time.Duration) (*Store, error) {
	fi, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("state file %s does not exist: check the path, or the `state` setting of the config: %w", path, err)
		}
		return nil, fmt.Errorf("state file %s: %w", path, err)
	}
	if fi.Size() == 0 {
		// bbolt would try to initialise it, which a read-only open cannot.
		return nil, fmt.Errorf("state file %s is empty: turnout never finished opening it, so it holds no history", path)
	}
	db, err := openChecked(path, &bolt.Options{Timeout: timeout, ReadOnly: true})
	switch {
	case errors.Is(err, ErrLocked):
		return nil, fmt.Errorf("state file %s is in use by a running turnout: run the command without --state to ask the daemon: %w", path, ErrLocked)
	case errors.Is(err, errCorrupt):
		return nil, fmt.Errorf("state file %s is unreadable (%w): `turnout serve` moves a corrupt file aside and starts afresh", path, err)
	case err != nil:
		return nil, fmt.Errorf("open state file %s: %w", path, err)
	}
	return &Store{db: db, path: path, maxHistory: MaxHistory}, nil
}

// openChecked opens path with bbolt and verifies its content. Lock timeouts
// come back as ErrLocked; problems with the content wrap errCorrupt. The lock
// is taken before bbolt reads anything, so a file held by another process is
// never judged corrupt.
func openChecked(path string, opts *bolt.Options) (db *bolt.DB, err error) {
	// Keep the file handle so a panic inside bolt.Open can still release it
	// (and its lock); the mapping made before such a panic is leaked, which
	// is acceptable once per corrupt file.
	var file *os.File
	opts.OpenFile = func(name string, flag int, perm os.FileMode) (*os.File, error) {
		f, err := os.OpenFile(name, flag, perm)
		file = f
		return f, err
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
			db, err = nil, fmt.Errorf("%w: %v", errCorrupt, r)
		}
	}()

	db, err = bolt.Open(path, 0o600, opts)
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return nil, ErrLocked
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrVersionMismatch), errors.Is(err, berrors.ErrChecksum):
		return nil, fmt.Errorf("%w: %w", errCorrupt, err)
	case err != nil:
		return nil, err
	}
	if err := verify(db); err != nil {
		_ = db.Close()
		return nil, err
	}
	return db, nil
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

// moveAside renames the file at path to "<path>.corrupt-<UTC time>" (with a
// counter if that name is taken) and returns the new name.
func moveAside(path string) (string, error) {
	base := path + ".corrupt-" + time.Now().UTC().Format("20060102T150405Z")
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
