package upstream

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/turnout/turnout/internal/httpsyntax"
	"github.com/turnout/turnout/internal/testsock"
)

// send picks the pool's server and sends one request through the lean path.
func send(t *testing.T, p *Client, method, path, body string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://upstream"+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	head := method + " " + path + " HTTP/1.1\r\nHost: test\r\n"
	if body != "" {
		head += "Content-Length: " + strconv.Itoa(len(body)) + "\r\n"
	}
	resp, fields, err := exchange(p, req, []byte(head+"\r\n"+body))
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	if fields.Raw != nil {
		resp.Header = headerOf(fields.Raw, resp.Close)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s body: %v", method, path, err)
	}
	resp.Body.Close()
	return resp, string(b)
}

func TestLeanPathReusesConnections(t *testing.T) {
	var conns atomic.Int64
	backend := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		io.WriteString(w, r.Method+" "+string(b))
	}))
	backend.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	backend.Start()
	defer backend.Close()
	p := newTestClient(t, backend.Listener.Addr().String())
	for i := range 10 {
		method := []string{"GET", "POST"}[i%2]
		if _, body := send(t, p, method, "/", "x"); body != method+" x" {
			t.Fatalf("got %q", body)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("%d upstream connections for 10 sequential requests, want 1", n)
	}
}

// readRequest reads one request and its body from c; false when it failed.
func readRequest(c net.Conn) bool {
	req, err := http.ReadRequest(bufio.NewReader(c))
	if err != nil {
		return false
	}
	io.Copy(io.Discard, req.Body)
	return true
}

// answerOK reads one request on c and answers 200 "ok" with extra headers.
func answerOK(c net.Conn, extra string) {
	if readRequest(c) {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"+extra+"\r\nok")
	}
}

// TestLeanPathSurvivesServerClosingIdleConnections: a server that closes a
// kept-alive connection after each response (as app servers with a short
// keep-alive do) never makes a request fail, POSTs included.
func TestLeanPathSurvivesServerClosingIdleConnections(t *testing.T) {
	// Keep-alive answers, then a close: the next request on a connection
	// would find it dead.
	addr, _ := testsock.Serve(t, func(_ int64, c net.Conn) {
		defer c.Close()
		answerOK(c, "")
	})
	p := newTestClient(t, addr)
	for i := range 20 {
		method := []string{"POST", "GET"}[i%2]
		if resp, body := send(t, p, method, "/", "payload"); resp.StatusCode != 200 || body != "ok" {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
		}
	}
}

// A request too large to be known unread when it fails (a POST of more
// than one server read) is not failed by a server that closes its idle
// connections: the peek finds the close before the request is sent.
func TestLeanPathChecksIdleConnectionsForLargePOSTs(t *testing.T) {
	closed := make(chan struct{}, 5)
	addr, accepted := testsock.Serve(t, func(_ int64, c net.Conn) {
		answerOK(c, "") // kept alive, then closed
		c.Close()
		closed <- struct{}{}
	})
	p := newTestClient(t, addr)
	large := strings.Repeat("x", 2*oneRead)
	for i := range 5 {
		if resp, body := send(t, p, "POST", "/", large); resp.StatusCode != 200 || body != "ok" {
			t.Fatalf("POST %d: %d %q", i+1, resp.StatusCode, body)
		}
		// The close is made before the next POST: one that came while the
		// POST was on its way would fail it (it may have been read).
		<-closed
	}
	if n := accepted.Load(); n != 5 {
		t.Fatalf("%d connections for 5 POSTs to a server that closes each after its answer, want 5", n)
	}
}

