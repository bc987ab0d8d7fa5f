package front

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/turnout/turnout/internal/deadline"
)

// Server serves plain HTTP/1.1 on a listener itself: net/http's server costs a
// background reader goroutine, several deadlines and its own bookkeeping per
// request, which is most of what a proxy spends beside system calls. A
// connection whose next request needs more — an upgrade, Expect, a chunked or
// large body, HTTP/2 prior knowledge, a head larger than the read buffer — is
// handed, with the bytes already read, to net/http's server (std) for the rest
// of its life, so every protocol feature stays net/http's; a vettedConn holds
// every head net/http reads there to the request rules (requestrules.go).
//
// Unlike net/http, the front does not read the connection in the background
// during every request to notice a client that goes away; it does so only
// where the wait may be long (WatchClient): while a request is held, and
// while more of a response body is awaited after what came went out. A
// request waiting for its response head runs to its end, bounded by
// upstream_timeout.
type Server struct {
	logger        hclog.Logger
	handler       http.Handler
	std           *http.Server // serves the connections handed off
	handoff       *handoffListener
	headerTimeout time.Duration
	idleTimeout   time.Duration
	bodyTimeout   time.Duration // the longest wait for more of a request body

	closing atomic.Bool
	mu      sync.Mutex // guards conns, which change only as connections open and close
	conns   map[*frontConn]struct{}
	wg      sync.WaitGroup
}

// Options configure a Server.
type Options struct {
	Logger  hclog.Logger
	Handler http.Handler
	// Std serves the connections the front hands over; New starts it.
	Std *http.Server
	// HeaderTimeout bounds the wait for a request head, from its first
	// byte; IdleTimeout, the wait for the next request on a kept-alive
	// connection; BodyTimeout, each wait for more of a request body.
	HeaderTimeout, IdleTimeout, BodyTimeout time.Duration
}

// New returns a Server for o, with o.Std serving what it hands over.
func New(o Options) *Server {
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	f := &Server{
		logger: o.Logger, handler: o.Handler, std: o.Std, headerTimeout: o.HeaderTimeout, idleTimeout: o.IdleTimeout, bodyTimeout: o.BodyTimeout,
		handoff: newHandoffListener(), conns: make(map[*frontConn]struct{}),
	}
	f.handoff.logger = o.Logger
	go o.Std.Serve(f.handoff)
	return f
}

// Serve accepts connections on ln until it is closed.
func (f *Server) Serve(ln net.Listener) error {
	f.handoff.setAddr(ln.Addr())
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				continue
			}
			if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) || errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM) {
				// Out of descriptors or memory for now, as net/http: wait and retry.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				f.logger.Warn("accept failed; retrying", "error", err, "in", backoff)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		fc := &frontConn{f: f, c: c}
		f.mu.Lock()
		if f.closing.Load() {
			f.mu.Unlock()
			c.Close()
			continue
		}
		f.conns[fc] = struct{}{}
		f.wg.Add(1)
		f.mu.Unlock()
		go fc.serve()
	}
}

// Shutdown closes idle connections at once and lets the others finish their
// request, until ctx ends; then it closes what is left, and calls closed
// before it waits for their handlers (closed is called either way).
// Connections handed to net/http are shut down by std.
func (f *Server) Shutdown(ctx context.Context, closed func()) {
	f.closing.Store(true)
	f.mu.Lock()
	for fc := range f.conns {
		if fc.idle.Load() {
			fc.c.SetReadDeadline(deadline.Past)
		}
	}
	f.mu.Unlock()
	done := make(chan struct{})
	go func() { f.wg.Wait(); close(done) }()
	select {
	case <-done:
		closed()
	case <-ctx.Done():
		f.mu.Lock()
		for fc := range f.conns {
			fc.abort()
		}
		f.mu.Unlock()
		closed()
		<-done
	}
	if f.std.Shutdown(ctx) != nil {
		f.std.Close()
	}
}

// setIdle records whether fc waits for a request; it reports false when the
// front is closing and fc should stop.
//
// No lock: shutdown sets closing before it looks at idle, so a connection it
// misses sees closing here.
func (f *Server) setIdle(fc *frontConn, idle bool) bool {
	fc.idle.Store(idle)
	return !f.closing.Load()
}

// NewRequestID returns 16 random hex digits, with one allocation.
func NewRequestID() string {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], rand.Uint64())
	var text [16]byte
	hex.Encode(text[:], b[:])
	return string(text[:])
}

// BodyMax is the largest request body the front reads before it runs the
// handler (a larger one goes to net/http) and that the lean upstream path
// sends from memory; it also fits a socket buffer, so writing it never
// waits on the server.
const BodyMax = 64 << 10
