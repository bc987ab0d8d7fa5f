package switcher

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"reflect"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/turnout/turnout/internal/testsock"
)

// rawListener serves every connection it accepts on loopback with serve,
// in a goroutine of its own, and closes it after; it returns the address.
func rawListener(t *testing.T, serve func(c net.Conn)) string {
	t.Helper()
	addr, _ := testsock.Serve(t, func(_ int64, c net.Conn) {
		defer c.Close()
		serve(c)
	})
	return addr
}

// serveEach serves every connection ln accepts with serve, in a goroutine
// of its own, and closes it after; until ln is closed.
func serveEach(ln net.Listener, serve func(c net.Conn)) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			serve(c)
		}()
	}
}

// rawBackend answers every request 200 "ok" and hands each request head
// it read, as sent, to heads.
func rawBackend(t *testing.T) (addr string, heads <-chan textproto.MIMEHeader) {
	t.Helper()
	ch := make(chan textproto.MIMEHeader, 100)
	return rawListener(t, func(c net.Conn) {
		tp := textproto.NewReader(bufio.NewReader(c))
		for {
			line, err := tp.ReadLine()
			if err != nil {
				return
			}
			h, err := tp.ReadMIMEHeader()
			if err != nil {
				return
			}
			if strings.HasPrefix(line, "GET /healthz") {
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
				continue
			}
			if n, _ := strconv.Atoi(h.Get("Content-Length")); n > 0 {
				io.CopyN(io.Discard, tp.R, int64(n))
			}
			ch <- h
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	}), ch
}

func TestLeanPathSendsHeadersOnceAndDropsSpoofableOnes(t *testing.T) {
	addr, heads := rawBackend(t)
	h := startSwitcher(t, "", []string{addr}, []string{addr})
	req, _ := http.NewRequest(http.MethodPost, h.proxy+"/", strings.NewReader("body"))
	req.Header.Set("Forwarded", "for=6.6.6.6")
	req.Header.Set("X-Forwarded-Host", "evil.example")
	req.Header.Set("Connection", "X-Hop")
	req.Header.Set("X-Hop", "secret")
	resp, err := client.Do(req)
	must(t, err)
	resp.Body.Close()
	got := <-heads
	if n := len(got["Content-Length"]); n != 1 {
		t.Errorf("Content-Length sent %d times, want once (strict servers reject duplicates)", n)
	}
	for _, k := range []string{"Forwarded", "X-Hop"} {
		if v := got.Get(k); v != "" {
			t.Errorf("%s: %q reached the upstream; an untrusted or hop-by-hop header must not", k, v)
		}
	}
	if v := got.Get("X-Forwarded-Host"); v == "evil.example" {
		t.Errorf("an untrusted client's X-Forwarded-Host reached the upstream")
	}
	if v := got.Get("X-Forwarded-For"); v != "127.0.0.1" {
		t.Errorf("X-Forwarded-For %q, want the client's address", v)
	}
}

func TestUpstreamTimeoutIsNotRetried(t *testing.T) {
	var hits atomic.Int64
	release := make(chan struct{})
	defer close(release)
	slow := newBackend(t, "slow", func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		<-release
	})
	other := newBackend(t, "other", nil)
	h := startSwitcher(t, "[proxy]\nupstream_timeout = \"200ms\"\n[health]\ninterval = \"1h\"\n", []string{slow.addr}, []string{other.addr})
	if code, _ := do(t, http.MethodGet, h.proxy+"/", ""); code != http.StatusGatewayTimeout {
		t.Fatalf("a hung upstream gave %d, want 504", code)
	}
	if n := hits.Load(); n != 1 {
		t.Fatalf("the app saw the timed-out GET %d times, want once", n)
	}
}

