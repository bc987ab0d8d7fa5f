package state

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	bolt "go.etcd.io/bbolt"
)

func openTest(t testing.TB, path string) *Store {
	t.Helper()
	s, err := Open(path, time.Second, nil)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	return s
}

func sampleRecord(from, to, result string) *Record {
	at := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	return &Record{
		From: from, To: to, Result: result, Reason: "deploy v42", Actor: "alice",
		RequestedAt: at, ReadyAt: at.Add(time.Second), SwitchedAt: at.Add(2 * time.Second),
		WarmMS: 1000,
		Servers: []ServerOutcome{
			{Address: "127.0.0.1:9101", State: "up", Passes: 3},
			{Address: "unix:/run/b.sock", State: "probation", Passes: 1, LastError: "connection refused"},
		},
		ConfigHash: "abc123",
	}
}

func TestFreshFileIsEmpty(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "dir", "state.db")
	s := openTest(t, path)
	defer s.Close()

	if s.Path() != path {
		t.Errorf("Path() = %q, want %q", s.Path(), path)
	}
	if active, err := s.Active(); err != nil || active != "" {
		t.Errorf("Active() = %q, %v; want empty", active, err)
	}
	if on, msg, err := s.Maintenance(); err != nil || on || msg != "" {
		t.Errorf("Maintenance() = %v, %q, %v; want off", on, msg, err)
	}
	if h, err := s.History(0); err != nil || len(h) != 0 {
		t.Errorf("History(0) = %v, %v; want empty", h, err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("file mode %v, want 0600", fi.Mode().Perm())
	}
	di, err := os.Stat(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if di.Mode().Perm() != 0o700 {
		t.Errorf("directory mode %v, want 0700", di.Mode().Perm())
	}
}

func TestReopenKeepsEverything(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s := openTest(t, path)
	if err := s.SetActive("A"); err != nil {
		t.Fatal(err)
	}
	if err := s.SetMaintenance(true, "back at 5"); err != nil {
		t.Fatal(err)
	}
	want := sampleRecord("A", "B", ResultSwitched)
	if err := s.RecordSwitch(want); err != nil {
		t.Fatal(err)
	}
	finished := want.SwitchedAt.Add(30 * time.Second)
	if err := s.Finish(want.ID, finished); err != nil {
		t.Fatal(err)
	}
	want.FinishedAt = finished
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	check := func(t *testing.T, s *Store) {
		if active, err := s.Active(); err != nil || active != "B" {
			t.Errorf("Active() = %q, %v; want B", active, err)
		}
		if on, msg, err := s.Maintenance(); err != nil || !on || msg != "back at 5" {
			t.Errorf("Maintenance() = %v, %q, %v; want on, %q", on, msg, err, "back at 5")
		}
		h, err := s.History(0)
		if err != nil || len(h) != 1 {
			t.Fatalf("History(0) = %v, %v; want 1 record", h, err)
		}
		if got, want := mustJSON(t, h[0]), mustJSON(t, want); got != want {
			t.Errorf("record after reopen:\n got %s\nwant %s", got, want)
		}
	}
	t.Run("read-write", func(t *testing.T) {
		s := openTest(t, path)
		defer s.Close()
		check(t, s)
	})
	t.Run("read-only", func(t *testing.T) {
		s, err := OpenReadOnly(path, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		check(t, s)
		if err := s.SetActive("A"); err == nil {
			t.Error("SetActive on a read-only store succeeded")
		}
	})
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestRecordJSONNames(t *testing.T) {
	r := Record{ID: 7, From: "A", To: "B", Result: ResultAborted, RequestedAt: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}
	got := mustJSON(t, r)
	want := `{"id":7,"from":"A","to":"B","result":"aborted","reason":"","actor":"",` +
		`"requested_at":"2025-01-02T03:04:05Z","warm_ms":0,"servers":null}`
	if got != want {
		t.Errorf("JSON:\n got %s\nwant %s", got, want)
	}
}

func TestRecordSwitchSetsActive(t *testing.T) {
	tests := []struct {
		result string
		want   string
	}{
		{ResultSwitched, "B"},
		{ResultForced, "B"},
		{ResultAborted, "A"},
	}
	for _, tt := range tests {
		t.Run(tt.result, func(t *testing.T) {
			s := openTest(t, filepath.Join(t.TempDir(), "state.db"))
			defer s.Close()
			if err := s.SetActive("A"); err != nil {
				t.Fatal(err)
			}
			rec := sampleRecord("A", "B", tt.result)
			if err := s.RecordSwitch(rec); err != nil {
				t.Fatal(err)
			}
			if rec.ID != 1 {
				t.Errorf("rec.ID = %d, want 1", rec.ID)
			}
			if active, err := s.Active(); err != nil || active != tt.want {
				t.Errorf("Active() = %q, %v; want %q", active, err, tt.want)
			}
		})
	}
}

func TestRecordSwitchRejectsBadRecords(t *testing.T) {
	tests := []struct {
		name string
		rec  *Record
	}{
		{"nil", nil},
		{"unknown result", &Record{To: "B", Result: "done"}},
		{"switched without target", &Record{Result: ResultSwitched}},
		{"forced without target", &Record{Result: ResultForced}},
	}
	s := openTest(t, filepath.Join(t.TempDir(), "state.db"))
	defer s.Close()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.RecordSwitch(tt.rec); err == nil {
				t.Error("RecordSwitch succeeded")
			}
		})
	}
	if h, err := s.History(0); err != nil || len(h) != 0 {
		t.Errorf("History(0) = %v, %v; want nothing recorded", h, err)
	}
}

