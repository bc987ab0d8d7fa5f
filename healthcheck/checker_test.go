package healthcheck

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/turnout/turnout/config"
	"github.com/turnout/turnout/internal/testsock"
)

// testHealth returns complete http settings with a generous timeout.
func testHealth() config.Health {
	return config.Health{
		Type:         "http",
		Path:         "/healthz",
		ExpectStatus: config.StatusRanges{{Lo: 200, Hi: 399}},
		Interval:     config.Duration(20 * time.Millisecond),
		Timeout:      config.Duration(10 * time.Second),
		Rise:         3,
		Fall:         2,
	}
}

// tcpServer returns the config.Server of an httptest server.
func tcpServer(t *testing.T, srv *httptest.Server) config.Server {
	t.Helper()
	return config.Server{Network: "tcp", Address: srv.Listener.Addr().String(), Weight: 1}
}

// startHTTP starts a real http backend on 127.0.0.1.
func startHTTP(t *testing.T, h http.HandlerFunc) (*httptest.Server, config.Server) {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv, tcpServer(t, srv)
}

// hangingBackend is a backend that never answers; arrived yields once a
// request has reached it.
func hangingBackend(t *testing.T) (s config.Server, arrived <-chan struct{}) {
	t.Helper()
	ch := make(chan struct{}, 1)
	_, s = startHTTP(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case ch <- struct{}{}:
		default: // one is enough
		}
		<-r.Context().Done()
	})
	return s, ch
}