// A server that closes every idle connection at once (a restart) costs a
// request none of its tries: the peek finds each closed before the request
// is sent, and the request is answered on a new connection, not failed
// for having met more dead connections than it has tries.
func TestLeanPathSurvivesEveryIdleConnectionClosingAtOnce(t *testing.T) {
	const k = maxAttempts + 2
	var arrived, closed sync.WaitGroup
	arrived.Add(k)
	closed.Add(k)
	addr, accepted := testsock.Serve(t, func(n int64, c net.Conn) {
		if n > k {
			defer c.Close()
			answerOK(c, "")
			return
		}
		ok := readRequest(c)
		arrived.Done()
		arrived.Wait() // k connections in use at once, so that k go idle
		if ok {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
		c.Close()
		closed.Done()
	})
	p := newClientWith(t, addr, Options{MaxIdle: k})
	errs := make(chan error, k)
	for range k {
		go func() {
			req, _ := http.NewRequest("GET", "http://upstream/", nil)
			resp, _, err := exchange(p, req, []byte("GET / HTTP/1.1\r\nHost: test\r\n\r\n"))
			if err == nil {
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			errs <- err
		}()
	}
	for range k {
		if err := <-errs; err != nil {
			t.Fatalf("warming %d connections: %v", k, err)
		}
	}
	closed.Wait() // every idle connection is closed by the server now
	if resp, body := send(t, p, "POST", "/", "payload"); resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("POST after the server closed every idle connection: %d %q", resp.StatusCode, body)
	}
	if n := accepted.Load(); n != k+1 {
		t.Fatalf("%d connections, want %d: the POST went on one new connection", n, k+1)
	}
}

// A sloppy server may send a body after its answer to a HEAD; the peek
// finds it before the connection's next use, so the next request does not
// read that body as its answer.
func TestLeanPathChecksAConnectionAfterAHEAD(t *testing.T) {
	headRead, junkSent := make(chan struct{}), make(chan struct{})
	addr, accepted := testsock.Serve(t, func(n int64, c net.Conn) {
		defer c.Close()
		if n > 1 {
			answerOK(c, "")
			return
		}
		if !readRequest(c) {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n")
		<-headRead
		io.WriteString(c, "body") // the HEAD's body, which it must not have
		close(junkSent)
		readRequest(c) // a request sent here gets no answer
	})
	p := newTestClient(t, addr)
	if resp, _ := send(t, p, "HEAD", "/", ""); resp.StatusCode != 200 {
		t.Fatalf("HEAD: %d", resp.StatusCode)
	}
	close(headRead)
	<-junkSent
	if resp, body := send(t, p, "POST", "/", "payload"); resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("POST after a HEAD answered with a body: %d %q", resp.StatusCode, body)
	}
	if n := accepted.Load(); n != 2 {
		t.Fatalf("%d connections, want 2: the POST left the HEAD's", n)
	}
}

// halfClosingRelay stands for a relay in front of an app (socat, an ssh
// tunnel): its first connection gets one answer, then, once halfClose is
// closed, the app's close as a half-close (a FIN, while the relay still
// reads); halfClosed is closed then. Later connections get an answer each.
// It returns a pool with a response header timeout of 5 s on it, whose
// first GET has been answered.
func halfClosingRelay(t *testing.T, halfClose <-chan struct{}) (p *Client, accepted *atomic.Int64, halfClosed <-chan struct{}) {
	t.Helper()
	done := make(chan struct{})
	addr, accepted := testsock.Serve(t, func(n int64, c net.Conn) {
		defer c.Close()
		answerOK(c, "")
		if n > 1 {
			return
		}
		<-halfClose
		c.(*net.TCPConn).CloseWrite()
		close(done)
		io.Copy(io.Discard, c)
	})
	p = newClientWith(t, addr, Options{ResponseHeaderTimeout: 5 * time.Second, MaxIdle: 4})
	if resp, body := send(t, p, "GET", "/", ""); resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("first GET: %d %q", resp.StatusCode, body)
	}
	return p, accepted, done
}

// newClientWith returns a client to the server at addr, with options o
// (their Dial set), closed at the end of the test.
func newClientWith(t *testing.T, addr string, o Options) *Client {
	t.Helper()
	o.Dial = Dialer(addr, "tcp", addr, time.Second)
	c := NewClient(o)
	t.Cleanup(c.Retire)
	return c
}

// newTestClient is newClientWith on the options pool gives by default.
func newTestClient(t *testing.T, addr string) *Client {
	t.Helper()
	return newClientWith(t, addr, Options{ResponseHeaderTimeout: 5 * time.Second, MaxIdle: 4})
}

