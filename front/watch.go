package front

import (
	"context"
	"os"
	"syscall"
	"time"

	"github.com/turnout/turnout/internal/deadline"
)

// clientWatchKey is the context key under which a front request carries its
// *frontConn, for WatchClient.
type clientWatchKey struct{}

// WatchClient watches the client of a request the front serves, whose
// context is ctx, while the handler waits (a held request, a stalled
// response body): gone is closed when the client goes away, after onGone
// (when not nil) is called, until stop is called. The request's body must
// have been read. For a request net/http serves, ok is false: its context
// ends when the client goes.
func WatchClient(ctx context.Context, onGone func()) (gone <-chan struct{}, stop func(), ok bool) {
	fc, ok := ctx.Value(clientWatchKey{}).(*frontConn)
	if !ok {
		return nil, nil, false
	}
	gone, stop = fc.watchClient(onGone)
	return gone, stop, true
}

// watchClient returns a channel that is closed when the client goes away,
// after onGone (when not nil) is called, until the returned stop is called.
// The request's body must have been read: the watch reads the connection.
// Inside readable, which holds the connection's read side, it reads a
// duplicate of the socket, which the poller waits on apart from it; what it
// reads goes to the same buffer.
func (fc *frontConn) watchClient(onGone func()) (gone <-chan struct{}, stop func()) {
	fc.setReadDeadline(time.Time{}) // the idle or header deadline is not the hold's
	raw, dup := fc.cr.raw, (*os.File)(nil)
	if fc.fd >= 0 {
		var err error
		if dup, err = dupSocket(fc.fd); err != nil {
			// The hold still ends at its deadline.
			fc.f.logger.Warn("cannot watch a held request's client", "error", err)
			return nil, func() {}
		}
		if raw, err = dup.SyscallConn(); err != nil {
			dup.Close()
			return nil, func() {}
		}
	}
	done := make(chan struct{})
	left := make(chan struct{})
	go func() {
		defer close(done)
		// Data (a pipelined request) means the client is there; an error
		// other than the deadline that stop sets means it is gone. Blank
		// lines (a CRLF after the body) say neither.
		for {
			fc.cr.skipBlankLines()
			if b := fc.cr.buffered(); len(b) > 0 && string(b) != "\r" {
				return
			}
			if err := fc.cr.fillFrom(raw); err != nil {
				if !deadline.IsTimeout(err) {
					if onGone != nil {
						onGone()
					}
					close(left)
				}
				return
			}
		}
	}()
	return left, func() {
		if dup == nil {
			fc.c.SetReadDeadline(deadline.Past)
			<-done
		} else {
			dup.SetReadDeadline(deadline.Past)
			<-done
			dup.Close()
		}
		fc.setReadDeadline(time.Time{})
	}
}

// dupSocket duplicates the socket fd as a file that the poller waits on.
func dupSocket(fd int) (*os.File, error) {
	nfd, _, errno := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_DUPFD_CLOEXEC, 0)
	if errno != 0 {
		return nil, os.NewSyscallError("fcntl", errno)
	}
	return os.NewFile(nfd, "client"), nil // non-blocking as fd is: pollable
}
