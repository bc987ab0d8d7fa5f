// Package deadline holds turnout's one notion of a connection's time
// limits: a read deadline moved only when it must (each move costs a timer
// update, and on a kept-alive connection most requests can keep the
// deadline the one before them set), the deadline in the past that unblocks
// a connection, and the test for a timeout error.
package deadline

import (
	"errors"
	"net"
	"time"
)

// Read is the read deadline set on one connection.
type Read struct {
	at time.Time // zero: none
}

// Set sets c's read deadline to t (zero: none).
func (r *Read) Set(c net.Conn, t time.Time) {
	r.at = t
	c.SetReadDeadline(t)
}

// Within makes sure that c's next read fails if it waits longer than d
// from now, give or take Slack(d): the deadline already set is kept when it
// is at most that much earlier than asked.
func (r *Read) Within(c net.Conn, now time.Time, d time.Duration) {
	want := now.Add(d)
	if r.at.IsZero() || r.at.Before(want.Add(-Slack(d))) || r.at.After(want) {
		r.Set(c, want)
	}
}

// Slack is how much earlier than asked a kept deadline may fire: a tenth
// of the timeout, at most a second.
func Slack(d time.Duration) time.Duration {
	return min(d/10, time.Second)
}

// Past is a deadline in the past: set on a connection, it makes blocked
// reads and writes return at once.
var Past = time.Unix(1, 0)

// IsTimeout reports whether err is a timeout: a deadline that passed, a
// dial or a response header wait that ran out.
func IsTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
