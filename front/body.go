package front

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync/atomic"
	"time"
)

// Request bodies that net/http's server reads get their timeout here; the
// front bounds the bodies it reads itself (frontBody) with socket
// deadlines.

// BodyTimeoutError is a request body that stopped coming: no byte of it
// for client_body_timeout. The client gets 408 and its connection is
// closed.
type BodyTimeoutError struct{ After time.Duration }

func (e *BodyTimeoutError) Error() string {
	return fmt.Sprintf("the client sent no more of the request body for %v (client_body_timeout)", e.After)
}
func (e *BodyTimeoutError) Timeout() bool { return true }

// AnswerBodyError answers a request whose body could not be read: 408 when
// it stopped coming, 400 when it ended short. Either way the connection
// closes: what comes next on it is not a request.
func AnswerBodyError(w http.ResponseWriter, err error) {
	w.Header().Set("Connection", "close")
	var timeout *BodyTimeoutError
	if errors.As(err, &timeout) {
		http.Error(w, "request body timed out: "+timeout.Error(), http.StatusRequestTimeout)
		return
	}
	http.Error(w, "request body shorter than its Content-Length", http.StatusBadRequest)
}

// NewTimedBody bounds the reads of r's body, which w's server reads, to d
// each; r.Body becomes the *TimedBody.
func NewTimedBody(w http.ResponseWriter, r *http.Request, d time.Duration) *TimedBody {
	b := &TimedBody{rc: r.Body, ctl: http.NewResponseController(w), d: d}
	r.Body = b
	return b
}

// Err is the timeout of b's reads as a *BodyTimeoutError.
func (b *TimedBody) Err() error { return &BodyTimeoutError{b.d} }

// TimedBody bounds the gaps in a request body that net/http's server reads
// (chunked, larger than the front takes, or on a connection handed to
// net/http), which has a timeout for the whole request only: each read may
// wait d. Read runs on the goroutine of whoever sends the body (net/http's
// transport writes it on its own); expired may be asked from another.
type TimedBody struct {
	rc  io.ReadCloser
	ctl *http.ResponseController
	d   time.Duration
	err error

	until atomic.Int64 // while a read waits: its deadline, in Unix nanoseconds
}

func (b *TimedBody) Read(p []byte) (int, error) {
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
		err = &BodyTimeoutError{b.d}
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

// Expired reports whether a read of the body has waited past its deadline
// (and failed, or is about to). net/http's server cancels the request's
// context as the read fails, so that the transport may report that
// instead of the read's error.
func (b *TimedBody) Expired() bool {
	until := b.until.Load()
	return until != 0 && time.Now().UnixNano() >= until
}

func (b *TimedBody) Close() error { return b.rc.Close() }
