package healthcheck

import (
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/turnout/turnout/config"
	"github.com/turnout/turnout/internal/testlog"
)

// waitLimit bounds every wait for an event that normally takes milliseconds.
const waitLimit = 10 * time.Second

// await returns the next value from ch, failing the test with what when
// none comes within waitLimit.
func await[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitLimit):
		t.Fatal(what)
		var zero T
		return zero
	}
}

type event struct {
	prev State
	s    Snapshot
}

// recorder is an Observer that queues every event for the test.
type recorder struct{ ch chan event }

func newRecorder() *recorder { return &recorder{ch: make(chan event, 10000)} }

func (r *recorder) HealthChanged(_ *Monitor, prev State, s Snapshot) {
	r.ch <- event{prev, s}
}

// next returns the next event, failing the test after the deadline.
func (r *recorder) next(t *testing.T) event {
	t.Helper()
	return await(t, r.ch, "no health event within the deadline")
}

// until returns the first event for which ok holds.
func (r *recorder) until(t *testing.T, ok func(event) bool) event {
	t.Helper()
	for {
		if e := r.next(t); ok(e) {
			return e
		}
	}
}

// scripted is a backend that answers each request with the next status the
// test feeds it, so the test controls every check's result.
type scripted struct {
	answers chan int
}

func startScripted(t *testing.T) (*scripted, config.Server) {
	t.Helper()
	b := &scripted{answers: make(chan int)}
	_, s := startHTTP(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case code := <-b.answers:
			w.WriteHeader(code)
		case <-r.Context().Done():
		}
	})
	return b, s
}

// feed makes the next check get code and returns that check's event.
func (b *scripted) feed(t *testing.T, rec *recorder, code int) event {
	t.Helper()
	select {
	case b.answers <- code:
	case <-time.After(waitLimit):
		t.Fatal("no check reached the backend within the deadline")
	}
	return rec.next(t)
}

func startMonitor(t *testing.T, o Options) (*Monitor, *recorder) {
	t.Helper()
	rec := newRecorder()
	o.Observer = rec
	if o.Interval == 0 {
		o.Interval = 10 * time.Millisecond
	}
	m := NewMonitor(o)
	m.Start()
	t.Cleanup(m.Close)
	return m, rec
}

func TestStateMachine(t *testing.T) {
	type step struct {
		code   int
		state  State
		passes int
		fails  int
	}
	cases := []struct {
		name    string
		initial State
		steps   []step
	}{
		{name: "probation to up after rise", initial: Probation, steps: []step{
			{200, Probation, 1, 0}, {200, Probation, 2, 0}, {200, Up, 3, 0}, {200, Up, 4, 0},
		}},
		{name: "probation failure resets passes", initial: Probation, steps: []step{
			{200, Probation, 1, 0}, {503, Probation, 0, 1}, {200, Probation, 1, 0},
		}},
		{name: "flapping never reaches up", initial: Probation, steps: []step{
			{200, Probation, 1, 0}, {503, Probation, 0, 1}, {200, Probation, 1, 0},
			{200, Probation, 2, 0}, {503, Probation, 0, 1}, {200, Probation, 1, 0},
			{503, Probation, 0, 1}, {200, Probation, 1, 0}, {200, Probation, 2, 0}, {200, Up, 3, 0},
		}},
		{name: "up to down after fall", initial: Up, steps: []step{
			{503, Up, 0, 1}, {503, Down, 0, 2}, {503, Down, 0, 3},
		}},
		{name: "pass resets fails while up", initial: Up, steps: []step{
			{503, Up, 0, 1}, {200, Up, 1, 0}, {503, Up, 0, 1}, {503, Down, 0, 2},
		}},
		{name: "down to up after rise", initial: Up, steps: []step{
			{503, Up, 0, 1}, {503, Down, 0, 2}, {200, Down, 1, 0}, {503, Down, 0, 1},
			{200, Down, 1, 0}, {200, Down, 2, 0}, {200, Up, 3, 0},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b, s := startScripted(t)
			m, rec := startMonitor(t, Options{Server: s, Health: testHealth(), Initial: tc.initial})
			for i, st := range tc.steps {
				before := m.State()
				e := b.feed(t, rec, st.code)
				if e.prev != before || e.s.State != st.state || e.s.Passes != st.passes || e.s.Fails != st.fails {
					t.Fatalf("step %d (%d): got %v→%v passes %d fails %d, want %v→%v passes %d fails %d",
						i, st.code, e.prev, e.s.State, e.s.Passes, e.s.Fails, before, st.state, st.passes, st.fails)
				}
				if m.State() != st.state {
					t.Fatalf("step %d: State() = %v, want %v", i, m.State(), st.state)
				}
				wantErr := ""
				if st.code != 200 {
					wantErr = "status 503, want 200-399"
				}
				if e.s.LastError != wantErr || e.s.CheckedAt.IsZero() || e.s.Server != s.Key() {
					t.Fatalf("step %d: snapshot %+v", i, e.s)
				}
			}
		})
	}
}