func TestLeanPathChecksAHalfClosedConnection(t *testing.T) {
	halfClose := make(chan struct{})
	close(halfClose) // at once, after the first answer
	p, accepted, halfClosed := halfClosingRelay(t, halfClose)
	<-halfClosed
	for _, method := range []string{"GET", "POST"} {
		if resp, body := send(t, p, method, "/", "x"); resp.StatusCode != 200 || body != "ok" {
			t.Fatalf("%s after the half-close: %d %q", method, resp.StatusCode, body)
		}
	}
	if n := accepted.Load(); n != 3 {
		t.Fatalf("%d connections, want 3: the half-closed one was not used again", n)
	}
}

func TestLeanPathChunkedTrailersHeadAndNoContent(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/chunked":
			w.Header().Set("Trailer", "X-Sum")
			w.Write([]byte("part1 "))
			w.(http.Flusher).Flush()
			w.Write([]byte("part2"))
			w.Header().Set("X-Sum", "42")
		case "/empty":
			w.WriteHeader(http.StatusNoContent)
		default:
			w.Header().Set("Content-Length", "5")
			io.WriteString(w, "hello")
		}
	}))
	defer backend.Close()
	p := newTestClient(t, backend.Listener.Addr().String())

	resp, body := send(t, p, "GET", "/chunked", "")
	if body != "part1 part2" || resp.Trailer.Get("X-Sum") != "42" {
		t.Fatalf("chunked: %q trailer %v", body, resp.Trailer)
	}
	resp, body = send(t, p, "HEAD", "/", "")
	if body != "" || resp.ContentLength != 5 {
		t.Fatalf("HEAD: %q length %d", body, resp.ContentLength)
	}
	resp, body = send(t, p, "GET", "/empty", "")
	if resp.StatusCode != 204 || body != "" {
		t.Fatalf("204: %d %q", resp.StatusCode, body)
	}
	// The connection is still in order after all of that.
	if _, body = send(t, p, "GET", "/", ""); body != "hello" {
		t.Fatalf("after: %q", body)
	}
}

func TestLeanPathResponseHeaderTimeout(t *testing.T) {
	release := make(chan struct{})
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-release }))
	defer backend.Close()
	defer close(release)
	p := newClientWith(t, backend.Listener.Addr().String(), Options{ResponseHeaderTimeout: 50 * time.Millisecond, MaxIdle: 4})
	req, _ := http.NewRequest("GET", "http://upstream/", nil)
	_, _, err := exchange(p, req, []byte("GET / HTTP/1.1\r\nHost: test\r\n\r\n"))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("error %v, want a timeout", err)
	}
}

// TestLeanPathResendsARequestTheServerResetUnread: a server that closes a
// connection with the request unread in it (a listener closing with
// connections in its queue, a graceful shutdown) answers with a reset; the
// request was never read, so even a POST goes again, on a new connection.
func TestLeanPathResendsARequestTheServerResetUnread(t *testing.T) {
	addr, accepted := testsock.Serve(t, func(n int64, c net.Conn) {
		defer c.Close()
		if n > 1 {
			answerOK(c, "Connection: close\r\n")
			return
		}
		// Wait, without reading, until the request is in the socket;
		// closing now resets the connection.
		raw, _ := c.(*net.TCPConn).SyscallConn()
		raw.Read(func(fd uintptr) bool {
			var b [1]byte
			n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK)
			return n > 0 || err != syscall.EAGAIN
		})
	})
	p := newTestClient(t, addr)
	if resp, body := send(t, p, "POST", "/", "payload"); resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("POST: %d %q", resp.StatusCode, body)
	}
	if accepted.Load() != 2 {
		t.Fatalf("%d connections, want 2: the reset one and the one the POST went again on", accepted.Load())
	}
}

// TestLeanPathResendsARequestTheServerClosedBeforeItArrived: the server
// closes a connection before the request arrives (it had accepted it while
// shutting down). The close is seen first, then the reset that answers the
// request: the server never read it, so even a POST goes again.
func TestLeanPathResendsARequestTheServerClosedBeforeItArrived(t *testing.T) {
	first := make(chan net.Conn, 1)
	addr, accepted := testsock.Serve(t, func(n int64, c net.Conn) {
		if n == 1 {
			first <- c // closed by the test, unread
			return
		}
		defer c.Close()
		answerOK(c, "Connection: close\r\n")
	})
	p := newTestClient(t, addr)
	p.hooks.afterPeek = func(c *h1Conn) {
		p.hooks.afterPeek = nil
		(<-first).Close()
		// Wait until the close has reached our side.
		for c.pendingError() == nil && quiet(c) {
			runtime.Gosched()
		}
	}
	if resp, body := send(t, p, "POST", "/", "payload"); resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("POST: %d %q", resp.StatusCode, body)
	}
	if accepted.Load() != 2 {
		t.Fatalf("%d connections, want 2: the closed one and the one the POST went again on", accepted.Load())
	}
}

