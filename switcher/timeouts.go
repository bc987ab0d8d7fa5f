package switcher

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/turnout/turnout/internal/deadline"
)

// The timeouts of a request's body and of a response's, and what is logged
// when a response is cut short. The front bounds the bodies it reads itself
// (frontBody) and the lean upstream client the responses it reads (pool's
// h1Conn.Read) with socket deadlines; what net/http reads, on either side,
// is bounded here.

// bodyTimeoutError is a request body that stopped coming: no byte of it
// for client_body_timeout. The client gets 408 and its connection is
// closed.
type bodyTimeoutError struct{ after time.Duration }

func (e *bodyTimeoutError) Error() string {
	return fmt.Sprintf("the client sent no more of the request body for %v (client_body_timeout)", e.after)
}
func (e *bodyTimeoutError) Timeout() bool { return true }

// answerBodyError answers a request whose body could not be read: 408 when
// it stopped coming, 400 when it ended short. Either way the connection
// closes: what comes next on it is not a request.
func answerBodyError(w http.ResponseWriter, err error) {
	w.Header().Set("Connection", "close")
	var timeout *bodyTimeoutError
	if errors.As(err, &timeout) {
		http.Error(w, "request body timed out: "+timeout.Error(), http.StatusRequestTimeout)
		return
	}
	http.Error(w, "request body shorter than its Content-Length", http.StatusBadRequest)
}

// timedBody bounds the gaps in a request body that net/http's server reads
// (chunked, larger than the front takes, or on a connection handed to
// net/http), which has a timeout for the whole request only: each read may
// wait d. Read runs on the goroutine of whoever sends the body (net/http's
// transport writes it on its own); expired may be asked from another.
type timedBody struct {
	rc  io.ReadCloser
	ctl *http.ResponseController
	d   time.Duration
	err error

	until atomic.Int64 // while a read waits: its deadline, in Unix nanoseconds
}

func (b *timedBody) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	until := time.Now().Add(b.d)
	b.until.Store(until.UnixNano())
	b.ctl.SetReadDeadline(until)
	n, err := b.rc.Read(p)
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		// The deadline stays: net/http's server, which would read the
		// rest of the body before it closes, gives up at once.
		err = &bodyTimeoutError{b.d}
		b.err = err
	case err != nil:
		// net/http reads the connection in the background once the body
		// has ended: with no deadline, as it set none.
		b.ctl.SetReadDeadline(time.Time{})
		b.until.Store(0)
		b.err = err
	default:
		b.until.Store(0)
	}
	return n, err
}

// expired reports whether a read of the body has waited past its deadline
// (and failed, or is about to). net/http's server cancels the request's
// context as the read fails, so that the transport may report that
// instead of the read's error.
func (b *timedBody) expired() bool {
	until := b.until.Load()
	return until != 0 && time.Now().UnixNano() >= until
}

func (b *timedBody) Close() error { return b.rc.Close() }

// cutError is a response cut short: the upstream closed or stalled, the
// client went away, or a drain's time ran out. The access log says so, and
// the client sees a broken response rather than a short one that looks
// whole.
type cutError struct {
	why        string
	sent, want int64 // body bytes sent, and the length announced (-1: none)
}

func (e *cutError) Error() string {
	if e.want >= 0 {
		return fmt.Sprintf("%s after %d of %d bytes", e.why, e.sent, e.want)
	}
	return fmt.Sprintf("%s after %d bytes", e.why, e.sent)
}

// cutReason says why an upstream read failed, for the access log.
func cutReason(err error, readTimeout time.Duration) string {
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return "upstream closed"
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, errUpstreamStalled):
		return fmt.Sprintf("upstream sent nothing for %v (upstream_read_timeout)", readTimeout)
	case deadline.IsTimeout(err):
		return "cut at drain_timeout" // pool's abort: the only other timeout of a body read
	}
	return "upstream failed: " + err.Error()
}

// errUpstreamStalled ends a read of a response body that net/http's
// transport reads (watchedBody) after upstream_read_timeout.
var errUpstreamStalled = errors.New("upstream_read_timeout reached")

// watchedBody bounds each wait for more of a response body that net/http's
// transport reads, which has no such timeout: a timer runs while a read
// waits, and closes the body when it fires. It notes the first read error,
// for the access log.
type watchedBody struct {
	rc    io.ReadCloser
	d     time.Duration
	timer *time.Timer

	mu      sync.Mutex
	stalled bool
	err     error
	sent    int64
}

func newWatchedBody(rc io.ReadCloser, d time.Duration) *watchedBody {
	b := &watchedBody{rc: rc, d: d}
	b.timer = time.AfterFunc(time.Hour, func() {
		b.mu.Lock()
		b.stalled = true
		b.mu.Unlock()
		rc.Close()
	})
	b.timer.Stop()
	return b
}

func (b *watchedBody) Read(p []byte) (int, error) {
	b.timer.Reset(b.d)
	n, err := b.rc.Read(p)
	b.timer.Stop()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.sent += int64(n)
	if err != nil && err != io.EOF {
		if b.stalled {
			err = errUpstreamStalled
		}
		if b.err == nil {
			b.err = err
		}
	}
	return n, err
}

func (b *watchedBody) Close() error {
	b.timer.Stop()
	return b.rc.Close()
}

// failure returns the bytes read and the first read error.
func (b *watchedBody) failure() (int64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.sent, b.err
}
