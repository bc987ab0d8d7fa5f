package switcher

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/turnout/turnout/internal/deadline"
)

// The timeouts of a response's body, and what is logged when a response is
// cut short. The lean upstream client bounds the responses it reads itself
// (upstream's h1Conn.Read) with socket deadlines; what net/http's transport
// reads is bounded here. Request bodies are front's (front.TimedBody).

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