// quiet reports whether nothing waits to be read on c: no close, no bytes.
func quiet(c *h1Conn) bool {
	var err error
	c.raw.Control(func(fd uintptr) {
		_, _, err = syscall.Recvfrom(int(fd), make([]byte, 1), syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	})
	return err == syscall.EAGAIN
}

// A relay's half-close that reaches turnout in the instant between the
// choice of an idle connection and the write of the request is seen too:
// the peek comes after send's wait has cleared the readiness the close
// left, which the wait would otherwise miss.
func TestLeanPathChecksAConnectionHalfClosedJustBeforeTheWrite(t *testing.T) {
	halfClose := make(chan struct{})
	p, accepted, _ := halfClosingRelay(t, halfClose)
	p.hooks.beforeWrite = func(c *h1Conn) {
		p.hooks.beforeWrite = nil
		close(halfClose)
		for quiet(c) { // until the FIN has reached this side
			runtime.Gosched()
		}
		// The poller takes the FIN's readiness: that is what a peek made
		// before the wait began would lose.
		testsock.AwaitPoll(t)
	}
	if resp, body := send(t, p, "POST", "/", "x"); resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("POST: %d %q", resp.StatusCode, body)
	}
	if n := accepted.Load(); n != 2 {
		t.Fatalf("%d connections, want 2: the half-closed one was not written to", n)
	}
}

// A reset that reaches an idle connection between its peek and the write
// fails the write: nothing went out, so even a large POST goes again.
func TestLeanPathResendsARequestWhoseWriteFailed(t *testing.T) {
	first := make(chan net.Conn, 1)
	addr, accepted := testsock.Serve(t, func(n int64, c net.Conn) {
		if n == 1 {
			answerOK(c, "")
			first <- c // reset by the test
			return
		}
		defer c.Close()
		answerOK(c, "")
	})
	p := newTestClient(t, addr)
	if resp, body := send(t, p, "GET", "/", ""); resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("first GET: %d %q", resp.StatusCode, body)
	}
	p.hooks.afterPeek = func(c *h1Conn) {
		p.hooks.afterPeek = nil
		sc := (<-first).(*net.TCPConn)
		sc.SetLinger(0) // the close resets the connection
		sc.Close()
		for c.pendingError() == nil && quiet(c) {
			runtime.Gosched()
		}
	}
	if resp, body := send(t, p, "POST", "/", strings.Repeat("x", 2*oneRead)); resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("POST: %d %q", resp.StatusCode, body)
	}
	if n := accepted.Load(); n != 2 {
		t.Fatalf("%d connections, want 2: the reset one and the one the POST went again on", n)
	}
}

// countingServer counts the requests it reads, and answers each with
// answer; with none, it closes the connection after the first, unanswered.
func countingServer(t *testing.T, answer string) (addr string, requests *atomic.Int64) {
	requests = new(atomic.Int64)
	addr, _ = testsock.Serve(t, func(_ int64, c net.Conn) {
		defer c.Close()
		for readRequest(c) {
			requests.Add(1)
			if answer == "" {
				return
			}
			io.WriteString(c, answer)
		}
	})
	return addr, requests
}

// A request whose client went away after its connection was chosen is not
// sent.
func TestLeanPathSendsNoCancelledRequest(t *testing.T) {
	addr, requests := countingServer(t, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	p := newTestClient(t, addr)
	if resp, body := send(t, p, "GET", "/", ""); resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("first GET: %d %q", resp.StatusCode, body)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p.hooks.beforeWrite = func(*h1Conn) {
		p.hooks.beforeWrite = nil
		cancel()
	}
	req, _ := http.NewRequestWithContext(ctx, "POST", "http://upstream/", nil)
	if _, _, err := exchange(p, req, []byte("POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 1\r\n\r\nx")); !errors.Is(err, context.Canceled) {
		t.Fatalf("a cancelled POST: %v, want context.Canceled", err)
	}
	if resp, body := send(t, p, "GET", "/", ""); resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("GET after: %d %q", resp.StatusCode, body)
	}
	if n := requests.Load(); n != 2 {
		t.Fatalf("the server read %d requests, want 2: the cancelled POST was sent", n)
	}
}

