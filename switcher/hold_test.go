package switcher

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/turnout/turnout/state"
)

// gate is a backend handler that keeps each request until the test lets
// it go, recording the order in which requests arrived.
type gate struct {
	mu      sync.Mutex
	arrived []int
	release chan struct{}
	changed chan struct{} // closed and replaced at each arrival
}

func newGate() *gate {
	return &gate{release: make(chan struct{}, 1000), changed: make(chan struct{})}
}

func (g *gate) serve(w http.ResponseWriter, r *http.Request) {
	id, _ := strconv.Atoi(r.URL.Query().Get("id"))
	g.mu.Lock()
	g.arrived = append(g.arrived, id)
	close(g.changed)
	g.changed = make(chan struct{})
	g.mu.Unlock()
	<-g.release
	fmt.Fprint(w, "ok ", id)
}

// waitArrived waits until n requests arrived and returns their ids.
func (g *gate) waitArrived(t *testing.T, n int) []int {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		g.mu.Lock()
		got, changed := append([]int(nil), g.arrived...), g.changed
		g.mu.Unlock()
		if len(got) >= n {
			return got
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("%d requests arrived, want %d", len(got), n)
		}
	}
}

func TestHeldRequestsGoOutOldestFirstAtThePaceTheAppAnswers(t *testing.T) {
	g := newGate()
	a := newBackend(t, "A", g.serve)
	b := newBackend(t, "B", nil)
	h := startSwitcher(t, fastChecks+`hold_timeout = "30s"`, []string{a.addr}, []string{b.addr})
	a.stop()
	const n = 40
	codes := make(chan int, n)
	for i := range n {
		go func() {
			code, _ := do(t, http.MethodPost, h.proxy+"/?id="+strconv.Itoa(i), "x")
			codes <- code
		}()
		// Each is held before the next is sent, so i is its age.
		waitFor(t, "request "+strconv.Itoa(i)+" held", func() bool { return h.sw.Held() == int64(i+1) })
	}
	a.start()
	// A server that comes back starts slow: the eight oldest go first, and
	// no other until one of them is answered.
	first := g.waitArrived(t, 8)
	for _, id := range first {
		if id >= 8 {
			t.Fatalf("the first requests out were %v, want the eight oldest (0-7)", first)
		}
	}
	if srv := h.sw.Pool("A").Servers()[0]; srv.Limit() != 8 || h.sw.Held() != n-8 {
		t.Fatalf("with eight unanswered: limit %d, held %d; want 8, %d", srv.Limit(), h.sw.Held(), n-8)
	}
	// One answer lets two more go (its slot, and one more for the limit).
	g.release <- struct{}{}
	if next := g.waitArrived(t, 10)[8:]; next[0] >= 10 || next[1] >= 10 {
		t.Fatalf("after one answer %v went out, want the next oldest (8, 9)", next)
	}
	for range n - 1 {
		g.release <- struct{}{}
	}
	for range n {
		if code := <-codes; code != http.StatusOK {
			t.Fatalf("a held request got %d, want 200", code)
		}
	}
}

func TestPauseHoldsEveryRequestUntilResume(t *testing.T) {
	a := newBackend(t, "A", nil)
	b := newBackend(t, "B", nil)
	h := startSwitcher(t, fastChecks, []string{a.addr}, []string{b.addr})
	if _, err := h.sw.Pause(time.Minute, "migrating", "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.sw.Pause(time.Minute, "again", "test"); err == nil {
		t.Fatal("a second pause was accepted while one is in force")
	}
	results := make(chan string, 4)
	for i := range 4 {
		go func() {
			code, body := do(t, []string{http.MethodPost, http.MethodGet}[i%2], h.proxy+"/", "x")
			results <- fmt.Sprint(code, " ", body)
		}()
	}
	waitFor(t, "four held requests", func() bool { return h.sw.Held() == 4 })
	if st := h.sw.Status(); st.Paused == nil || st.Paused.Message != "migrating" || a.hits.Load() != 0 {
		t.Fatalf("while paused: status %+v, app hits %d; want the pause shown and no request sent", st.Paused, a.hits.Load())
	}
	if !h.sw.Resume("test") || h.sw.Resume("test") {
		t.Fatal("resume did not report exactly one pause ended")
	}
	for range 4 {
		if r := <-results; !strings.HasPrefix(r, "200 A ") {
			t.Fatalf("a paused request got %q, want 200 from A", r)
		}
	}
	hist, err := h.sw.History(2)
	if err != nil || len(hist) != 2 || hist[0].Result != state.ResultResumed || hist[1].Result != state.ResultPaused || hist[1].Reason != "migrating" {
		t.Fatalf("history %+v (%v), want paused then resumed", hist, err)
	}
}

func TestAPausePastItsMaxServesThePageUntilResume(t *testing.T) {
	a := newBackend(t, "A", nil)
	b := newBackend(t, "B", nil)
	h := startSwitcher(t, fastChecks, []string{a.addr}, []string{b.addr})
	if _, err := h.sw.Pause(50*time.Millisecond, "back soon", "test"); err != nil {
		t.Fatal(err)
	}
	for range 2 { // one held when --max passes, one after
		if code, body := do(t, http.MethodPost, h.proxy+"/", "x"); code != http.StatusServiceUnavailable || !strings.Contains(body, "back soon") {
			t.Fatalf("past --max: %d %.80q, want 503 with the pause's message", code, body)
		}
	}
	if a.hits.Load() != 0 {
		t.Fatalf("the app got %d requests during the pause", a.hits.Load())
	}
	h.sw.Resume("test")
	if code, body := do(t, http.MethodPost, h.proxy+"/", "x"); code != 200 || body != "A POST" {
		t.Fatalf("after resume: %d %q", code, body)
	}
}