func TestSwitchRequestDuringAnotherSwitchIsAConflict(t *testing.T) {
	a := newBackend(t, "A", nil)
	dead := testsock.FreeAddr(t)
	h := startSwitcher(t, fastChecks, []string{a.addr}, []string{dead})
	ctx, cancel := context.WithCancel(context.Background())
	warming := make(chan error, 1)
	go func() {
		_, err := h.sw.Switch(ctx, SwitchRequest{To: "B", Timeout: time.Minute}, nil)
		warming <- err
	}()
	waitFor(t, "the switch to B to start", func() bool { return h.sw.Status().Switching != nil })
	// A is active, but a switch away from it is warming: asking for A must
	// not answer "already active" and then let B take traffic.
	for _, to := range []string{"A", "B"} {
		if _, err := h.sw.Switch(context.Background(), SwitchRequest{To: to}, nil); !errors.Is(err, ErrConflict) {
			t.Fatalf("switch %s during a switch to B: %v, want a conflict", to, err)
		}
	}
	cancel()
	if err := <-warming; !errors.Is(err, ErrAborted) {
		t.Fatalf("cancelled switch: %v, want aborted", err)
	}
}

// cannedBackend answers each request with answers[path], as raw bytes.
func cannedBackend(t *testing.T, answers map[string]string) string {
	t.Helper()
	return rawListener(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
			answer, ok := answers[req.URL.Path]
			if !ok {
				answer = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
			}
			io.WriteString(c, answer)
		}
	})
}

// The upstream's header fields reach the client as sent, less the
// hop-by-hop ones, whether the front writes them or net/http does (a
// connection the front handed over).
func TestUpstreamHeaderFieldsPassAsSentLessHopByHop(t *testing.T) {
	addr := cannedBackend(t, map[string]string{
		"/hop": "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nConnection: keep-alive, X-Hop\r\n" +
			"Keep-Alive: timeout=5\r\nX-Hop: secret\r\nproxy-connection: x\r\nX-Kept:  spaced  \r\n" +
			"x-many: 1\r\nX-Many: 2\r\nContent-Length: 3\r\n\r\nhop",
		"/dated": "HTTP/1.1 201 Made\r\ndate: Mon, 02 Jan 2006 15:04:05 GMT\r\nContent-Length: 5\r\n\r\ndated",
		"/close": "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 5\r\n\r\nclose",
		"/none":  "HTTP/1.1 204 No Content\r\nX-A: b\r\n\r\n",
		"/listed": "HTTP/1.1 200 OK\r\nContent-Length: 6\r\nDate: Mon, 02 Jan 2006 15:04:05 GMT\r\n" +
			"Connection: content-length,  DATE \r\n\r\nlisted",
	})
	h := startSwitcher(t, "", []string{addr}, []string{addr})
	proxy := strings.TrimPrefix(h.proxy, "http://")
	for _, handedOff := range []bool{false, true} {
		extra := ""
		if handedOff {
			extra = "X-Big: " + strings.Repeat("b", 5000) + "\r\n" // larger than the front's buffer
		}
		got := testsock.Exchange(t, proxy, "GET /hop HTTP/1.1\r\nHost: x\r\n"+extra+"\r\n"+
			"GET /dated HTTP/1.1\r\nHost: x\r\n"+extra+"\r\n"+
			"GET /close HTTP/1.1\r\nHost: x\r\n"+extra+"\r\n"+
			"GET /none HTTP/1.1\r\nHost: x\r\n"+extra+"\r\n"+
			"GET /listed HTTP/1.1\r\nHost: x\r\n"+extra+"\r\n", 5)
		if len(got) != 5 {
			t.Fatalf("handed off %v: %d responses, want 5 on one connection", handedOff, len(got))
		}
		hop, dated, closed, none, listed := got[0], got[1], got[2], got[3], got[4]
		for _, k := range []string{"Connection", "Keep-Alive", "X-Hop", "Proxy-Connection"} {
			if v := hop.Header.Values(k); len(v) > 0 {
				t.Errorf("handed off %v: hop-by-hop %s: %q reached the client", handedOff, k, v)
			}
		}
		if hop.Header.Get("Content-Type") != "text/plain" || hop.Header.Get("X-Kept") != "spaced" ||
			!reflect.DeepEqual(hop.Header.Values("X-Many"), []string{"1", "2"}) || len(hop.Header.Values("Date")) != 1 || testsock.Body(hop) != "hop" {
			t.Errorf("handed off %v: /hop gave %v, want its end-to-end fields, one Date and its body", handedOff, hop.Header)
		}
		if v := dated.Header.Values("Date"); dated.StatusCode != 201 || len(v) != 1 || v[0] != "Mon, 02 Jan 2006 15:04:05 GMT" || testsock.Body(dated) != "dated" {
			t.Errorf("handed off %v: /dated gave %d %v, want 201 with the upstream's one Date", handedOff, dated.StatusCode, dated.Header)
		}
		if closed.Close || testsock.Body(closed) != "close" {
			t.Errorf("handed off %v: the upstream's Connection: close reached the client (close %v)", handedOff, closed.Close)
		}
		if none.StatusCode != http.StatusNoContent || none.Header.Get("X-A") != "b" {
			t.Errorf("handed off %v: /none gave %d %v", handedOff, none.StatusCode, none.Header)
		}
		// Fields that Connection lists are hop-by-hop even when they are
		// the framing: the client gets a body framed anew and a Date.
		if v := listed.Header.Get("Date"); v == "Mon, 02 Jan 2006 15:04:05 GMT" || v == "" || testsock.Body(listed) != "listed" {
			t.Errorf("handed off %v: /listed gave %v, want the listed fields dropped and the body whole", handedOff, listed.Header)
		}
	}
}