func TestHistoryNewestFirstWithLimit(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "state.db"))
	defer s.Close()
	for i := 1; i <= 5; i++ {
		rec := sampleRecord("A", "B", ResultSwitched)
		rec.Reason = fmt.Sprint(i)
		rec.Servers = nil
		if err := s.RecordSwitch(rec); err != nil {
			t.Fatal(err)
		}
		if rec.ID != uint64(i) {
			t.Fatalf("record %d got ID %d", i, rec.ID)
		}
	}
	tests := []struct {
		limit int
		want  []uint64
	}{
		{0, []uint64{5, 4, 3, 2, 1}},
		{-1, []uint64{5, 4, 3, 2, 1}},
		{2, []uint64{5, 4}},
		{5, []uint64{5, 4, 3, 2, 1}},
		{100, []uint64{5, 4, 3, 2, 1}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.limit), func(t *testing.T) {
			h, err := s.History(tt.limit)
			if err != nil {
				t.Fatal(err)
			}
			if got := ids(h); fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("IDs = %v, want %v", got, tt.want)
			}
			for _, r := range h {
				if r.Reason != fmt.Sprint(r.ID) {
					t.Errorf("record %d has reason %q", r.ID, r.Reason)
				}
				if r.Servers == nil {
					t.Errorf("record %d has nil Servers, want empty list", r.ID)
				}
			}
		})
	}
}

func ids(h []Record) []uint64 {
	var out []uint64
	for _, r := range h {
		out = append(out, r.ID)
	}
	return out
}

func TestHistoryIsTrimmed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s := openTest(t, path)
	s.maxHistory = 3
	for range 5 {
		if err := s.RecordSwitch(sampleRecord("A", "B", ResultAborted)); err != nil {
			t.Fatal(err)
		}
	}
	h, err := s.History(0)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(ids(h)); got != "[5 4 3]" {
		t.Errorf("IDs after trim = %s, want [5 4 3]", got)
	}
	if err := s.Finish(1, time.Now()); err == nil {
		t.Error("Finish of a trimmed record succeeded")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// IDs are never reused, even after trimming and reopening.
	s = openTest(t, path)
	defer s.Close()
	rec := sampleRecord("A", "B", ResultSwitched)
	if err := s.RecordSwitch(rec); err != nil {
		t.Fatal(err)
	}
	if rec.ID != 6 {
		t.Errorf("ID after reopen = %d, want 6", rec.ID)
	}
}

func TestFinishUnknownRecord(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "state.db"))
	defer s.Close()
	err := s.Finish(42, time.Now())
	if err == nil || !strings.Contains(err.Error(), s.Path()) {
		t.Errorf("Finish(42) = %v, want an error naming %s", err, s.Path())
	}
}