func TestWaitClosesOnStateChange(t *testing.T) {
	b, s := startScripted(t)
	m, rec := startMonitor(t, Options{Server: s, Health: testHealth(), Initial: Up})
	wait := m.Wait()
	b.feed(t, rec, 503)
	select {
	case <-wait:
		t.Fatal("Wait closed without a state change")
	default:
	}
	b.feed(t, rec, 503)
	select {
	case <-wait:
	default:
		t.Fatal("Wait not closed after Up→Down")
	}
	if m.Wait() == wait {
		t.Fatal("Wait returned the closed channel again")
	}
}

// A check that started before Probation must not count, even if it passes.
func TestProbationDiscardsStartedCheck(t *testing.T) {
	arrived := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	_, s := startHTTP(t, func(w http.ResponseWriter, r *http.Request) {
		first := false
		once.Do(func() { first = true })
		if first {
			close(arrived)
			<-release
			return // 200: a stale pass
		}
		w.WriteHeader(503)
	})
	h := testHealth()
	h.Rise = 1
	m, rec := startMonitor(t, Options{Server: s, Health: h, Initial: Down})
	await(t, arrived, "first check never reached the backend")
	m.Probation()
	if e := rec.next(t); e.s.State != Probation || e.prev != Down {
		t.Fatalf("Probation() event = %v→%v", e.prev, e.s.State)
	}
	close(release)
	e := rec.next(t)
	if e.s.State != Probation || e.s.Passes != 0 || e.s.Fails != 1 {
		t.Fatalf("first result after Probation() = %+v, want the fresh check's failure (stale pass counted?)", e.s)
	}
}

func TestMarkDown(t *testing.T) {
	b, s := startScripted(t)
	h := testHealth()
	h.Rise = 2
	m, rec := startMonitor(t, Options{Server: s, Health: h, Initial: Up})
	b.feed(t, rec, 200)

	m.MarkDown(errors.New("connect: connection refused"))
	if m.State() != Down {
		t.Fatalf("State() after MarkDown = %v, want down", m.State())
	}
	e := rec.next(t)
	if e.prev != Up || e.s.State != Down || e.s.Passes != 0 || e.s.LastError != "connect: connection refused" {
		t.Fatalf("MarkDown event = %v→%+v", e.prev, e.s)
	}
	// Checks go on and bring it back after rise passes.
	b.feed(t, rec, 200)
	if e := b.feed(t, rec, 200); e.s.State != Up {
		t.Fatalf("after 2 passes state = %v, want up", e.s.State)
	}
}

func TestMarkDownOutsideUpOnlySetsError(t *testing.T) {
	for _, st := range []State{Probation, Down} {
		t.Run(st.String(), func(t *testing.T) {
			m := NewMonitor(Options{Server: config.Server{Network: "tcp", Address: "127.0.0.1:1"}, Health: testHealth(), Initial: st})
			defer m.Close()
			m.MarkDown(errors.New("reset"))
			if s := m.Snapshot(); s.State != st || s.LastError != "reset" || s.Fails != 0 {
				t.Fatalf("snapshot after MarkDown = %+v", s)
			}
		})
	}
}

func TestSetIntervalReschedules(t *testing.T) {
	_, s := startHTTP(t, func(w http.ResponseWriter, r *http.Request) {})
	m, rec := startMonitor(t, Options{Server: s, Health: testHealth(), Initial: Up, Interval: time.Hour})
	rec.next(t) // the first check, after at most 1s of jitter; the next is an hour away
	m.SetInterval(10 * time.Millisecond)
	if e := rec.next(t); e.s.Passes != 2 {
		t.Fatalf("second check snapshot = %+v", e.s)
	}
}

