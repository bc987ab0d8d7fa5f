// Package upstream talks to app servers: connections, the lean HTTP/1.1
// client (Client) and net/http's transport for everything else
// (NewTransport), reading response heads, and the classes of failure that
// decide whether a request may go again (DialError, OverloadError, and the
// unread/stale failures Client.Exchange retries itself). It knows nothing of
// pools, health or which pool is active; pool gives it a dial function per
// server and counts what it reports.
package upstream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"syscall"
	"time"
)

// Options configure the connections to one server.
type Options struct {
	// Dial connects to the server; its error should be a *DialError.
	Dial func(ctx context.Context) (net.Conn, error)
	// ResponseHeaderTimeout bounds the wait for response headers once the
	// request is written; past it the exchange fails with a timeout error.
	ResponseHeaderTimeout time.Duration
	// ReadTimeout bounds each wait for more of a response body that Client
	// reads; 0: none.
	ReadTimeout time.Duration
	// MaxIdle bounds the idle keep-alive connections kept to the server
	// (at least 1).
	MaxIdle int
}

// NewClient returns the lean client for the server o dials.
func NewClient(o Options) *Client {
	return &Client{dial: o.Dial, headerTimeout: o.ResponseHeaderTimeout, readTimeout: o.ReadTimeout, maxIdle: max(o.MaxIdle, 1)}
}

// NewTransport returns the net/http transport for the requests Client does
// not take (upgrades, streamed bodies): the same dial, timeouts and head
// bound, no proxy, no compression, HTTP/1.1 only.
func NewTransport(o Options) *http.Transport {
	return &http.Transport{
		Proxy: nil,
		// The URL's host is a placeholder: every connection goes to this server.
		DialContext:            func(ctx context.Context, _, _ string) (net.Conn, error) { return o.Dial(ctx) },
		MaxIdleConns:           0,
		MaxIdleConnsPerHost:    max(o.MaxIdle, 1),
		IdleConnTimeout:        idleTimeout,
		ResponseHeaderTimeout:  o.ResponseHeaderTimeout,
		MaxResponseHeaderBytes: MaxResponseHead, // Client's bound too
		ExpectContinueTimeout:  time.Second,
		DisableCompression:     true,
		ForceAttemptHTTP2:      false,
	}
}

// Dialer returns the dial function of Options for the server key at
// address on network, bounded by timeout: its errors are *DialError.
func Dialer(key, network, address string, timeout time.Duration) func(ctx context.Context) (net.Conn, error) {
	dialer := &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
	return func(ctx context.Context) (net.Conn, error) {
		c, err := dialer.DialContext(ctx, network, address)
		if err != nil {
			return nil, &DialError{Server: key, Err: err}
		}
		return c, nil
	}
}

// DialError is a server that could not be connected to: the request never
// reached it, whatever its method.
type DialError struct {
	Server string
	Err    error
}

// ServerFault reports whether the failure says the server is not there
// (refused, reset, unreachable, timed out, its socket file missing), rather
// than that this machine ran out of something (file descriptors, local
// ports), which marking the server down would not mend.
func (e *DialError) ServerFault() bool {
	var errno syscall.Errno
	if !errors.As(e.Err, &errno) {
		return true // timeouts and resolver errors are the server's side
	}
	switch errno {
	case syscall.EMFILE, syscall.ENFILE, syscall.EADDRNOTAVAIL, syscall.ENOBUFS, syscall.ENOMEM:
		return false
	}
	return true
}

func (e *DialError) Error() string { return fmt.Sprintf("connect to %s: %v", e.Server, e.Err) }
func (e *DialError) Unwrap() error { return e.Err }

// IsDialError reports whether err says the request never reached a server
// because the server is not there (see DialError.ServerFault).
func IsDialError(err error) bool {
	var d *DialError
	return errors.As(err, &d) && d.ServerFault()
}

// OverloadError is a server that refused the connection for want of room
// in its listen backlog: the request was never sent, and the server is
// alive. pool tells it from a DialError (a full unix-socket backlog
// answers EAGAIN; a full TCP one drops SYNs, so the dial times out while
// other requests to the server succeed).
type OverloadError struct {
	Server string
	Err    error
}

func (e *OverloadError) Error() string {
	return fmt.Sprintf("connect to %s: listen backlog full: %v", e.Server, e.Err)
}
func (e *OverloadError) Unwrap() error { return e.Err }

// IsOverload reports whether err says the server's listen backlog was full.
func IsOverload(err error) bool {
	var o *OverloadError
	return errors.As(err, &o)
}