func TestSecondOpenIsLocked(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.db")
	s := openTest(t, path)
	defer s.Close()
	if err := s.SetActive("A"); err != nil {
		t.Fatal(err)
	}

	_, err := Open(path, 100*time.Millisecond, nil)
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open = %v, want ErrLocked", err)
	}
	for _, want := range []string{path, "in use by another turnout", "`state`"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	_, err = OpenReadOnly(path, 100*time.Millisecond)
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), path) {
		t.Errorf("OpenReadOnly while locked = %v, want ErrLocked naming %s", err, path)
	}

	// A locked file is never mistaken for a corrupt one.
	if m, _ := filepath.Glob(path + ".damaged-*"); len(m) != 0 {
		t.Errorf("locked file was moved aside: %v", m)
	}
	if active, err := s.Active(); err != nil || active != "A" {
		t.Errorf("first store after the failed open: Active() = %q, %v; want A", active, err)
	}
}

// corruptFiles write a file at path that Open must move aside.
var corruptFiles = []struct {
	name  string
	write func(t *testing.T, path string)
}{
	{"empty", func(t *testing.T, path string) {
		writeFile(t, path, nil)
	}},
	{"4096 zero bytes", func(t *testing.T, path string) {
		writeFile(t, path, make([]byte, 4096))
	}},
	{"4096 random bytes", func(t *testing.T, path string) {
		writeFile(t, path, randomBytes(t, 4096))
	}},
	{"zeros over a whole file", func(t *testing.T, path string) {
		writeValid(t, path)
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, path, make([]byte, fi.Size()))
	}},
	{"random bytes", func(t *testing.T, path string) {
		writeFile(t, path, randomBytes(t, 64<<10))
	}},
	{"random bytes smaller than a page", func(t *testing.T, path string) {
		writeFile(t, path, randomBytes(t, 100))
	}},
	{"text", func(t *testing.T, path string) {
		writeFile(t, path, []byte("active = \"A\"\n"))
	}},
	{"truncated to 100 bytes", func(t *testing.T, path string) {
		writeValid(t, path)
		truncate(t, path, 100)
	}},
	{"truncated after the meta pages", func(t *testing.T, path string) {
		writeValid(t, path)
		truncate(t, path, 3*int64(os.Getpagesize()))
	}},
	{"truncated in the middle", func(t *testing.T, path string) {
		writeValid(t, path)
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		truncate(t, path, fi.Size()/2)
	}},
	{"meta pages overwritten", func(t *testing.T, path string) {
		writeValid(t, path)
		overwriteMeta(t, path)
	}},
	{"foreign bbolt file", func(t *testing.T, path string) {
		writeBolt(t, path, func(tx *bolt.Tx) error {
			b, err := tx.CreateBucket([]byte("users"))
			if err != nil {
				return err
			}
			return b.Put([]byte("alice"), []byte("x"))
		})
	}},
	{"meta is a key, not a bucket", func(t *testing.T, path string) {
		writeBolt(t, path, func(tx *bolt.Tx) error {
			if _, err := tx.CreateBucket(bucketHistory); err != nil {
				return err
			}
			return tx.Cursor().Bucket().Put(bucketMeta, []byte("A"))
		})
	}},
	{"history record is not JSON", func(t *testing.T, path string) {
		writeHistoryEntry(t, path, idKey(1), []byte("\x00\x01garbage"))
	}},
	{"history key is not an ID", func(t *testing.T, path string) {
		writeHistoryEntry(t, path, []byte("one"), []byte(`{"id":1}`))
	}},
	{"active pool is garbage", func(t *testing.T, path string) {
		writeBolt(t, path, func(tx *bolt.Tx) error {
			m, err := tx.CreateBucket(bucketMeta)
			if err != nil {
				return err
			}
			if _, err := tx.CreateBucket(bucketHistory); err != nil {
				return err
			}
			return m.Put(keyActive, []byte{0xff, 0xfe, 0})
		})
	}},
}