// startUnix serves h on a real unix socket in t.TempDir().
func startUnix(t *testing.T, h http.HandlerFunc) config.Server {
	t.Helper()
	path := filepath.Join(t.TempDir(), "app.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatalf("listen on %s: %v", path, err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return config.Server{Network: "unix", Address: path, Weight: 1}
}

// closedPort returns a loopback address where nothing listens.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func checkResult(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestHTTPCheckStatusAndBody(t *testing.T) {
	big := strings.Repeat("x", maxBody) + "ok"
	cases := []struct {
		name    string
		status  int
		body    string
		expect  config.StatusRanges
		want    string // "" for a pass
		expBody string
	}{
		{name: "200 passes", status: 200},
		{name: "302 passes, not followed", status: 302},
		{name: "503 fails", status: 503, want: "status 503, want 200-399"},
		{name: "404 fails", status: 404, want: "status 404, want 200-399"},
		{name: "204 in list", status: 204, expect: config.StatusRanges{{Lo: 200, Hi: 200}, {Lo: 204, Hi: 204}}},
		{name: "302 outside 2xx", status: 302, expect: config.StatusRanges{{Lo: 200, Hi: 299}}, want: "status 302, want 200-299"},
		{name: "500 outside list", status: 500, expect: config.StatusRanges{{Lo: 200, Hi: 200}, {Lo: 204, Hi: 204}}, want: "status 500, want 200,204"},
		{name: "body contains", status: 200, body: "status: ok\n", expBody: "ok"},
		{name: "body lacks", status: 200, body: "status: starting\n", expBody: "ok", want: `body lacks "ok"`},
		{name: "body beyond 64 KiB not read", status: 200, body: big, expBody: "ok", want: `body lacks "ok"`},
		{name: "wrong status wins over body", status: 500, body: "ok", expBody: "ok", want: "status 500, want 200-399"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, s := startHTTP(t, func(w http.ResponseWriter, r *http.Request) {
				if tc.status == 302 {
					w.Header().Set("Location", "/elsewhere")
				}
				w.WriteHeader(tc.status)
				w.Write([]byte(tc.body))
			})
			h := testHealth()
			if tc.expect != nil {
				h.ExpectStatus = tc.expect
			}
			h.ExpectBody = tc.expBody
			got := checkResult(NewChecker(s, h).Check(context.Background()))
			if got != tc.want {
				t.Fatalf("check = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestHTTPCheckRequest(t *testing.T) {
	type seen struct{ host, agent, path string }
	cases := []struct {
		name     string
		unix     bool
		host     string
		path     string
		wantHost string // "" means the server's address
	}{
		{name: "default host is the address", path: "/healthz"},
		{name: "host header set", host: "app.example.com", path: "/up?full=1", wantHost: "app.example.com"},
		{name: "unix socket default host", unix: true, path: "/healthz", wantHost: "localhost"},
		{name: "unix socket host header", unix: true, host: "app.internal", path: "/healthz", wantHost: "app.internal"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := make(chan seen, 1)
			handler := func(w http.ResponseWriter, r *http.Request) {
				got <- seen{r.Host, r.UserAgent(), r.URL.RequestURI()}
			}
			var s config.Server
			if tc.unix {
				s = startUnix(t, handler)
			} else {
				_, s = startHTTP(t, handler)
			}
			h := testHealth()
			h.Host, h.Path = tc.host, tc.path
			if err := NewChecker(s, h).Check(context.Background()); err != nil {
				t.Fatalf("check: %v", err)
			}
			want := seen{tc.wantHost, "turnout-healthcheck", tc.path}
			if want.host == "" {
				want.host = s.Address
			}
			if g := <-got; g != want {
				t.Fatalf("backend saw %+v, want %+v", g, want)
			}
		})
	}
}

func TestHTTPCheckTimeout(t *testing.T) {
	_, s := startHTTP(t, func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	h := testHealth()
	h.Timeout = config.Duration(50 * time.Millisecond)
	got := checkResult(NewChecker(s, h).Check(context.Background()))
	if got != "timeout after 50ms" {
		t.Fatalf("check = %q, want %q", got, "timeout after 50ms")
	}
}

func TestHTTPCheckKeepsOneConnection(t *testing.T) {
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok"))
	}))
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	c := NewChecker(tcpServer(t, srv), testHealth())
	for range 5 {
		if err := c.Check(context.Background()); err != nil {
			t.Fatalf("check: %v", err)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("5 checks opened %d connections, want 1", n)
	}
}

func TestCheckers(t *testing.T) {
	_, up := startHTTP(t, func(w http.ResponseWriter, r *http.Request) {})
	sock := startUnix(t, func(w http.ResponseWriter, r *http.Request) {})
	_, upPort, _ := net.SplitHostPort(up.Address)
	port, _ := strconv.Atoi(upPort)
	refused := config.Server{Network: "tcp", Address: closedPort(t)}
	missingSock := config.Server{Network: "unix", Address: filepath.Join(t.TempDir(), "none.sock")}

	cases := []struct {
		name   string
		typ    string
		server config.Server
		port   int
		want   string
	}{
		{name: "tcp pass", typ: "tcp", server: up},
		{name: "tcp refused", typ: "tcp", server: refused, want: "connect: connection refused"},
		{name: "tcp port override", typ: "tcp", server: refused, port: port},
		{name: "tcp unix socket", typ: "tcp", server: sock},
		{name: "tcp missing unix socket", typ: "tcp", server: missingSock, want: "connect: no such file or directory"},
		{name: "http refused", typ: "http", server: refused, want: "connect: connection refused"},
		{name: "http port override", typ: "http", server: refused, port: port},
		{name: "http unix socket", typ: "http", server: sock},
		{name: "unknown type", typ: "grpc", server: up, want: `unknown health check type "grpc"; use "http" or "tcp"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := testHealth()
			h.Type, h.Port = tc.typ, tc.port
			got := checkResult(NewChecker(tc.server, h).Check(context.Background()))
			if got != tc.want {
				t.Fatalf("check = %q, want %q", got, tc.want)
			}
		})
	}
}

func BenchmarkHTTPCheck(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok"))
	}))
	defer srv.Close()
	h := testHealth()
	h.ExpectBody = "ok"
	c := NewChecker(config.Server{Network: "tcp", Address: srv.Listener.Addr().String()}, h)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := c.Check(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// rawBackend is a TCP backend that answers every request with answer, then
// closes the connection when closeAfter is set; with answer "" it closes the
// connection without answering. It counts the connections it accepted.
func rawBackend(t *testing.T, answer string, closeAfter bool) (config.Server, *atomic.Int64) {
	t.Helper()
	addr, conns := testsock.Serve(t, func(_ int64, c net.Conn) {
		defer c.Close()
		br := bufio.NewReader(c)
		for {
			if _, err := http.ReadRequest(br); err != nil || answer == "" {
				return
			}
			if _, err := io.WriteString(c, answer); err != nil || closeAfter {
				return
			}
		}
	})
	return config.Server{Network: "tcp", Address: addr, Weight: 1}, conns
}

// The checker keeps a connection only when the answer allows it, and a kept
// connection the server closed meanwhile is replaced within the same check:
// a server's idle timeout is not a failed check.
func TestHTTPCheckConnectionReuse(t *testing.T) {
	const checks = 4
	ok := "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
	cases := []struct {
		name       string
		answer     string
		closeAfter bool
		expBody    string
		wantConns  int64
		want       string
	}{
		{name: "kept alive", answer: ok, wantConns: 1},
		{name: "server closes after each answer", answer: ok, closeAfter: true, wantConns: checks},
		{name: "connection close", answer: "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", wantConns: checks},
		{name: "unknown length", answer: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", wantConns: checks},
		{name: "body over 64 KiB", answer: "HTTP/1.1 200 OK\r\nContent-Length: 70000\r\n\r\n" + strings.Repeat("x", 70000), wantConns: checks},
		{name: "failing status kept alive", answer: "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy", wantConns: 1, want: "status 503, want 200-399"},
		{name: "interim response skipped", answer: "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + ok, wantConns: 1},
		{name: "http/1.0 closes", answer: "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", wantConns: checks},
		{name: "expected body, chunked", answer: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\no\r\n1\r\nk\r\n0\r\n\r\n", expBody: "ok", wantConns: checks},
		{name: "expected body, kept alive", answer: ok, expBody: "ok", wantConns: 1},
		{name: "expected body missing", answer: ok, expBody: "ready", wantConns: 1, want: `body lacks "ready"`},
		{name: "expected body ends at close", answer: "HTTP/1.1 200 OK\r\n\r\nok", closeAfter: true, expBody: "ok", wantConns: checks},
		{name: "fresh connection closed unanswered fails", answer: "", wantConns: checks, want: "connection closed by the server without an answer"},
		{name: "close among other connection options", answer: "HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\nContent-Length: 2\r\n\r\nok", wantConns: checks},
		{name: "http/1.0 keep-alive kept alive", answer: "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok", wantConns: 1},
		{name: "304 has no body", answer: "HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n", wantConns: 1},
		{name: "bare LF line ends, no reason", answer: "HTTP/1.1 204\nDate: x\n\n", wantConns: 1},
		{name: "framed twice closes", answer: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", expBody: "ok", wantConns: checks},
		{name: "101 fails and closes", answer: "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n", wantConns: checks, want: "status 101, want 200-399"},
		{name: "header line longer than the buffer", answer: "HTTP/1.1 200 OK\r\nX: " + strings.Repeat("x", 5000) + "\r\nContent-Length: 2\r\n\r\nok", wantConns: 1},
		{name: "head over 1 MiB fails", answer: "HTTP/1.1 200 OK\r\nX: " + strings.Repeat("x", 1<<20) + "\r\nContent-Length: 2\r\n\r\nok", wantConns: checks, want: "response head larger than 1 MiB"},
		{name: "bad status line fails", answer: "HTTP/2 200 OK\r\n\r\n", wantConns: checks, want: `malformed HTTP version "HTTP/2"`},
		{name: "unknown transfer encoding fails", answer: "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", wantConns: checks, want: `unsupported transfer encoding: "gzip"`},
		{name: "cut head fails", answer: "HTTP/1.1 200 OK\r\nContent-", closeAfter: true, wantConns: checks, want: "unexpected EOF"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, conns := rawBackend(t, tc.answer, tc.closeAfter)
			h := testHealth()
			h.ExpectBody = tc.expBody
			c := NewChecker(s, h)
			for i := range checks {
				if got := checkResult(c.Check(context.Background())); got != tc.want {
					t.Fatalf("check %d = %q, want %q", i, got, tc.want)
				}
			}
			if n := conns.Load(); n != tc.wantConns {
				t.Fatalf("%d checks opened %d connections, want %d", checks, n, tc.wantConns)
			}
		})
	}
}

func TestHTTPCheckCancel(t *testing.T) {
	s, arrived := hangingBackend(t)
	h := testHealth()
	h.Timeout = config.Duration(time.Hour)
	c := NewChecker(s, h)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Check(ctx) }()
	await(t, arrived, "check never reached the backend")
	cancel()
	if err := await(t, done, "Check did not return after its context was cancelled"); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled check = %v, want context.Canceled", err)
	}
}