func TestSetHealthKeepsState(t *testing.T) {
	_, s := startHTTP(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })
	h := testHealth()
	m, rec := startMonitor(t, Options{Server: s, Health: h, Initial: Up})
	rec.next(t)
	h.ExpectBody = "ready"
	h.Fall = 1
	m.SetHealth(h)
	if st := m.State(); st != Up {
		t.Fatalf("SetHealth changed state to %v", st)
	}
	e := rec.until(t, func(e event) bool { return e.s.State == Down })
	if e.s.LastError != `body lacks "ready"` || e.s.Fails != 1 {
		t.Fatalf("down snapshot = %+v", e.s)
	}
}

func TestCloseWithHungCheck(t *testing.T) {
	s, arrived := hangingBackend(t)
	h := testHealth()
	h.Timeout = config.Duration(time.Hour)
	m := NewMonitor(Options{Server: s, Health: h, Initial: Probation})
	m.Start()
	await(t, arrived, "check never reached the backend")
	closed := make(chan struct{})
	go func() {
		m.Close()
		m.Close() // idempotent
		close(closed)
	}()
	await(t, closed, "Close did not return with a hung check in flight")
	if s := m.Snapshot(); !s.CheckedAt.IsZero() {
		t.Fatalf("the cancelled check was recorded: %+v", s)
	}
}

func TestCloseNeverStarted(t *testing.T) {
	m := NewMonitor(Options{Server: config.Server{Network: "tcp", Address: "127.0.0.1:1"}, Health: testHealth()})
	m.Close()
	m.Start() // after Close: no goroutine
	m.Close()
}

func TestDrainStopsChecks(t *testing.T) {
	b, s := startScripted(t)
	m, rec := startMonitor(t, Options{Server: s, Health: testHealth(), Initial: Up})
	b.feed(t, rec, 200)
	wait := m.Wait()
	m.Drain()
	<-wait
	if e := rec.next(t); e.s.State != Draining || e.prev != Up || m.State() != Draining {
		t.Fatalf("Drain event = %v→%v", e.prev, e.s.State)
	}
	// The goroutine exits by itself: Close has nothing left to cancel.
	await(t, m.done, "check goroutine still running after Drain")
	m.Probation()
	if st := m.State(); st != Draining {
		t.Fatalf("Probation() revived a drained server: %v", st)
	}
}

func TestLogsStateChanges(t *testing.T) {
	var buf testlog.Buffer
	b, s := startScripted(t)
	h := testHealth()
	h.Rise, h.Fall = 1, 1
	logger := hclog.New(&hclog.LoggerOptions{Output: &buf, Level: hclog.Info})
	m, rec := startMonitor(t, Options{Server: s, Health: h, Initial: Probation, Logger: logger})
	b.feed(t, rec, 200)
	b.feed(t, rec, 200)
	b.feed(t, rec, 503)
	m.Close()
	out := buf.String()
	if n := strings.Count(out, "\n"); n != 2 {
		t.Fatalf("want 2 log lines (up, down), got:\n%s", out)
	}
	for _, want := range []string{"server up: server=" + s.Key() + " passes=1", `server down: server=` + s.Key() + ` fails=1 error="status 503, want 200-399"`} {
		if !strings.Contains(out, want) {
			t.Fatalf("log lacks %q:\n%s", want, out)
		}
	}
}

func TestSlotted(t *testing.T) {
	base := time.Unix(1700000000, 123456789)
	cases := []struct {
		interval time.Duration
		t        time.Time
		want     time.Time
	}{
		{interval: time.Second, t: base, want: time.Unix(1700000000, 100000000)}, // nearest, down
		{interval: time.Second, t: base.Add(30 * time.Millisecond), want: time.Unix(1700000000, 200000000)},
		{interval: time.Hour, t: base.Add(50 * time.Millisecond), want: time.Unix(1700000000, 200000000)}, // slot capped at 100ms
		{interval: 10 * time.Millisecond, t: base, want: time.Unix(1700000000, 123000000)},
		{interval: 10, t: base, want: base}, // too short to slot
	}
	for _, tc := range cases {
		if got := slotted(tc.t, tc.interval); !got.Equal(tc.want) {
			t.Errorf("slotted(%v, %v) = %v, want %v", tc.t, tc.interval, got, tc.want)
		}
	}
}
