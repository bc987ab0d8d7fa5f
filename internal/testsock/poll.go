package testsock

import (
	"net"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// AwaitPoll returns once Go's network poller has polled since the call
// began: whatever the kernel had made readable by then, on any socket of
// the process, the poller has taken (a goroutine that waits on such a
// socket next finds it ready at once). Tests that need the poller to have
// seen bytes or a close, while the goroutine that owns the socket is busy
// elsewhere, call it instead of sleeping. One call at a time: a reader
// parked by another call would be taken for this one's.
//
// It parks a reader on one end of a socket pair, waits until the runtime
// shows it parked in the poller, then writes to the other end: only a
// poll made after that write can wake the reader, and the kernel hands
// the poller readiness in the order it arose.
func AwaitPoll(t testing.TB) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	ends := make([]net.Conn, 2)
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "socketpair")
		ends[i], err = net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		defer ends[i].Close()
	}
	woken := make(chan error, 1)
	go parkedRead(ends[0], woken)
	deadline := time.Now().Add(10 * time.Second)
	for !parkedInPoller() {
		if time.Now().After(deadline) {
			t.Fatal("the reader never parked in the network poller")
		}
		runtime.Gosched()
	}
	if _, err := ends[1].Write([]byte{1}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-woken:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the network poller did not poll within 10 s")
	}
}

// parkedRead is AwaitPoll's reader; parkedInPoller finds it by its name.
func parkedRead(c net.Conn, woken chan<- error) {
	_, err := c.Read(make([]byte, 1))
	woken <- err
}

// parkedInPoller says whether a parkedRead goroutine waits in the poller.
func parkedInPoller() bool {
	buf := make([]byte, 1<<16)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "[IO wait") && strings.Contains(g, "testsock.parkedRead(") {
			return true
		}
	}
	return false
}
