package front

import (
	"bytes"
	"net"
	"sync"

	"github.com/hashicorp/go-hclog"
)

// handoffListener hands connections that the front will not serve, with the
// bytes it already read from them, to net/http's server.
type handoffListener struct {
	logger hclog.Logger
	ch     chan net.Conn
	done   chan struct{}
	once   sync.Once
	mu     sync.Mutex
	addr   net.Addr
}

func newHandoffListener() *handoffListener {
	return &handoffListener{ch: make(chan net.Conn), done: make(chan struct{})}
}

func (l *handoffListener) setAddr(a net.Addr) {
	l.mu.Lock()
	l.addr = a
	l.mu.Unlock()
}

// push hands c over; the bytes buffered in cr are read first.
func (l *handoffListener) push(c net.Conn, cr *connReader) {
	pc := &vettedConn{Conn: c, logger: l.logger, buf: bytes.Clone(cr.buffered())}
	cr.close()
	select {
	case l.ch <- pc:
	case <-l.done:
		c.Close()
	}
}

func (l *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *handoffListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *handoffListener) Addr() net.Addr {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.addr
}
