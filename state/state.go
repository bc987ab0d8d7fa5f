// Package state owns turnout's persistent state file (SPEC.md 4.7): the
// active pool, the maintenance flag and the switch history, kept in one bbolt
// file whose transactions all go through Store. It knows nothing of pools,
// the proxy or the config; callers decide what to store and when.
package state

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Record is one switch in the history. JSON names are part of the contract (SPEC.md 4.8).
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
type Store struct {
	db   *bolt.DB
	path string
	// maxHistory is MaxHistory; a field so tests can trim with a few records.
	maxHistory uint64
}

// Path returns the path the store was opened with.
func (s *Store) Path() string { return s.path }

// Close releases the file and its lock. The Store must not be used afterwards.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close state file %s: %w", s.path, err)
	}
	return nil
}

// Active returns the persisted active pool, or "" when none was ever set.
func (s *Store) Active() (string, error) {
	var pool string
	err := s.db.View(func(tx *bolt.Tx) error {
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
	err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keyActive, []byte(pool))
	})
	if err != nil {
		return fmt.Errorf("write active pool %q to state file %s: %w", pool, s.path, err)
	}
	return nil
}

// Maintenance returns the persisted maintenance flag and its message
// (off and "" when never set).
func (s *Store) Maintenance() (on bool, message string, err error) {
	var m maintenanceValue
	err = s.db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			return nil
		}
		if v := meta.Get(keyMaintenance); v != nil {
			return json.Unmarshal(v, &m)
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
	err = s.db.Update(func(tx *bolt.Tx) error {
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
	err := s.db.Update(func(tx *bolt.Tx) error {
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
	err := s.db.Update(func(tx *bolt.Tx) error {
		hist := tx.Bucket(bucketHistory)
		v := hist.Get(idKey(id))
		if v == nil {
			return errors.New("no such record (it may have been trimmed)")
		}
		var r Record
		if err := json.Unmarshal(v, &r); err != nil {
			return fmt.Errorf("decode record: %w", err)
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
	err := s.db.View(func(tx *bolt.Tx) error {
		hist := tx.Bucket(bucketHistory)
		if hist == nil {
			return nil
		}
		c := hist.Cursor()
		for k, v := c.Last(); k != nil && (limit <= 0 || len(out) < limit); k, v = c.Prev() {
			var r Record
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("decode record %x: %w", k, err)
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