// A GET that the server reads and then dies on (no answer) is retried once
// on another server, not again on the same one.
func TestACrashingGETGoesToOneOtherServerOnly(t *testing.T) {
	var seen atomic.Int64
	crash := func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			if req.URL.Path == "/healthz" {
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
				continue
			}
			seen.Add(1)
			time.Sleep(50 * time.Millisecond) // the app works, then crashes
			return
		}
	}
	a1 := rawListener(t, crash)
	a2 := rawListener(t, crash)
	h := startSwitcher(t, "", []string{a1, a2}, []string{a1})
	got := testsock.Exchange(t, h.addrs.Proxy[0], "GET /poison HTTP/1.1\r\nHost: x\r\n\r\n", 1)
	if len(got) != 1 || got[0].StatusCode != http.StatusBadGateway {
		t.Fatalf("a GET both servers crash on: %+v, want a 502", got)
	}
	if n := seen.Load(); n != 2 {
		t.Fatalf("the app got the crashing GET %d times, want 2: a GET is retried once, on another server", n)
	}
}

// An upstream that switches protocols on the lean path, where no request
// asks it to, gets the client a 502, not the 101; its connection is not
// used again.
func TestLeanPathRefusesAnUnaskedUpgrade(t *testing.T) {
	addr := cannedBackend(t, map[string]string{
		"/sw": "HTTP/1.1 101 Switching Protocols\r\nUpgrade: evil\r\nConnection: Upgrade\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nsmuggle",
	})
	h := startSwitcher(t, "", []string{addr}, []string{addr})
	proxy := h.addrs.Proxy[0]
	got := testsock.Exchange(t, proxy, "GET /sw HTTP/1.1\r\nHost: x\r\n\r\n", 1)
	if len(got) != 1 || got[0].StatusCode != http.StatusBadGateway {
		t.Fatalf("an unasked 101: %+v, want a 502", got)
	}
	got = testsock.Exchange(t, proxy, "GET /other HTTP/1.1\r\nHost: x\r\n\r\n", 1)
	if len(got) != 1 || testsock.Body(got[0]) != "ok" {
		t.Fatalf("the next request: %+v", got)
	}
}

