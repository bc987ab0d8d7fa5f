package healthcheck

import (
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/turnout/turnout/config"
	"github.com/turnout/turnout/internal/testsock"
)

func TestADownServerComesUpOnOnePassWhileRequestsWait(t *testing.T) {
	for _, urgent := range []bool{false, true} {
		b, s := startScripted(t)
		var waiting atomic.Bool
		m, rec := startMonitor(t, Options{Server: s, Health: testHealth(), Initial: Up, Urgent: waiting.Load})
		b.feed(t, rec, 503)
		if e := b.feed(t, rec, 503); e.s.State != Down {
			t.Fatalf("after fall failures: %v, want down", e.s.State)
		}
		waiting.Store(urgent)
		m.Hurry()
		e := b.feed(t, rec, 200)
		if want := map[bool]State{false: Down, true: Up}[urgent]; e.s.State != want {
			t.Fatalf("requests waiting %v: one pass left the server %v, want %v", urgent, e.s.State, want)
		}
	}
}

func TestACheckThatTimesOutWhileTheServerAnswersIsNotAFailure(t *testing.T) {
	for _, answering := range []bool{false, true} {
		_, s := startHTTP(t, func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
		h := testHealth()
		h.Timeout, h.Fall = config.Duration(20*time.Millisecond), 1
		var served atomic.Uint64
		count := func() uint64 {
			if answering {
				return served.Add(1) // real requests got answers during the check
			}
			return served.Load()
		}
		_, rec := startMonitor(t, Options{Server: s, Health: h, Initial: Up, Served: count})
		e := rec.next(t)
		if answering && (e.s.State != Up || !strings.Contains(e.s.LastError, "busy")) {
			t.Fatalf("a timeout while answering requests: %v %q, want up and a busy note", e.s.State, e.s.LastError)
		}
		if !answering && e.s.State != Down {
			t.Fatalf("a timeout with no answer to anything: %v %q, want down", e.s.State, e.s.LastError)
		}
	}
}

func TestACheckThatFindsTheBacklogFullIsNotAFailure(t *testing.T) {
	path, _ := testsock.FullBacklog(t)
	h := testHealth()
	h.Type, h.Fall = "tcp", 1
	_, rec := startMonitor(t, Options{Server: config.Server{Network: "unix", Address: path}, Health: h, Initial: Up})
	for range 3 {
		if e := rec.next(t); e.s.State != Up || !strings.Contains(e.s.LastError, "backlog full") {
			t.Fatalf("a check that found the backlog full: %v %q, want up and a note", e.s.State, e.s.LastError)
		}
	}
}

func TestAHostTheAppRejectsIsNamedWithTheFix(t *testing.T) {
	s := startUnix(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Host != "app.example" { // as Django does for a Host not in ALLOWED_HOSTS
			w.WriteHeader(http.StatusBadRequest)
		}
	})
	err := NewChecker(s, testHealth()).Check(t.Context())
	if err == nil || !strings.Contains(err.Error(), `Host "localhost"`) || !strings.Contains(err.Error(), "[health] host") {
		t.Fatalf("check = %v, want the Host it sent and the setting that changes it", err)
	}
	h := testHealth()
	h.Host = "app.example"
	if err := NewChecker(s, h).Check(t.Context()); err != nil {
		t.Fatalf("with [health] host set: %v", err)
	}
}
