package front

import (
	"io"
	"net"
	"os"
	"sync"
	"syscall"
)

// frontBufSize is the size of a front connection's read buffer, and so the
// largest request head the front parses itself; a larger one goes to
// net/http.
const frontBufSize = 4 << 10

var frontBufs = sync.Pool{New: func() any { b := make([]byte, frontBufSize); return &b }}

// connReader is a front connection's read side. It holds a buffer only
// while bytes wait in it: a connection that waits for its next request, or
// whose request is with the upstream, holds none, so that a thousand
// keep-alive clients cost a thousand goroutines and little else.
//
// It waits on the socket through syscall.RawConn: the buffer is taken just
// before a read and given back when the read finds nothing (EAGAIN), so a
// blocked wait holds no memory. A connection that is not a socket (TLS)
// keeps a buffer from its first read to its end.
type connReader struct {
	c    net.Conn
	raw  syscall.RawConn // nil when c is not a socket
	buf  *[]byte         // nil while empty
	r, w int             // the unread bytes are (*buf)[r:w]

	readFn func(fd uintptr) bool // reads into the buffer; built once
	n      int                   // what readFn read
	err    error                 // and its error
}

func newConnReader(c net.Conn) *connReader {
	cr := &connReader{c: c}
	if sc, ok := c.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			cr.raw = raw
			cr.readFn = cr.readSocket
		}
	}
	return cr
}

// buffered returns the bytes read and not yet consumed.
func (cr *connReader) buffered() []byte {
	if cr.buf == nil {
		return nil
	}
	return (*cr.buf)[cr.r:cr.w]
}

// discard consumes n buffered bytes.
func (cr *connReader) discard(n int) {
	cr.r += n
	if cr.r == cr.w {
		cr.release()
	}
}

// skipBlankLines consumes the empty lines (CRLF or LF) that may come
// before a request line (RFC 9112 section 2.2).
func (cr *connReader) skipBlankLines() {
	buf := cr.buffered()
	n := 0
	for n < len(buf) && (buf[n] == '\n' || buf[n] == '\r' && n+1 < len(buf) && buf[n+1] == '\n') {
		if buf[n] == '\r' {
			n++
		}
		n++
	}
	if n > 0 {
		cr.discard(n)
	}
}

// release gives the buffer back; only when it holds nothing unread.
func (cr *connReader) release() {
	if cr.buf != nil && cr.r == cr.w && cr.raw != nil {
		frontBufs.Put(cr.buf)
		cr.buf = nil
	}
}

// close gives the buffer back, whatever it holds.
func (cr *connReader) close() {
	if cr.buf != nil {
		frontBufs.Put(cr.buf)
		cr.buf = nil
	}
}

// fill reads at least one more byte into the buffer: errHeadTooLarge when
// the buffer is full of unread bytes, io.EOF when the client closed.
func (cr *connReader) fill() error { return cr.fillFrom(cr.raw) }

// fillFrom is fill through raw, the connection's or a duplicate's (a held
// request's watch, see watchClient); through the connection's Read when
// raw is nil.
func (cr *connReader) fillFrom(raw syscall.RawConn) error {
	if !cr.room() {
		return errHeadTooLarge
	}
	if raw == nil {
		for {
			n, err := cr.c.Read((*cr.buf)[cr.w:])
			cr.w += n
			if n > 0 || err != nil {
				return err
			}
		}
	}
	cr.n, cr.err = 0, nil
	if err := raw.Read(cr.readFn); err != nil {
		cr.release()
		return err // a deadline, or the connection closed under the read
	}
	if cr.err != nil {
		cr.release()
		return os.NewSyscallError("read", cr.err)
	}
	if cr.n == 0 {
		cr.release()
		return io.EOF
	}
	return nil
}

// room takes a buffer if there is none and makes room at its end for a
// read, moving the unread bytes to its start; false when they fill it.
func (cr *connReader) room() bool {
	if cr.buf == nil {
		cr.buf, cr.r, cr.w = frontBufs.Get().(*[]byte), 0, 0
	}
	if b := *cr.buf; cr.w == len(b) {
		if cr.r == 0 {
			return false
		}
		cr.w = copy(b, b[cr.r:cr.w])
		cr.r = 0
	}
	return true
}

// readSocket is fill's read, called by RawConn.Read until it reports done.
func (cr *connReader) readSocket(fd uintptr) bool {
	n, _, err := cr.readFd(fd)
	if err == syscall.EAGAIN {
		return false
	}
	cr.n, cr.err = n, err
	return true
}

// readFd reads once from the socket fd into the room at the buffer's end
// (errHeadTooLarge when there is none): n bytes, 0 and a nil error when the
// client closed, EAGAIN when nothing is there yet. drained reports that the read
// took less than it could: a TCP socket had no more queued, so what comes
// next will wake a wait for readability. A read that finds nothing gives
// the buffer back, so that a wait holds none.
func (cr *connReader) readFd(fd uintptr) (n int, drained bool, err error) {
	if !cr.room() {
		return 0, false, errHeadTooLarge
	}
	b := (*cr.buf)[cr.w:]
	for {
		n, err = syscall.Read(int(fd), b)
		if err != syscall.EINTR {
			break
		}
	}
	if n <= 0 {
		cr.release()
		return 0, true, err
	}
	cr.w += n
	return n, n < len(b), nil
}

// Read reads buffered bytes, or from the connection when none are.
func (cr *connReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if len(cr.buffered()) == 0 {
		if err := cr.fill(); err != nil {
			return 0, err
		}
	}
	n := copy(p, cr.buffered())
	cr.discard(n)
	return n, nil
}