// TestCorruptFileIsMovedAside: each kind of damage is moved aside as
// state.db.damaged-<time>, logged at Error with both names, and the store
// starts with an empty history on the pool the active-pool file names.
func TestCorruptFileIsMovedAside(t *testing.T) {
	for _, tt := range corruptFiles {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "state.db")
			tt.write(t, path)
			writeFile(t, ActiveFile(path), []byte("B\n")) // the pool that served last
			original, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}

			var logs bytes.Buffer
			logger := hclog.New(&hclog.LoggerOptions{Output: &logs, Level: hclog.Warn})
			s, err := Open(path, time.Second, logger)
			if err != nil {
				t.Fatalf("Open of a damaged file: %v", err)
			}
			defer s.Close()

			if active, err := s.Active(); err != nil || active != "B" {
				t.Errorf("Active() = %q, %v; want B, from the active-pool file", active, err)
			}
			if h, err := s.History(0); err != nil || len(h) != 0 {
				t.Errorf("History(0) = %v, %v; want empty", h, err)
			}
			rec := sampleRecord("B", "A", ResultSwitched)
			if err := s.RecordSwitch(rec); err != nil || rec.ID != 1 {
				t.Errorf("RecordSwitch on the fresh file: ID %d, %v", rec.ID, err)
			}

			aside, _ := filepath.Glob(path + ".damaged-*")
			if len(aside) != 1 {
				t.Fatalf("files moved aside: %v, want one", aside)
			}
			if !strings.HasPrefix(filepath.Base(aside[0]), "state.db.damaged-") ||
				len(filepath.Base(aside[0])) != len("state.db.damaged-20060102T150405Z") {
				t.Errorf("moved-aside name %s does not end in a UTC time", aside[0])
			}
			moved, err := os.ReadFile(aside[0])
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(moved, original) {
				t.Error("moved-aside file differs from the damaged file")
			}
			log := logs.String()
			if !strings.Contains(log, "[ERROR]") || !strings.Contains(log, path) || !strings.Contains(log, aside[0]) {
				t.Errorf("log has no error naming both files:\n%s", log)
			}
		})
	}
}

// TestDamagedFileWithoutActiveRecordRefuses: with the active-pool file
// missing or garbled too, Open refuses, says what to write where, and
// leaves the damaged file untouched.
func TestDamagedFileWithoutActiveRecordRefuses(t *testing.T) {
	for _, record := range []string{"", "\x00\x00garbage pool name!"} {
		for _, tt := range corruptFiles {
			t.Run(fmt.Sprintf("%s, record %q", tt.name, record), func(t *testing.T) {
				path := filepath.Join(t.TempDir(), "state.db")
				tt.write(t, path)
				os.Remove(ActiveFile(path))
				if record != "" {
					writeFile(t, ActiveFile(path), []byte(record))
				}
				original, _ := os.ReadFile(path)
				s, err := Open(path, time.Second, nil)
				if err == nil {
					s.Close()
					t.Fatal("Open succeeded, want a refusal")
				}
				for _, want := range []string{path, "damaged", "echo B > " + ActiveFile(path), "initial pool"} {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error does not contain %q:\n%v", want, err)
					}
				}
				if now, _ := os.ReadFile(path); !bytes.Equal(now, original) {
					t.Error("the damaged file changed")
				}
				if m, _ := filepath.Glob(path + ".damaged-*"); len(m) != 0 {
					t.Errorf("moved aside although Open refused: %v", m)
				}
			})
		}
	}
}

