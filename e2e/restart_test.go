package e2e

import (
	"net/http"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestRestartActivePoolUnderLoad is the main promise: both servers of
// the active pool (one on TCP, one on a unix socket) stop gracefully and
// come back 1.5 s later, under 300 req/s of GET and POST for 8 s, and every
// request gets its 200.
func TestRestartActivePoolUnderLoad(t *testing.T) {
	a1 := newBackend(t, "a1", "tcp")
	a2 := newBackend(t, "a2", "unix")
	tn := startTurnout(t, settings{A: []string{a1.Spec(), a2.Spec()}, Proxy: `hold_timeout = "10s"`})

	wait := startLoad(t, loadSpec{URL: tn.URL + "/", Workers: 800, Rate: 300, Duration: 8 * time.Second, PostBody: "hello from the load"})
	<-time.After(2 * time.Second) // let the load run before the outage
	var stopped sync.WaitGroup
	for _, b := range []*backend{a1, a2} {
		stopped.Add(1)
		go func() {
			defer stopped.Done()
			b.Stop(syscall.SIGTERM)
		}()
	}
	stopped.Wait()
	down := time.Now()
	<-time.After(1500 * time.Millisecond) // the restart takes 1.5 s
	a1.Start()
	a2.Start()
	t.Logf("both backends were down for %s", time.Since(down).Round(time.Millisecond))
	requireNoFailure(t, wait())
}

// TestCrashOneServerUnderLoad kills one of the two active servers with
// SIGKILL mid-load: the other one takes every request.
func TestCrashOneServerUnderLoad(t *testing.T) {
	a1 := newBackend(t, "a1", "tcp")
	a2 := newBackend(t, "a2", "tcp")
	tn := startTurnout(t, settings{A: []string{a1.Spec(), a2.Spec()}, Proxy: `hold_timeout = "10s"`})

	// A non-idempotent POST already inside the killed process cannot be
	// saved by anyone: it is answered 502, since turnout cannot know
	// whether the app acted on it. So in this test the POSTs carry an
	// Idempotency-Key, which makes them safe to retry on the other server.
	wait := startLoad(t, loadSpec{URL: tn.URL + "/", Workers: 200, Rate: 300, Duration: 5 * time.Second,
		PostBody: "hello from the load", PostHeader: http.Header{"Idempotency-Key": {"set per request"}}})
	<-time.After(2 * time.Second) // the crash comes mid-load
	a1.Stop(syscall.SIGKILL)
	res := wait()
	requireNoFailure(t, res)
	if res.Backends["a2"] == 0 {
		t.Errorf("a2 answered nothing")
	}
}
