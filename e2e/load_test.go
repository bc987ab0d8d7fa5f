package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// loadSpec is a bounded load: at most Rate×Duration requests, dispatched at
// Rate per second for at most Duration, alternating GET and POST.
type loadSpec struct {
	URL      string
	Workers  int
	Rate     int
	Duration time.Duration
	// PostBody is the body of every POST ("" sends none).
	PostBody string
	// PostHeader is added to every POST; an "Idempotency-Key" in it is
	// replaced by a value unique to the request.
	PostHeader http.Header
}

// loadResult counts the responses of a load by status; any other outcome
// (transport error, unexpected body) is a failure with its detail.
type loadResult struct {
	mu       sync.Mutex
	Sent     int
	ByStatus map[int]int
	Backends map[string]int
	Failures []string
	Elapsed  time.Duration
}

func (r *loadResult) record(status int, backend, failure string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.Sent++
	if status != 0 {
		r.ByStatus[status]++
	}
	if backend != "" {
		r.Backends[backend]++
	}
	if failure != "" {
		r.Failures = append(r.Failures, failure)
	}
}

// String summarises the result, with the first failures.
func (r *loadResult) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d requests in %s (%.0f/s), by status %v, by backend %v, %d failed",
		r.Sent, r.Elapsed.Round(time.Millisecond), float64(r.Sent)/r.Elapsed.Seconds(), r.ByStatus, r.Backends, len(r.Failures))
	for _, f := range r.Failures[:min(len(r.Failures), 10)] {
		b.WriteString("\n  " + f)
	}
	return b.String()
}

// startLoad runs spec in the background for spec.Duration; the returned
// function waits for its end and returns the result.
func startLoad(t *testing.T, spec loadSpec) func() *loadResult {
	t.Helper()
	stop := startLoadUntil(t, spec)
	end := time.NewTimer(spec.Duration)
	return func() *loadResult {
		<-end.C
		return stop()
	}
}

// maxLoad bounds every load in time whatever its caller does.
const maxLoad = 5 * time.Minute

// startLoadUntil runs spec (its Duration ignored) until the returned stop
// is called, for maxLoad at the most; stop returns the result. The load is
// stopped at the end of the test if the test did not.
func startLoadUntil(t *testing.T, spec loadSpec) (stop func() *loadResult) {
	t.Helper()
	// Go's client silently re-sends a failed GET (and a request with an
	// Idempotency-Key) on a reused connection; a plain POST shows the truth.
	// The client side is never restarted here, so its retries hide nothing.
	client := &http.Client{
		Transport: &http.Transport{MaxIdleConnsPerHost: spec.Workers, DisableCompression: true},
		Timeout:   30 * time.Second,
	}
	res := &loadResult{ByStatus: map[int]int{}, Backends: map[string]int{}}
	jobs := make(chan int)
	quit := make(chan struct{})
	var workers sync.WaitGroup
	for range spec.Workers {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for i := range jobs {
				res.record(oneRequest(client, spec, i))
			}
		}()
	}
	begin := time.Now()
	go func() {
		defer close(jobs)
		tick := time.NewTicker(time.Second / time.Duration(spec.Rate))
		defer tick.Stop()
		limit := time.NewTimer(maxLoad)
		defer limit.Stop()
		// Each tick sends every request due by now, so ticks the runtime
		// drops on a busy machine do not lower the rate.
		for i := 0; ; {
			select {
			case <-tick.C:
			case <-quit:
				return
			case <-limit.C:
				return
			}
			due := int(time.Since(begin).Seconds() * float64(spec.Rate))
			for ; i < due; i++ {
				select {
				case jobs <- i:
				case <-quit:
					return
				}
			}
		}
	}()
	var once sync.Once
	stop = func() *loadResult {
		once.Do(func() {
			close(quit)
			workers.Wait()
			client.CloseIdleConnections()
			res.Elapsed = time.Since(begin)
		})
		return res
	}
	t.Cleanup(func() { stop() })
	return stop
}

// oneRequest sends request number i of a load and checks its answer.
func oneRequest(client *http.Client, spec loadSpec, i int) (status int, backend, failure string) {
	method, body := http.MethodGet, ""
	if i%2 == 1 {
		method, body = http.MethodPost, spec.PostBody
	}
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, spec.URL, rd)
	if err != nil {
		return 0, "", err.Error()
	}
	if method == http.MethodPost {
		for k, v := range spec.PostHeader {
			req.Header[k] = slices.Clone(v)
		}
		if req.Header.Get("Idempotency-Key") != "" {
			req.Header.Set("Idempotency-Key", fmt.Sprintf("load-%d", i))
		}
	}
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", fmt.Sprintf("%s #%d after %s: %v", method, i, time.Since(start).Round(time.Millisecond), err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, "", fmt.Sprintf("%s #%d: read body: %v", method, i, err)
	}
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, "", fmt.Sprintf("%s #%d after %s: %s: %.200s", method, i, time.Since(start).Round(time.Millisecond), resp.Status, data)
	}
	var e echo
	if err := json.Unmarshal(data, &e); err != nil || e.Method != method || e.Len != int64(len(body)) {
		return resp.StatusCode, e.Backend, fmt.Sprintf("%s #%d: unexpected body %.200q", method, i, data)
	}
	return resp.StatusCode, e.Backend, ""
}

// requireNoFailure fails the test unless every request of r got its 200.
func requireNoFailure(t *testing.T, r *loadResult) {
	t.Helper()
	t.Logf("load: %s", r)
	if len(r.Failures) > 0 || r.ByStatus[http.StatusOK] != r.Sent || r.Sent == 0 {
		t.Errorf("want every request answered 200 by a backend; statuses %v", slices.Sorted(maps.Keys(r.ByStatus)))
	}
}
