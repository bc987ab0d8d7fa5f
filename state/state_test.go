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
	if m, _ := filepath.Glob(path + ".corrupt-*"); len(m) != 0 {
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
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteAt(randomBytes(t, 2*os.Getpagesize()), 0); err != nil {
			t.Fatal(err)
		}
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
		writeBolt(t, path, func(tx *bolt.Tx) error {
			if _, err := tx.CreateBucket(bucketMeta); err != nil {
				return err
			}
			h, err := tx.CreateBucket(bucketHistory)
			if err != nil {
				return err
			}
			return h.Put(idKey(1), []byte("\x00\x01garbage"))
		})
	}},
	{"history key is not an ID", func(t *testing.T, path string) {
		writeBolt(t, path, func(tx *bolt.Tx) error {
			if _, err := tx.CreateBucket(bucketMeta); err != nil {
				return err
			}
			h, err := tx.CreateBucket(bucketHistory)
			if err != nil {
				return err
			}
			return h.Put([]byte("one"), []byte(`{"id":1}`))
		})
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

func TestCorruptFileIsMovedAside(t *testing.T) {
	for _, tt := range corruptFiles {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "state.db")
			tt.write(t, path)
			original, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}

			var logs bytes.Buffer
			logger := hclog.New(&hclog.LoggerOptions{Output: &logs, Level: hclog.Warn})
			s, err := Open(path, time.Second, logger)
			if err != nil {
				t.Fatalf("Open of a corrupt file: %v", err)
			}
			defer s.Close()

			if active, err := s.Active(); err != nil || active != "" {
				t.Errorf("Active() = %q, %v; want empty", active, err)
			}
			if h, err := s.History(0); err != nil || len(h) != 0 {
				t.Errorf("History(0) = %v, %v; want empty", h, err)
			}
			rec := sampleRecord("A", "B", ResultSwitched)
			if err := s.RecordSwitch(rec); err != nil || rec.ID != 1 {
				t.Errorf("RecordSwitch on the fresh file: ID %d, %v", rec.ID, err)
			}

			aside, _ := filepath.Glob(path + ".corrupt-*")
			if len(aside) != 1 {
				t.Fatalf("files moved aside: %v, want one", aside)
			}
			if !strings.HasPrefix(filepath.Base(aside[0]), "state.db.corrupt-") ||
				len(filepath.Base(aside[0])) != len("state.db.corrupt-20060102T150405Z") {
				t.Errorf("moved-aside name %s does not end in a UTC time", aside[0])
			}
			moved, err := os.ReadFile(aside[0])
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(moved, original) {
				t.Error("moved-aside file differs from the corrupt file")
			}
			log := logs.String()
			if !strings.Contains(log, "[WARN]") || !strings.Contains(log, path) || !strings.Contains(log, aside[0]) {
				t.Errorf("log does not warn with both names:\n%s", log)
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
	if m, _ := filepath.Glob(path + ".corrupt-*"); len(m) != 0 {
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
		s := openTest(t, path)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
	}
	if m, _ := filepath.Glob(path + ".corrupt-*"); len(m) != 3 {
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