// TestActiveFileFollowsEveryChange: every change of the active pool is
// written to the active-pool file; an aborted switch leaves it.
func TestActiveFileFollowsEveryChange(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s := openTest(t, path)
	defer s.Close()
	read := func() string {
		data, err := os.ReadFile(ActiveFile(path))
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	if err := s.SetActive("A"); err != nil {
		t.Fatal(err)
	}
	if got := read(); got != "A\n" {
		t.Errorf("after SetActive(A): %q", got)
	}
	for _, step := range []struct{ to, result, want string }{
		{"B", ResultSwitched, "B\n"},
		{"A", ResultAborted, "B\n"},
		{"A", ResultForced, "A\n"},
	} {
		if err := s.RecordSwitch(sampleRecord("x", step.to, step.result)); err != nil {
			t.Fatal(err)
		}
		if got := read(); got != step.want {
			t.Errorf("after a %s switch to %s: %q, want %q", step.result, step.to, got, step.want)
		}
	}
	if fi, err := os.Stat(ActiveFile(path)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("active-pool file mode: %v, %v; want 0600", fi.Mode(), err)
	}
	if m, _ := filepath.Glob(filepath.Join(filepath.Dir(path), "*tmp*")); len(m) != 0 {
		t.Errorf("temporary files left: %v", m)
	}
}

// TestActiveFileRewrittenFromStateFile: a readable state file wins over an
// active-pool file that disagrees, is garbled, or is missing.
func TestActiveFileRewrittenFromStateFile(t *testing.T) {
	for _, record := range []string{"B\n", "garbage!!\n", ""} {
		path := filepath.Join(t.TempDir(), "state.db")
		s := openTest(t, path)
		if err := s.SetActive("A"); err != nil {
			t.Fatal(err)
		}
		s.Close()
		os.Remove(ActiveFile(path))
		if record != "" {
			writeFile(t, ActiveFile(path), []byte(record))
		}
		s = openTest(t, path)
		if active, err := s.Active(); err != nil || active != "A" {
			t.Errorf("record %q: Active() = %q, %v; want A", record, active, err)
		}
		s.Close()
		if data, _ := os.ReadFile(ActiveFile(path)); string(data) != "A\n" {
			t.Errorf("record %q: active-pool file now %q, want A", record, data)
		}
	}
}

// TestMissingStateFileStartsOnRecordedPool: a state file removed with its
// active-pool file left starts on that pool, with an empty history.
func TestMissingStateFileStartsOnRecordedPool(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	writeFile(t, ActiveFile(path), []byte("B\n"))
	s := openTest(t, path)
	defer s.Close()
	if active, err := s.Active(); err != nil || active != "B" {
		t.Errorf("Active() = %q, %v; want B", active, err)
	}
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 2 {
		t.Errorf("directory holds %v, want the state file and its active-pool file only", entries)
	}
}

// TestDamageWhileOpen: a state file truncated, overwritten, replaced or
// removed under an open Store never crashes or hangs it: every call
// returns an error wrapping ErrDamaged, one Error line is logged, and
// Close returns.
func TestDamageWhileOpen(t *testing.T) {
	damages := []struct {
		name   string
		damage func(t *testing.T, path string)
	}{
		{"truncated to 0", func(t *testing.T, path string) { truncate(t, path, 0) }},
		{"truncated to 5000 bytes", func(t *testing.T, path string) { truncate(t, path, 5000) }},
		{"overwritten with garbage", func(t *testing.T, path string) {
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			writeFile(t, path, randomBytes(t, int(fi.Size())))
		}},
		{"garbage over the meta pages", func(t *testing.T, path string) {
			overwriteMeta(t, path)
		}},
		{"replaced", func(t *testing.T, path string) {
			writeFile(t, path+".x", randomBytes(t, 8192))
			if err := os.Rename(path+".x", path); err != nil {
				t.Fatal(err)
			}
		}},
		{"removed", func(t *testing.T, path string) { os.Remove(path) }},
	}
	for _, tt := range damages {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "state.db")
			var logs bytes.Buffer
			logger := hclog.New(&hclog.LoggerOptions{Output: &logs, Level: hclog.Debug})
			s, err := Open(path, time.Second, logger)
			if err != nil {
				t.Fatal(err)
			}
			for range 50 {
				if err := s.RecordSwitch(sampleRecord("A", "B", ResultSwitched)); err != nil {
					t.Fatal(err)
				}
			}
			tt.damage(t, path)

			calls := []struct {
				name string
				call func() error
			}{
				{"History", func() error { _, err := s.History(0); return err }},
				{"Active", func() error { _, err := s.Active(); return err }},
				{"RecordSwitch", func() error { return s.RecordSwitch(sampleRecord("B", "A", ResultSwitched)) }},
				{"SetMaintenance", func() error { return s.SetMaintenance(true, "x") }},
				{"Maintenance", func() error { _, _, err := s.Maintenance(); return err }},
				{"Finish", func() error { return s.Finish(1, time.Now()) }},
			}
			for _, c := range calls {
				done := make(chan error, 1)
				go func() { done <- c.call() }()
				select {
				case err := <-done:
					if !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), ActiveFile(path)) {
						t.Errorf("%s after the damage: %v, want an error wrapping ErrDamaged that names %s", c.name, err, ActiveFile(path))
					}
				case <-time.After(10 * time.Second):
					t.Fatalf("%s after the damage: no answer within 10s", c.name)
				}
			}
			closed := make(chan error, 1)
			go func() { closed <- s.Close() }()
			select {
			case err := <-closed:
				if err != nil {
					t.Errorf("Close after the damage: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Close after the damage: no answer within 10s")
			}
			if n := strings.Count(logs.String(), "[ERROR]"); n != 1 {
				t.Errorf("log has %d errors, want 1:\n%s", n, logs.String())
			}
			if data, _ := os.ReadFile(ActiveFile(path)); string(data) != "B\n" {
				t.Errorf("active-pool file %q, want B (the last committed switch)", data)
			}
		})
	}
}

func TestOpenReadOnlyLeavesCorruptFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	writeFile(t, path, randomBytes(t, 64<<10))
	_, err := OpenReadOnly(path, time.Second)
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("OpenReadOnly of a corrupt file = %v, want an error naming %s", err, path)
	}
	if m, _ := filepath.Glob(path + ".damaged-*"); len(m) != 0 {
		t.Errorf("read-only open moved the file aside: %v", m)
	}
}

func TestOpenReadOnlyMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nope", "state.db")
	_, err := OpenReadOnly(path, time.Second)
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), path) {
		t.Errorf("OpenReadOnly(missing) = %v, want a not-exist error naming %s", err, path)
	}
	if _, err := os.Stat(filepath.Dir(path)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("OpenReadOnly created the directory: %v", err)
	}
}

func TestMoveAsideKeepsEarlierCopies(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	for range 3 {
		writeFile(t, path, randomBytes(t, 8<<10))
		writeFile(t, ActiveFile(path), []byte("A\n"))
		s := openTest(t, path)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
	}
	if m, _ := filepath.Glob(path + ".damaged-*"); len(m) != 3 {
		t.Errorf("moved-aside files: %v, want 3", m)
	}
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func truncate(t *testing.T, path string, size int64) {
	t.Helper()
	if err := os.Truncate(path, size); err != nil {
		t.Fatal(err)
	}
}

// writeValid writes a good state file with enough history to span many pages.
func writeValid(t *testing.T, path string) {
	t.Helper()
	s := openTest(t, path)
	if err := s.SetActive("A"); err != nil {
		t.Fatal(err)
	}
	for range 200 {
		rec := sampleRecord("A", "B", ResultAborted)
		rec.Reason = strings.Repeat("x", 200)
		if err := s.RecordSwitch(rec); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// writeBolt writes a well-formed bbolt file whose content fill decides.
func writeBolt(t *testing.T, path string, fill func(*bolt.Tx) error) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(fill); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

func BenchmarkRecordSwitch(b *testing.B) {
	s := openTest(b, filepath.Join(b.TempDir(), "state.db"))
	defer s.Close()
	for b.Loop() {
		if err := s.RecordSwitch(sampleRecord("A", "B", ResultSwitched)); err != nil {
			b.Fatal(err)
		}
	}
}

func TestOpenReadOnlyEmptyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	writeFile(t, path, nil)
	_, err := OpenReadOnly(path, time.Second)
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "empty") {
		t.Errorf("OpenReadOnly(empty file) = %v, want an error saying %s is empty", err, path)
	}
}

// TestActiveFileUnwritableIsNotFatal: a sound state file opens even when
// its active-pool file cannot be written (here a directory is in its
// place); the failure is logged at Error.
func TestActiveFileUnwritableIsNotFatal(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s := openTest(t, path)
	if err := s.SetActive("A"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := os.Remove(ActiveFile(path)); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(ActiveFile(path), 0o700); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	s, err := Open(path, time.Second, hclog.New(&hclog.LoggerOptions{Output: &logs}))
	if err != nil {
		t.Fatalf("Open with an unwritable active-pool file: %v", err)
	}
	defer s.Close()
	if active, err := s.Active(); err != nil || active != "A" {
		t.Errorf("Active() = %q, %v; want A", active, err)
	}
	if !strings.Contains(logs.String(), "[ERROR]") || !strings.Contains(logs.String(), "second record") {
		t.Errorf("no error logged:\n%s", logs.String())
	}
}

// overwriteMeta writes garbage over the file's two meta pages, in place.
func overwriteMeta(t *testing.T, path string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(randomBytes(t, 2*os.Getpagesize()), 0); err != nil {
		t.Fatal(err)
	}
}

// writeHistoryEntry writes a state file whose history holds one entry, key
// and value as given.
func writeHistoryEntry(t *testing.T, path string, key, value []byte) {
	t.Helper()
	writeBolt(t, path, func(tx *bolt.Tx) error {
		if _, err := tx.CreateBucket(bucketMeta); err != nil {
			return err
		}
		h, err := tx.CreateBucket(bucketHistory)
		if err != nil {
			return err
		}
		return h.Put(key, value)
	})
}