// An informational response (103 Early Hints) reaches the client before
// the final one, on the lean path too; its hop-by-hop fields do not.
func TestLeanPathPassesOnEarlyHints(t *testing.T) {
	addr := cannedBackend(t, map[string]string{
		"/eh": "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\nKeep-Alive: timeout=5\r\n\r\n" +
			"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\neh",
	})
	h := startSwitcher(t, "", []string{addr}, []string{addr})
	got := testsock.Exchange(t, h.addrs.Proxy[0], "GET /eh HTTP/1.1\r\nHost: x\r\n\r\n", 2)
	if len(got) != 2 || got[0].StatusCode != http.StatusEarlyHints || got[1].StatusCode != 200 || testsock.Body(got[1]) != "eh" {
		t.Fatalf("answers: %+v, want a 103, then the 200", got)
	}
	if got[0].Header.Get("Link") != "</a.css>; rel=preload" || got[0].Header.Get("Keep-Alive") != "" {
		t.Fatalf("103's fields: %v", got[0].Header)
	}
	if got[1].Header.Get("Link") != "" {
		t.Fatalf("the 103's fields went on to the final answer: %v", got[1].Header)
	}
}

// restartingServer is the only server of a test: it answers health checks,
// and on the first other request calls die, which must close ln (the server
// goes away); 300 ms later it is back as a plain backend.
func restartingServer(t *testing.T, die func(c net.Conn, line string, br *bufio.Reader, ln net.Listener)) string {
	b0 := newBackend(t, "A", nil)
	b := &backend{t: t, name: "A", addr: testsock.FreeAddr(t), handler: b0.handler}
	t.Cleanup(b.stop)
	ln, err := net.Listen("tcp", b.addr)
	must(t, err)
	go serveEach(ln, func(c net.Conn) {
		br := bufio.NewReaderSize(c, 16) // reads little past the request line
		line, _ := br.ReadString('\n')
		if strings.Contains(line, "/healthz") {
			http.ReadRequest(bufio.NewReader(io.MultiReader(strings.NewReader(line), br)))
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
			return
		}
		die(c, line, br, ln)
		time.Sleep(300 * time.Millisecond) // the scenario: down for a while
		b.start()
	})
	return b.addr
}

// The only server restarts: it closes its listener and resets a new
// connection whose request (over 4 KiB, so turnout cannot tell it was
// unread) it never read. The GET is held and served after the restart.
func TestALargeGETDroppedByARestartingServerIsHeld(t *testing.T) {
	addr := restartingServer(t, func(c net.Conn, _ string, _ *bufio.Reader, ln net.Listener) {
		ln.Close()
		time.Sleep(20 * time.Millisecond) // the scenario: the request waits unread
		c.Close()                         // unread bytes: a reset
	})
	h := startSwitcher(t, fastChecks+"hold_timeout = \"10s\"\n", []string{addr}, []string{addr})
	got := testsock.Exchange(t, h.addrs.Proxy[0], "GET /big HTTP/1.1\r\nHost: x\r\nX-Pad: "+strings.Repeat("p", 5000)+"\r\n\r\n", 1)
	if len(got) != 1 || got[0].StatusCode != 200 {
		t.Fatalf("a GET dropped unread by a restarting server: %+v, want 200 after the hold", got)
	}
}

// The only server is killed while it works on a GET: the server takes no
// new connection, so it is down, and the GET is held and served after the
// restart, not answered 502: a server that takes no new connection never
// saw the retry.
func TestAGETInFlightWhenTheOnlyServerIsKilledIsHeld(t *testing.T) {
	addr := restartingServer(t, func(c net.Conn, line string, br *bufio.Reader, ln net.Listener) {
		http.ReadRequest(bufio.NewReader(io.MultiReader(strings.NewReader(line), br)))
		time.Sleep(50 * time.Millisecond) // the scenario: at work
		ln.Close()                        // killed
		c.Close()
	})
	h := startSwitcher(t, fastChecks+"hold_timeout = \"10s\"\n", []string{addr}, []string{addr})
	got := testsock.Exchange(t, h.addrs.Proxy[0], "GET /x HTTP/1.1\r\nHost: x\r\n\r\n", 1)
	if len(got) != 1 || got[0].StatusCode != 200 {
		t.Fatalf("a GET in flight when the only server was killed: %+v, want 200 after the restart", got)
	}
}
