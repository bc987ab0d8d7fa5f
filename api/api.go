// Package api holds the wire types of turnout's control API: what the
// daemon (switcher, behind package control) answers and what the CLI and
// any other client read. It holds types and constants only, so that both
// sides import it and nothing else of each other. The reference is
// docs/control-api.md.
package api

import (
	"time"

	"github.com/turnout/turnout/state"
)

// Every error answer is {"error": "...", "code": "..."} with one of these
// codes; the CLI maps them to exit codes.
const (
	CodeBadRequest    = "bad_request"        // 400: bad JSON, unknown field, bad duration or limit, missing "to"
	CodeUnauthorized  = "unauthorized"       // 401: TCP request without a valid bearer token
	CodeNotFound      = "not_found"          // 404: no such endpoint
	CodeUnknownPool   = "unknown_pool"       // 404: the switch names no pool of the config
	CodeBadMethod     = "method_not_allowed" // 405
	CodeConflict      = "conflict"           // 409: a switch in progress, or expect_active did not match
	CodePinned        = "pinned"             // 409: the config file's `active` decides
	CodeTooLarge      = "too_large"          // 413: body over maxControlBody
	CodeAborted       = "aborted"            // 422 (200 in a stream): the target never became ready
	CodeInvalidConfig = "invalid_config"     // 422: reload found an invalid config file
	CodeInternal      = "internal"           // 500: the state file could not be written
)

// ErrorBody is every error answer: {"error": "...", "code": "..."}.
type ErrorBody struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

// Status is the daemon's state as `turnout status --json` and GET /v1/status
// show it.
type Status struct {
	Active      string          `json:"active"`
	Maintenance bool            `json:"maintenance"`
	Message     string          `json:"maintenance_message,omitempty"`
	Switching   *SwitchProgress `json:"switching"`
	Paused      *PauseStatus    `json:"paused"`
	Held        int64           `json:"held_requests"`
	Pools       []PoolStatus    `json:"pools"`
	Config      ConfigStatus    `json:"config"`
	Version     string          `json:"version"`
}

// SwitchProgress is the switch in progress.
type SwitchProgress struct {
	From        string           `json:"from"`
	To          string           `json:"to"`
	Actor       string           `json:"actor"`
	Reason      string           `json:"reason"`
	RequestedAt time.Time        `json:"requested_at"`
	Deadline    time.Time        `json:"deadline"`
	Servers     []ServerProgress `json:"servers"`
}

// PoolStatus is one pool in Status.
type PoolStatus struct {
	Name    string         `json:"name"`
	Active  bool           `json:"active"`
	Live    bool           `json:"live"`
	Ready   bool           `json:"ready"`
	Waiting int            `json:"waiting_requests"`
	Servers []ServerStatus `json:"servers"`
}

// ServerStatus is one server in Status.
type ServerStatus struct {
	Address   string    `json:"address"`
	Weight    int       `json:"weight"`
	State     string    `json:"state"`
	Passes    int       `json:"passes"`
	Fails     int       `json:"fails"`
	LastError string    `json:"last_error"`
	LatencyMS float64   `json:"latency_ms"`
	CheckedAt time.Time `json:"checked_at,omitzero"`
	InFlight  int64     `json:"in_flight"`
	// Limit is how many requests wait on the server at most while it starts
	// slow or after its backlog overflowed; -1 when it is not limited.
	Limit     int64  `json:"limit"`
	Overloads uint64 `json:"overloads"`
}

// Event is one step of a switch, streamed to the caller.
type Event struct {
	// Type is "accepted", "progress", "ready", "switched", "drained" or "aborted".
	Type string `json:"type"`
	// Time is when the step happened; for "accepted", the switch's
	// requested_at, which its history record repeats.
	Time time.Time `json:"time"`
	// ID is the history record's id, from "switched" on: the switch is
	// persisted then, and a caller that loses the daemon can look it up.
	ID      uint64           `json:"id,omitempty"`
	From    string           `json:"from,omitempty"`
	To      string           `json:"to,omitempty"`
	Message string           `json:"message,omitempty"`
	Servers []ServerProgress `json:"servers,omitempty"`
}

// ServerProgress is a server's way toward rise during a warm-up.
type ServerProgress struct {
	Address   string `json:"address"`
	State     string `json:"state"`
	Passes    int    `json:"passes"`
	Rise      int    `json:"rise"`
	LastError string `json:"last_error"`
}

// PauseStatus is the pause shown by status: nil when there is none.
type PauseStatus struct {
	Since   time.Time `json:"since"`
	Until   time.Time `json:"until"`
	Message string    `json:"message,omitempty"`
	Actor   string    `json:"actor"`
	Expired bool      `json:"expired"`
}

// ConfigStatus says which config is in force and whether the last reload failed.
type ConfigStatus struct {
	Path      string    `json:"path"`
	Hash      string    `json:"hash"`
	LoadedAt  time.Time `json:"loaded_at"`
	LastError string    `json:"last_error"`
}

// SwitchResult is the answer to POST /v1/switch: the one JSON object of a
// plain request, or the last line of a stream.
type SwitchResult struct {
	// Type is always "result", telling it from the events of a stream.
	Type string `json:"type"`
	// Result is "switched", "forced", "aborted", "already_active", or
	// "accepted" for no_wait.
	Result string `json:"result"`
	From   string `json:"from,omitempty"`
	To     string `json:"to,omitempty"`
	// Record is the history record; absent for already_active and accepted.
	Record *state.Record `json:"record,omitempty"`
	// Error says why an aborted switch failed; Code is then "aborted".
	Error string `json:"error,omitempty"`
	Code  string `json:"code,omitempty"`
}

// SwitchBody is the JSON body of POST /v1/switch.
type SwitchBody struct {
	To           string `json:"to"`
	Timeout      string `json:"timeout"`
	Reason       string `json:"reason"`
	ExpectActive string `json:"expect_active"`
	Force        bool   `json:"force"`
	NoWait       bool   `json:"no_wait"`
}

// MaintenanceBody is the JSON body of POST /v1/maintenance.
type MaintenanceBody struct {
	On      *bool  `json:"on"`
	Message string `json:"message"`
}

// PauseBody is the JSON body of POST /v1/pause.
type PauseBody struct {
	Max     string `json:"max"`
	Message string `json:"message"`
}

// ResumeResult is the answer to POST /v1/resume.
type ResumeResult struct {
	// Resumed is false when there was no pause to end.
	Resumed bool `json:"resumed"`
	// Held is how many requests the pause held when it ended.
	Held int64 `json:"held_requests"`
}

// ReloadResult is the answer to POST /v1/reload that applied the file.
type ReloadResult struct {
	Reloaded bool         `json:"reloaded"`
	Config   ConfigStatus `json:"config"`
}
