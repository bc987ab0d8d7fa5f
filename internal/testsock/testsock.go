// Package testsock gives tests real sockets: a loopback server whose
// connections the test answers byte by byte, as an odd app server would
// (Serve); a unix socket whose listen backlog is full, as an app server's
// is when requests released all at once overflow it; raw HTTP/1.1
// exchanges byte for byte (Exchange); a free loopback address; a directory
// short enough for unix sockets; and a wait for Go's network poller to
// have seen what the kernel made readable (AwaitPoll). Only tests import
// it.
package testsock

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
)

// Serve accepts connections on a loopback port until the test ends and
// hands each to serve, in a goroutine of its own, numbered from 1; serve
// owns the connection. It returns the address and the number of
// connections accepted so far.
func Serve(t testing.TB, serve func(n int64, c net.Conn)) (addr string, accepted *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	accepted = new(atomic.Int64)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go serve(accepted.Add(1), c)
		}
	}()
	return ln.Addr().String(), accepted
}

// FullBacklog returns the path of a unix socket with a listen backlog of 1
// that is full: the next connect fails with EAGAIN, as uwsgi's (backlog
// 100) or gunicorn's (64) does under a flood. Each call of accept takes one
// queued connection, which makes room for one more.
func FullBacklog(t testing.TB) (path string, accept func()) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "app.sock")
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrUnix{Name: path}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 1); err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), path)
	ln, err := net.FileListener(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var queued []net.Conn
	t.Cleanup(func() {
		for _, c := range queued {
			c.Close()
		}
	})
	for range 16 {
		c, err := net.Dial("unix", path)
		if errors.Is(err, syscall.EAGAIN) {
			return path, func() {
				if c, err := ln.Accept(); err == nil {
					c.Close()
				}
			}
		}
		if err != nil {
			t.Fatal(err)
		}
		queued = append(queued, c)
	}
	t.Fatal("a unix socket with a backlog of 1 took 16 connections")
	return "", nil
}

// ShortDir returns a new temporary directory with a short path, removed at
// the end of the test: a unix socket's path is at most 108 bytes, which
// one in t.TempDir() may exceed.
func ShortDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "ts")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}
