// Package state owns turnout's persistent state file (docs/configuration.md:
// the state file): the active pool, the maintenance flag and the switch
// history, kept in one bbolt file whose transactions all go through Store,
// and a one-line second record of the active pool beside it for when that
// file is damaged. It knows nothing of pools, the proxy or the config;
// callers decide what to store and when.
package state

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime/debug"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	bolt "go.etcd.io/bbolt"
)

// Record is one switch in the history. JSON names are part of the contract
// (docs/control-api.md: history).
type Record struct {
	ID          uint64          `json:"id"`
	From        string          `json:"from"`
	To          string          `json:"to"`
	Result      string          `json:"result"` // ResultSwitched, ResultAborted, ResultForced
	Reason      string          `json:"reason"`
	Actor       string          `json:"actor"`
	RequestedAt time.Time       `json:"requested_at"`
	ReadyAt     time.Time       `json:"ready_at,omitzero"`
	SwitchedAt  time.Time       `json:"switched_at,omitzero"`
	FinishedAt  time.Time       `json:"finished_at,omitzero"`
	WarmMS      int64           `json:"warm_ms"`
	Servers     []ServerOutcome `json:"servers"`
	ConfigHash  string          `json:"config_hash,omitempty"`
}

// ServerOutcome is the warm-up outcome of one server of the target pool.
type ServerOutcome struct {
	Address   string `json:"address"`
	State     string `json:"state"`
	Passes    int    `json:"passes"`
	LastError string `json:"last_error"`
}

// Results of a switch, the values of Record.Result.
const (
	// ResultSwitched: the target became ready and took traffic.
	ResultSwitched = "switched"
	// ResultAborted: the target never became ready; the old pool kept traffic.
	ResultAborted = "aborted"
	// ResultForced: traffic moved without warming (--force).
	ResultForced = "forced"
	// ResultPaused: `turnout pause` began holding every request (From and
	// To are the active pool; Reason is the pause's message).
	ResultPaused = "paused"
	// ResultResumed: the pause ended; FinishedAt is when.
	ResultResumed = "resumed"
)

// MaxHistory is the number of history records kept; RecordSwitch deletes the
// oldest ones beyond it.
const MaxHistory = 10000

// Bucket and key names inside the bbolt file.
var (
	bucketMeta     = []byte("meta")
	bucketHistory  = []byte("history")
	keyActive      = []byte("active")
	keyMaintenance = []byte("maintenance")
)

// maintenanceValue is the stored form of the maintenance flag.
type maintenanceValue struct {
	On      bool   `json:"on"`
	Message string `json:"message"`
}

// Store is an open state file. It owns every bbolt transaction on the file
// and is safe for concurrent use. Every write is fsynced before it returns.
//
// Each transaction first checks that the file is still the one opened and
// no shorter than bbolt's data, and runs where a fault on the mapping or a
// panic in bbolt becomes an error. The first such damage breaks the store:
// it is logged at Error once, and from then on every method returns an
// error wrapping ErrDamaged without touching bbolt again (whose locks a
// panic may have left held), so callers get an answer instead of a hang.
type Store struct {
	db   *bolt.DB
	file *os.File // bbolt's handle: fstat for checks, and the lock to release when broken
	path string
	// maxHistory is MaxHistory; a field so tests can trim with a few records.
	maxHistory uint64
	logger     hclog.Logger

	breakOnce sync.Once
	broken    chan struct{} // closed when the file is found damaged
	brokenErr error         // set before broken is closed
}

func newStore(db *bolt.DB, file *os.File, path string, logger hclog.Logger) *Store {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	return &Store{db: db, file: file, path: path, maxHistory: MaxHistory, logger: logger, broken: make(chan struct{})}
}

// Path returns the path the store was opened with.
func (s *Store) Path() string { return s.path }

// Close releases the file and its lock. The Store must not be used
// afterwards. A broken store releases only the file: bbolt's own close
// could wait for ever on a lock a panic left held.
func (s *Store) Close() error {
	select {
	case <-s.broken:
		return s.file.Close()
	default:
	}
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close state file %s: %w", s.path, err)
	}
	return nil
}

func (s *Store) view(fn func(*bolt.Tx) error) error   { return s.run(false, fn) }
func (s *Store) update(fn func(*bolt.Tx) error) error { return s.run(true, fn) }

