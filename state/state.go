// Package state owns turnout's persistent state file (SPEC.md 4.7): the
// active pool, the maintenance flag and the switch history, stored in a
// bbolt database. It must not touch the proxy, the config or the network;
// callers decide what to store and when.
package state

import (
	"errors"
	"time"

	"github.com/hashicorp/go-hclog"
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

// Record results.
const (
	ResultSwitched = "switched"
	ResultAborted  = "aborted"
	ResultForced   = "forced"
)

// MaxHistory is the number of history records kept; older ones are deleted.
const MaxHistory = 10000

// ErrLocked is wrapped by Open when another process holds the state file.
var ErrLocked = errors.New("state file locked")

// Store is an open state file.
type Store struct {
	path string
}

// Open opens the state file at path.
func Open(path string, timeout time.Duration, logger hclog.Logger) (*Store, error) {
	return nil, errors.New("not implemented")
}

// OpenReadOnly opens the state file read-only.
func OpenReadOnly(path string, timeout time.Duration) (*Store, error) {
	return nil, errors.New("not implemented")
}

// Path returns the file path.
func (s *Store) Path() string { return s.path }

// Close closes the file.
func (s *Store) Close() error { return nil }

// Active returns the active pool, "" when never set.
func (s *Store) Active() (string, error) { return "", nil }

// SetActive sets the active pool.
func (s *Store) SetActive(pool string) error { return nil }

// Maintenance returns the maintenance flag and message.
func (s *Store) Maintenance() (on bool, message string, err error) { return false, "", nil }

// SetMaintenance sets the maintenance flag and message.
func (s *Store) SetMaintenance(on bool, message string) error { return nil }

// RecordSwitch appends rec.
func (s *Store) RecordSwitch(rec *Record) error { return nil }

// Finish sets FinishedAt of record id.
func (s *Store) Finish(id uint64, at time.Time) error { return nil }

// History returns up to limit records, newest first.
func (s *Store) History(limit int) ([]Record, error) { return nil, nil }