// TestLeanPathDropsAndCrashes: a server that reads a request and closes at
// once without answering (Go's http.Server does so to every request it reads
// while shutting down) dropped it unread, so even a POST goes again; one
// that closes well after reading it may have acted on it, and may have
// crashed on it: the request fails here, GET or POST, and the switcher
// decides whether another server gets it (only an idempotent one may).
func TestLeanPathDropsAndCrashes(t *testing.T) {
	for _, tc := range []struct {
		name       string
		closeAfter time.Duration
		method     string
		wantOK     bool
	}{
		{"dropped at once, POST", 0, "POST", true},
		{"closed while working, POST", 100 * time.Millisecond, "POST", false},
		{"closed while working, GET", 100 * time.Millisecond, "GET", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var requests atomic.Int64
			addr, accepted := testsock.Serve(t, func(n int64, c net.Conn) {
				defer c.Close()
				if n > 1 {
					if readRequest(c) {
						requests.Add(1)
						io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
					}
					return
				}
				if readRequest(c) {
					requests.Add(1)
					time.Sleep(tc.closeAfter) // the server's work, then a close without an answer
				}
			})
			p := newTestClient(t, addr)
			req, _ := http.NewRequest(tc.method, "http://upstream/", nil)
			resp, _, err := exchange(p, req, []byte(tc.method+" / HTTP/1.1\r\nHost: test\r\nContent-Length: 1\r\n\r\nx"))
			if tc.wantOK {
				if err != nil {
					t.Fatalf("%v, want the request sent again and answered", err)
				}
				resp.Body.Close()
				return
			}
			// A GET's new connection is closed unused: it only shows that
			// the server is still up (so the switcher need not hold it).
			if err == nil || requests.Load() != 1 {
				t.Fatalf("error %v after %d requests on %d connections; a request the server may have acted on must not go to it again",
					err, requests.Load(), accepted.Load())
			}
		})
	}
}

// Answers the in-place parser leaves to http.ReadResponse are read whole,
// and their connection is used again only when that is safe:
//   - lines ending in a bare LF, as some old servers send, are not left
//     waiting for a CRLF that never comes;
//   - a response with both Transfer-Encoding and Content-Length is read by
//     Transfer-Encoding, and its connection is not used again: what the
//     server meant by the other is unknown.
func TestLeanPathReadsOddlyFramedResponses(t *testing.T) {
	for _, tc := range []struct {
		name      string
		answer    string
		wantConns int64 // for 2 requests
	}{
		{"bare LF", "HTTP/1.1 200 OK\nContent-Length: 5\n\nhello", 1},
		{"framed twice", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, accepted := answering(t, tc.answer, true)
			p := newTestClient(t, addr)
			for i := range 2 {
				if resp, body := send(t, p, "GET", "/", ""); resp.StatusCode != 200 || body != "hello" {
					t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
				}
			}
			if n := accepted.Load(); n != tc.wantConns {
				t.Fatalf("%d connections for 2 requests, want %d", n, tc.wantConns)
			}
		})
	}
}

// The response header timeout runs from the write of the request: a slow
// dial does not eat it (a request that went out on time must not be
// answered 504 while the app runs it).
func TestHeaderTimeoutStartsAfterTheDial(t *testing.T) {
	addr, _ := testsock.Serve(t, func(_ int64, c net.Conn) {
		defer c.Close()
		answerOK(c, "")
	})
	tr := &Client{
		dial: func(ctx context.Context) (net.Conn, error) {
			time.Sleep(time.Second) // a slow dial (a SYN sent again), longer than the header timeout
			return net.Dial("tcp", addr)
		},
		headerTimeout: 800 * time.Millisecond,
		maxIdle:       1,
	}
	req, _ := http.NewRequest("GET", "http://upstream/", nil)
	reply := new(Reply)
	err := tr.Exchange(req, []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), reply)
	resp := reply.Response
	if err != nil {
		t.Fatalf("an answer at once after a slow dial: %v", err)
	}
	resp.Body.Close()
}