// run runs fn in a bbolt transaction on its own goroutine, so that a
// transaction stuck behind a lock that a faulting one left held still
// returns once the store is broken.
func (s *Store) run(write bool, fn func(*bolt.Tx) error) error {
	select {
	case <-s.broken:
		return s.brokenErr
	default:
	}
	done := make(chan error, 1)
	go func() {
		// A truncated file faults (SIGBUS) on the mapping; make it a panic.
		defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
		defer func() {
			if r := recover(); r != nil {
				done <- s.breakDown(fmt.Errorf("%w: bbolt failed reading it: %v", errCorrupt, r))
			}
		}()
		err := s.checkFile()
		if err == nil {
			op := s.db.View
			if write {
				op = s.db.Update
			}
			err = op(func(tx *bolt.Tx) error {
				if err := s.checkSize(tx); err != nil {
					return err
				}
				return fn(tx)
			})
		}
		if errors.Is(err, errCorrupt) {
			err = s.breakDown(err)
		}
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-s.broken:
		return s.brokenErr
	}
}

// checkFile reports, as errCorrupt, a path that no longer names the open
// file: writes would go to a file nobody reads again.
func (s *Store) checkFile() error {
	open, err := s.file.Stat()
	if err != nil {
		return fmt.Errorf("stat state file %s: %w", s.path, err)
	}
	now, err := os.Stat(s.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%w: the file was removed", errCorrupt)
	case err != nil:
		return fmt.Errorf("stat state file %s: %w", s.path, err)
	case !os.SameFile(open, now):
		return fmt.Errorf("%w: the file was replaced by another one", errCorrupt)
	}
	return nil
}

// checkSize reports, as errCorrupt, a file shorter than the data bbolt has
// mapped: reading the missing pages would fault.
func (s *Store) checkSize(tx *bolt.Tx) error {
	fi, err := s.file.Stat()
	if err != nil {
		return fmt.Errorf("stat state file %s: %w", s.path, err)
	}
	if fi.Size() < tx.Size() {
		return fmt.Errorf("%w: the file was truncated to %d bytes, its data needs %d", errCorrupt, fi.Size(), tx.Size())
	}
	return nil
}

// breakDown marks the store broken by damage (logged once, at Error) and
// returns the error every later call returns.
func (s *Store) breakDown(damage error) error {
	s.breakOnce.Do(func() {
		s.brokenErr = fmt.Errorf("state file %s was damaged while turnout ran (%v): traffic stays on the pool that serves now, "+
			"but switches, maintenance changes and the history fail until turnout restarts; "+
			"on restart it moves the damaged file aside and starts on the pool named in %s: %w",
			s.path, damage, ActiveFile(s.path), ErrDamaged)
		s.logger.Error("state file damaged while running: switches, maintenance changes and the history are unavailable until a restart",
			"path", s.path, "error", damage)
		close(s.broken)
	})
	return s.brokenErr
}

// recordActive updates the active-pool file after a committed change of the
// active pool. A failure is logged, not returned: the change is durable in
// the state file, which wins at the next start.
func (s *Store) recordActive(pool string) {
	if err := writeActiveFile(s.path, pool); err != nil {
		s.logger.Error("cannot update the second record of the active pool; it names an older pool until the next switch", "pool", pool, "error", err)
	}
}

// Active returns the persisted active pool, or "" when none was ever set.
func (s *Store) Active() (string, error) {
	var pool string
	err := s.view(func(tx *bolt.Tx) error {
		if meta := tx.Bucket(bucketMeta); meta != nil {
			pool = string(meta.Get(keyActive))
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("read active pool from state file %s: %w", s.path, err)
	}
	return pool, nil
}

// SetActive persists pool as the active pool without recording a switch; it
// is meant for the very first start (the config's initial or active pool).
func (s *Store) SetActive(pool string) error {
	if pool == "" {
		return fmt.Errorf("set active pool in state file %s: pool name is empty", s.path)
	}
	err := s.update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keyActive, []byte(pool))
	})
	if err != nil {
		return fmt.Errorf("write active pool %q to state file %s: %w", pool, s.path, err)
	}
	s.recordActive(pool)
	return nil
}

// Maintenance returns the persisted maintenance flag and its message
// (off and "" when never set).
func (s *Store) Maintenance() (on bool, message string, err error) {
	var m maintenanceValue
	err = s.view(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			return nil
		}
		if v := meta.Get(keyMaintenance); v != nil {
			if err := json.Unmarshal(v, &m); err != nil {
				return fmt.Errorf("%w: maintenance flag: %v", errCorrupt, err)
			}
		}
		return nil
	})
	if err != nil {
		return false, "", fmt.Errorf("read maintenance flag from state file %s: %w", s.path, err)
	}
	return m.On, m.Message, nil
}

