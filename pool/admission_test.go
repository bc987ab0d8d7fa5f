package pool

import (
	"net/http"
	"testing"
	"time"

	"github.com/turnout/turnout/config"
	"github.com/turnout/turnout/healthcheck"
	"github.com/turnout/turnout/internal/testsock"
	"github.com/turnout/turnout/upstream"
)

// upObserver signals each server that the pool has seen come up; the pool
// calls it after it has acted on the change (slow start included).
type upObserver chan *Server

func (o upObserver) HealthChanged(_ *Pool, s *Server, prev healthcheck.State, snap healthcheck.Snapshot) {
	if prev != healthcheck.Up && snap.State == healthcheck.Up {
		select {
		case o <- s:
		default: // a test that does not listen
		}
	}
}

// newObservedPool returns a pool whose servers start up (trusted) and are
// checked only once an hour, so that the test alone decides their state,
// and the servers it sees come up.
func newObservedPool(t *testing.T, specs ...config.Server) (*Pool, upObserver) {
	t.Helper()
	ups := make(upObserver, 16)
	p := New(Options{Name: "A", Observer: ups, Transport: TransportOptions{DialTimeout: time.Second, MaxIdle: 4}})
	p.SetServers(specs, tcpHealth(), healthcheck.Up, time.Hour)
	t.Cleanup(p.Close)
	return p, ups
}

// bringUp puts s through probation to up with a passing check, as a server
// that came back does, and waits until the pool has acted on it.
func bringUp(t *testing.T, s *Server, ups upObserver) {
	t.Helper()
	s.Monitor().Probation()
	select {
	case got := <-ups:
		if got != s {
			t.Fatalf("%s came up, want %s", got.Key(), s.Key())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("server %s did not come up: %+v", s.Key(), s.Monitor().Snapshot())
	}
}

func TestAServerThatComesUpStartsSlowAndGrowsWithAnswers(t *testing.T) {
	p, ups := newObservedPool(t, spec("127.0.0.1:1", 1))
	s := p.Servers()[0]
	if s.Limit() != -1 {
		t.Fatalf("a trusted server starts with limit %d, want none (-1)", s.Limit())
	}
	bringUp(t, s, ups)
	if s.Limit() != startLimit {
		t.Fatalf("limit after coming up = %d, want %d", s.Limit(), startLimit)
	}
	for i := range startLimit {
		if p.Pick(nil) == nil {
			t.Fatalf("pick %d of %d found no slot", i+1, startLimit)
		}
	}
	if p.Pick(nil) != nil {
		t.Fatalf("pick %d found a slot past the limit of %d", startLimit+1, startLimit)
	}
	// Each response head frees its slot and adds one: the limit doubles
	// every round trip.
	for range startLimit {
		s.answered()
		s.done()
	}
	if s.Limit() != 2*startLimit {
		t.Fatalf("limit after %d answers = %d, want %d", startLimit, s.Limit(), 2*startLimit)
	}
	for s.Limit() != -1 {
		if p.Pick(nil) == nil {
			t.Fatalf("no slot with %d pending under limit %d", s.pending.Load(), s.Limit())
		}
		s.answered()
		s.done()
	}
	if s.served.Load() > openLimit {
		t.Fatalf("the limit was lifted after %d answers, want at most %d", s.served.Load(), openLimit)
	}
}

func TestTheLineIsOldestFirst(t *testing.T) {
	p := newTestPool(t, spec("127.0.0.1:1", 1))
	waiters := map[uint64]*Waiter{}
	for _, ticket := range []uint64{3, 1, 2} {
		waiters[ticket] = NewWaiter(ticket)
		p.Enqueue(waiters[ticket])
	}
	if p.Waiting() != 3 {
		t.Fatalf("waiting = %d, want 3", p.Waiting())
	}
	if p.Pick(nil) != nil {
		t.Fatal("a new request got a slot while others wait in line")
	}
	for _, want := range []uint64{1, 2, 3} {
		p.wake(1)
		for ticket, w := range waiters {
			select {
			case <-w.Ready():
				if ticket != want {
					t.Fatalf("woke ticket %d, want %d", ticket, want)
				}
				delete(waiters, ticket)
			default:
			}
		}
	}
	if p.Waiting() != 0 || p.Pick(nil) == nil {
		t.Fatalf("after the line emptied: waiting %d, and no slot for a new request", p.Waiting())
	}
}

func TestAWakeTheWaiterDoesNotUseGoesToTheNext(t *testing.T) {
	p := newTestPool(t, spec("127.0.0.1:1", 1))
	first, second := NewWaiter(1), NewWaiter(2)
	p.Enqueue(first)
	p.Enqueue(second)
	p.wake(1)        // first is woken…
	p.Dequeue(first) // …but gives up (its client left)
	select {
	case <-second.Ready():
	default:
		t.Fatal("the wake the first waiter did not use was lost")
	}
}

func TestAFullBacklogIsAnOverloadNotADeadServer(t *testing.T) {
	path, accept := testsock.FullBacklog(t)
	p := newTestPool(t, config.Server{Network: "unix", Address: path, Weight: 1})
	s := p.Pick(nil)
	req, _ := http.NewRequest(http.MethodPost, "http://upstream/", nil)
	_, _, err := exchange(s, req, []byte("POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 0\r\n\r\n"))
	if !upstream.IsOverload(err) || upstream.IsDialError(err) {
		t.Fatalf("error %v, want an overload (and not a dial error, which would mark the server down)", err)
	}
	if s.State() != healthcheck.Up || s.InFlight() != 0 || s.Overloads() != 1 {
		t.Fatalf("after a full backlog: state %s, in flight %d, overloads %d; want up, 0, 1", s.State(), s.InFlight(), s.Overloads())
	}
	if p.Pick(nil) != nil {
		t.Fatal("a server whose backlog just overflowed got a new request at once")
	}
	// The backlog gets room; the gate reopens after its backoff and wakes
	// the line.
	accept()
	w := NewWaiter(1)
	if p.Enqueue(w) && p.PickQueued(nil) != nil {
		t.Fatal("the gate was open right after the overflow")
	}
	select {
	case <-w.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("the line was never woken after the overflow's backoff")
	}
	if got := p.PickQueued(nil); got != s || s.Limit() < 1 {
		t.Fatalf("after the backoff: picked %v, limit %d; want the server, limit >= 1", got, s.Limit())
	}
}