// A server that closes at once after every request it reads looks like one
// that dropped it unread while shutting down, and like an app that crashes
// on it at once: such a request goes again once, whatever its method, and
// not more.
func TestLeanPathSendsARequestDroppedAtOnceTwiceAtMost(t *testing.T) {
	addr, requests := countingServer(t, "") // closes after each request, unanswered
	p := newTestClient(t, addr)
	req, _ := http.NewRequest("POST", "http://upstream/", nil)
	if _, _, err := exchange(p, req, []byte("POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 1\r\n\r\nx")); err == nil {
		t.Fatal("a POST every connection drops: no error")
	}
	if n := requests.Load(); n != 2 {
		t.Fatalf("the server read the POST %d times, want 2: once, and once again", n)
	}
}

// A cancel that comes between the response head and the lift of its
// deadline still ends the body's read.
func TestLeanPathCancelJustAfterTheHeadEndsTheBody(t *testing.T) {
	hold := make(chan struct{})
	defer close(hold)
	addr, _ := testsock.Serve(t, func(_ int64, c net.Conn) {
		defer c.Close()
		if readRequest(c) {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npart")
			<-hold // the rest of the body comes much later (a slow app)
		}
	})
	p := newClientWith(t, addr, Options{ResponseHeaderTimeout: 5 * time.Second, MaxIdle: 1})
	ctx, cancel := context.WithCancel(context.Background())
	p.hooks.afterHead = func(c *h1Conn) {
		p.hooks.afterHead = nil
		cancel()
		for c.raw.Read(func(uintptr) bool { return true }) == nil { // until AfterFunc has set its deadline
			runtime.Gosched()
		}
	}
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://upstream/", nil)
	resp, _, err := exchange(p, req, []byte("GET / HTTP/1.1\r\nHost: t\r\n\r\n"))
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	done := make(chan error, 1)
	go func() { _, err := io.ReadAll(resp.Body); done <- err }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("the body of a cancelled request read whole")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the body read of a cancelled request still blocks: the lift of the header deadline undid the cancel's")
	}
}

// A server may send at most 1 MiB before its final head ends, and five
// informational responses before it, as net/http's Transport allows (in
// kind): past that the request fails, and turnout holds no more of it.
func TestLeanPathBoundsResponseHeads(t *testing.T) {
	early := "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
	for _, tc := range []struct {
		name, answer string
		want         error
	}{
		{"a 2 MiB field", "HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("b", 2<<20) + "\r\nContent-Length: 2\r\n\r\nok", ErrHeadTooLarge},
		{"six 103s", strings.Repeat(early, 6) + "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", errTooInformational},
		{"five 103s", strings.Repeat(early, 5) + "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", nil},
		{"a 64 KiB field", "HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("b", 64<<10) + "\r\nContent-Length: 2\r\n\r\nok", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, _ := answering(t, tc.answer, false)
			p := newTestClient(t, addr)
			req, _ := http.NewRequest("GET", "http://upstream/", nil)
			resp, fields, err := exchange(p, req, []byte("GET / HTTP/1.1\r\nHost: test\r\n\r\n"))
			if tc.want != nil {
				if !errors.Is(err, tc.want) {
					t.Fatalf("error %v, want %v", err, tc.want)
				}
				if resp != nil || fields.Raw != nil {
					t.Fatalf("a failed exchange left a response in its reply (%v, %d bytes of fields)", resp != nil, len(fields.Raw))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || string(b) != "ok" {
				t.Fatalf("body %q, %v", b, err)
			}
		})
	}
}

// exchange is Client.Exchange with a Reply of its own.
func exchange(s *Client, req *http.Request, msg []byte) (*http.Response, httpsyntax.Fields, error) {
	reply := new(Reply)
	err := s.Exchange(req, msg, reply)
	return reply.Response, reply.Fields, err
}

// answering is a server that answers each request read on a connection
// with answer, as it is: every one on the connection when keep is set,
// else the first one only.
func answering(t *testing.T, answer string, keep bool) (addr string, accepted *atomic.Int64) {
	return testsock.Serve(t, func(_ int64, c net.Conn) {
		defer c.Close()
		for readRequest(c) {
			io.WriteString(c, answer)
			if !keep {
				return
			}
		}
	})
}