// SetMaintenance persists the maintenance flag and its message.
func (s *Store) SetMaintenance(on bool, message string) error {
	v, err := json.Marshal(maintenanceValue{On: on, Message: message})
	if err != nil {
		return fmt.Errorf("encode maintenance flag: %w", err)
	}
	err = s.update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keyMaintenance, v)
	})
	if err != nil {
		return fmt.Errorf("write maintenance flag to state file %s: %w", s.path, err)
	}
	return nil
}

// RecordSwitch appends rec to the history, assigning rec.ID (increasing from
// 1, never reused), and, when rec.Result is ResultSwitched or ResultForced,
// sets the active pool to rec.To in the same transaction, so the active pool
// and its record are persisted together or not at all. Records beyond
// MaxHistory are deleted, oldest first. rec.ID is set only on success.
func (s *Store) RecordSwitch(rec *Record) error {
	if rec == nil {
		return errors.New("record switch: record is nil")
	}
	switch rec.Result {
	case ResultSwitched, ResultForced:
		if rec.To == "" {
			return fmt.Errorf("record switch: result %q needs a target pool", rec.Result)
		}
	case ResultAborted, ResultPaused, ResultResumed:
	default:
		return fmt.Errorf("record switch: unknown result %q (want %s, %s or %s)",
			rec.Result, ResultSwitched, ResultAborted, ResultForced)
	}
	var id uint64
	err := s.update(func(tx *bolt.Tx) error {
		hist := tx.Bucket(bucketHistory)
		var err error
		if id, err = hist.NextSequence(); err != nil {
			return err
		}
		r := *rec
		r.ID = id
		v, err := json.Marshal(&r)
		if err != nil {
			return fmt.Errorf("encode record: %w", err)
		}
		if err := hist.Put(idKey(id), v); err != nil {
			return err
		}
		if r.Result == ResultSwitched || r.Result == ResultForced {
			if err := tx.Bucket(bucketMeta).Put(keyActive, []byte(r.To)); err != nil {
				return err
			}
		}
		return s.trim(hist, id)
	})
	if err != nil {
		return fmt.Errorf("record switch to %q in state file %s: %w", rec.To, s.path, err)
	}
	rec.ID = id
	if rec.Result != ResultAborted {
		s.recordActive(rec.To)
	}
	return nil
}

// trim deletes the records older than the newest s.maxHistory, given that
// newest is the ID just written. IDs are consecutive (assigned only by
// RecordSwitch and deleted only from the oldest end), so an ID threshold is
// the same as a count and needs no full scan.
func (s *Store) trim(hist *bolt.Bucket, newest uint64) error {
	if newest <= s.maxHistory {
		return nil
	}
	oldestKept := newest - s.maxHistory + 1
	c := hist.Cursor()
	// Restart from First after each Delete: bbolt's Next skips an entry after Delete.
	for k, _ := c.First(); k != nil && binary.BigEndian.Uint64(k) < oldestKept; k, _ = c.First() {
		if err := c.Delete(); err != nil {
			return err
		}
	}
	return nil
}

// Finish sets the FinishedAt time of record id, once its drain is over.
func (s *Store) Finish(id uint64, at time.Time) error {
	err := s.update(func(tx *bolt.Tx) error {
		hist := tx.Bucket(bucketHistory)
		v := hist.Get(idKey(id))
		if v == nil {
			return errors.New("no such record (it may have been trimmed)")
		}
		var r Record
		if err := json.Unmarshal(v, &r); err != nil {
			return fmt.Errorf("%w: decode record %d: %v", errCorrupt, id, err)
		}
		r.FinishedAt = at
		v, err := json.Marshal(&r)
		if err != nil {
			return fmt.Errorf("encode record: %w", err)
		}
		return hist.Put(idKey(id), v)
	})
	if err != nil {
		return fmt.Errorf("finish history record %d in state file %s: %w", id, s.path, err)
	}
	return nil
}

// History returns up to limit records, newest first; limit <= 0 returns all.
// Servers is never nil, so the JSON form always has a list.
func (s *Store) History(limit int) ([]Record, error) {
	var out []Record
	err := s.view(func(tx *bolt.Tx) error {
		hist := tx.Bucket(bucketHistory)
		if hist == nil {
			return nil
		}
		c := hist.Cursor()
		for k, v := c.Last(); k != nil && (limit <= 0 || len(out) < limit); k, v = c.Prev() {
			var r Record
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("%w: decode record %x: %v", errCorrupt, k, err)
			}
			if r.Servers == nil {
				r.Servers = []ServerOutcome{}
			}
			out = append(out, r)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read history from state file %s: %w", s.path, err)
	}
	return out, nil
}

// idKey is the history key of id: big-endian, so keys sort by ID.
func idKey(id uint64) []byte {
	return binary.BigEndian.AppendUint64(nil, id)
}
