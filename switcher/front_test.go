package switcher

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/turnout/turnout/internal/deadline"
	"github.com/turnout/turnout/internal/testsock"
)

func TestFrontServesPipelinedAndOldRequests(t *testing.T) {
	a := newBackend(t, "A", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		switch r.URL.Path {
		case "/empty":
			w.WriteHeader(http.StatusNoContent)
		case "/stream":
			w.Write([]byte("one "))
			w.(http.Flusher).Flush()
			w.Write([]byte("two"))
		default:
			fmt.Fprintf(w, "%s %s %d", r.Method, r.URL.RequestURI(), len(b))
		}
	})
	h := startSwitcher(t, "", []string{a.addr}, []string{a.addr})
	addr := h.addrs.Proxy[0]

	got := testsock.Exchange(t, addr, "GET /1 HTTP/1.1\r\nHost: x\r\n\r\nPOST /2 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET /empty HTTP/1.1\r\nHost: x\r\n\r\n", 3)
	if len(got) != 3 || testsock.Body(got[0]) != "GET /1 0" || testsock.Body(got[1]) != "POST /2 3" || got[2].StatusCode != http.StatusNoContent {
		t.Fatalf("pipelined requests: %d answers", len(got))
	}

	got = testsock.Exchange(t, addr, "GET /stream HTTP/1.1\r\nHost: x\r\n\r\n", 1)
	if len(got) != 1 || testsock.Body(got[0]) != "one two" || got[0].TransferEncoding == nil {
		t.Fatalf("a streamed answer must arrive whole and chunked: %+v", got)
	}

	got = testsock.Exchange(t, addr, "GET /old HTTP/1.0\r\nHost: x\r\n\r\n", 1)
	if len(got) != 1 || testsock.Body(got[0]) != "GET /old 0" || !got[0].Close {
		t.Fatalf("HTTP/1.0 request: %+v", got)
	}

	got = testsock.Exchange(t, addr, "HEAD /h HTTP/1.1\r\nHost: x\r\n\r\n", 1)
	if len(got) != 1 || got[0].StatusCode != 200 || testsock.Body(got[0]) != "" {
		t.Fatalf("HEAD: %+v", got)
	}

	// A chunked request body is not the front's: net/http takes the
	// connection over and answers it.
	got = testsock.Exchange(t, addr, "POST /chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /after HTTP/1.1\r\nHost: x\r\n\r\n", 2)
	if len(got) != 2 || testsock.Body(got[0]) != "POST /chunked 3" || testsock.Body(got[1]) != "GET /after 0" {
		t.Fatalf("chunked body handed to net/http: %d answers", len(got))
	}

	// A head larger than the front's buffer (a browser with many cookies)
	// goes to net/http, as does one that comes in pieces; keep-alive and
	// HTTP/1.0 keep-alive go on after either.
	big := "GET /big HTTP/1.1\r\nHost: x\r\nCookie: " + strings.Repeat("c", 3*4<<10) + "\r\n\r\n"
	got = testsock.Exchange(t, addr, big+"GET /next HTTP/1.1\r\nHost: x\r\n\r\n", 2)
	if len(got) != 2 || testsock.Body(got[0]) != "GET /big 0" || testsock.Body(got[1]) != "GET /next 0" {
		t.Fatalf("a large head: %d answers", len(got))
	}
	// An answer waiting in the buffer for a pipelined request goes out
	// before the connection is handed to net/http.
	got = testsock.Exchange(t, addr, "GET /first HTTP/1.1\r\nHost: x\r\n\r\n"+big, 2)
	if len(got) != 2 || testsock.Body(got[0]) != "GET /first 0" || testsock.Body(got[1]) != "GET /big 0" {
		t.Fatalf("pipelined before a large head: %d answers", len(got))
	}
	got = testsock.Exchange(t, addr, "GET /first HTTP/1.1\r\nHost: x\r\n\r\nPOST /chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 2)
	if len(got) != 2 || testsock.Body(got[0]) != "GET /first 0" || testsock.Body(got[1]) != "POST /chunked 3" {
		t.Fatalf("pipelined before a chunked body: %d answers", len(got))
	}
	// A CRLF after a body is skipped, as net/http does; bare LF heads are
	// net/http's.
	got = testsock.Exchange(t, addr, "POST /crlf HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc\r\nGET /lf HTTP/1.1\nHost: x\n\n", 2)
	if len(got) != 2 || testsock.Body(got[0]) != "POST /crlf 3" || testsock.Body(got[1]) != "GET /lf 0" {
		t.Fatalf("CRLF after a body, then a bare LF head: %d answers", len(got))
	}

	// Blank lines after a request, and nothing more yet: the answer must
	// not wait for a next request.
	got = testsock.Exchange(t, addr, "GET /blank HTTP/1.1\r\nHost: x\r\n\r\n\r\n\r\n", 1)
	if len(got) != 1 || testsock.Body(got[0]) != "GET /blank 0" {
		t.Fatalf("blank lines after a request: %d answers", len(got))
	}

	got = testsock.Exchange(t, addr, "GET /ka HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /ka2 HTTP/1.0\r\n\r\n", 2)
	if len(got) != 2 || got[0].Close || testsock.Body(got[1]) != "GET /ka2 0" || !got[1].Close {
		t.Fatalf("HTTP/1.0 keep-alive: %d answers", len(got))
	}

	got = testsock.Exchange(t, addr, "GARBAGE\r\n\r\n", 1)
	if len(got) != 1 || got[0].StatusCode != http.StatusBadRequest {
		t.Fatalf("a malformed request must get 400: %+v", got)
	}
}

// An answer goes out when what follows its request is not yet a whole
// head, blank lines or not; and a CRLF split across two reads is still a
// blank line, not the start of a head.
func TestFrontAnswersBeforeAPartialNextHead(t *testing.T) {
	a := newBackend(t, "A", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, r.URL.Path)
	})
	h := startSwitcher(t, "", []string{a.addr}, []string{a.addr})
	for _, raw := range []string{
		"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHo",
		"GET /a HTTP/1.1\r\nHost: x\r\n\r\n\r\nGET /b HTTP/1.1\r\nHo",
		"GET /a HTTP/1.1\r\nHost: x\r\n\r\n\nGET /b HTTP/1.1\r\nHo",
		"GET /a HTTP/1.1\r\nHost: x\r\n\r\n\r\n\r\nGET /b HTTP/1.1\r\nHo",
	} {
		c, br := testsock.Send(t, h.addrs.Proxy[0], raw)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Errorf("%q: no answer: %v", raw, err)
		} else if b, _ := io.ReadAll(resp.Body); string(b) != "/a" {
			t.Errorf("%q: answer %q", raw, b)
		}
		c.Close()
	}

	c, br := testsock.Send(t, h.addrs.Proxy[0], "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx\r")
	resp, err := http.ReadResponse(br, nil)
	must(t, err)
	io.ReadAll(resp.Body)
	io.WriteString(c, "\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err = http.ReadResponse(br, nil)
	must(t, err)
	if b, _ := io.ReadAll(resp.Body); resp.StatusCode != http.StatusOK || string(b) != "/b" {
		t.Errorf("a CRLF split across two reads: %d %q", resp.StatusCode, b)
	}
}

func TestFrontNoticesAHeldClientLeaving(t *testing.T) {
	a := newBackend(t, "A", nil)
	a.stop()
	b := newBackend(t, "B", nil)
	h := startSwitcher(t, fastChecks+`hold_timeout = "60s"`, []string{a.addr}, []string{b.addr})
	c, _ := testsock.Send(t, h.addrs.Proxy[0], "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx")
	waitFor(t, "the request to be held", func() bool { return h.sw.Held() == 1 })
	c.Close()
	waitFor(t, "the held request to end with its client", func() bool { return h.sw.Held() == 0 })
}

// A body that stops short of its Content-Length gets 408 after
// client_body_timeout and ends the connection: the bytes that come after
// it are the rest of a body, never a new request.
func TestFrontEndsAConnectionWhoseBodyStopsShort(t *testing.T) {
	a := newBackend(t, "A", nil)
	h := startSwitcher(t, "[proxy]\nclient_body_timeout = \"300ms\"\n", []string{a.addr}, []string{a.addr})
	c, br := testsock.Send(t, h.addrs.Proxy[0], "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 60\r\n\r\n0123456789")
	resp, err := http.ReadResponse(br, nil)
	must(t, err)
	if resp.StatusCode != http.StatusRequestTimeout || !resp.Close {
		t.Fatalf("a body cut short: status %d, close %v; want 408 and the connection closed", resp.StatusCode, resp.Close)
	}
	io.Copy(io.Discard, resp.Body)
	io.WriteString(c, "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, err := http.ReadResponse(br, nil); err == nil {
		t.Fatalf("the rest of a cut body was served as a request: %d", resp.StatusCode)
	}
	if n := a.hits.Load(); n != 0 {
		t.Fatalf("the backend got %d requests, want 0", n)
	}
}

// A kept-alive connection stays open for the next request, and is closed
// once it has waited client_idle_timeout for one.
func TestFrontClosesAConnectionIdleTooLong(t *testing.T) {
	a := newBackend(t, "A", nil)
	h := startSwitcher(t, "[proxy]\nclient_idle_timeout = \"200ms\"\n", []string{a.addr}, []string{a.addr})
	c, br := testsock.Send(t, h.addrs.Proxy[0], "")
	var sent time.Time // the last request's: its end is later, and the wait counts from that
	for i := range 3 {
		sent = time.Now()
		_, err := io.WriteString(c, "GET /again HTTP/1.1\r\nHost: x\r\n\r\n")
		must(t, err)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d on a kept-alive connection: %v", i+1, err)
		}
		io.Copy(io.Discard, resp.Body)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("an idle connection: read gave %v, want the front's close (EOF)", err)
	}
	if waited := time.Since(sent); waited < 150*time.Millisecond {
		t.Fatalf("an idle connection was closed after %v, before client_idle_timeout (200ms, less its slack)", waited)
	}
}

// A held request notices its client leaving even after the idle and header
// deadlines of the front have passed.
func TestFrontNoticesAHeldClientLeavingAfterItsDeadlines(t *testing.T) {
	a := newBackend(t, "A", nil)
	a.stop()
	b := newBackend(t, "B", nil)
	h := startSwitcher(t, fastChecks+`hold_timeout = "60s"
client_idle_timeout = "100ms"
client_header_timeout = "100ms"
`, []string{a.addr}, []string{b.addr})
	c, err := net.Dial("tcp", h.addrs.Proxy[0])
	must(t, err)
	_, err = io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\n")
	must(t, err)
	_, err = io.WriteString(c, "Content-Length: 1\r\n\r\nx")
	must(t, err)
	waitFor(t, "the request to be held", func() bool { return h.sw.Held() == 1 })
	<-time.After(300 * time.Millisecond) // past both deadlines: the scenario, not a wait for an event
	c.Close()
	waitFor(t, "the held request to end with its client", func() bool { return h.sw.Held() == 0 })
}

// startBenchFront starts a Switcher whose pools are one net/http backend
// answering "hello"; benchReq is what the front benchmarks send it.
func startBenchFront(b *testing.B) *harness {
	hello := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "hello") })
	back := httptest.NewServer(hello)
	b.Cleanup(back.Close)
	addr := strings.TrimPrefix(back.URL, "http://")
	return startSwitcher(b, "", []string{addr}, []string{addr})
}

const benchReq = "GET / HTTP/1.1\r\nHost: bench\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n"

// BenchmarkFront is the whole request path through the lean front: a real
// listener, keep-alive clients writing raw requests, the lean upstream
// client and a net/http backend. Allocations are the whole process's: the
// backend's and the clients' are in them too.
func BenchmarkFront(b *testing.B) {
	h := startBenchFront(b)
	b.ReportAllocs()
	b.SetParallelism(4)
	b.RunParallel(func(pb *testing.PB) {
		c, err := net.Dial("tcp", h.addrs.Proxy[0])
		if err != nil {
			b.Error(err)
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		for pb.Next() {
			if _, err := io.WriteString(c, benchReq); err != nil {
				b.Error(err)
				return
			}
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			if resp.StatusCode != http.StatusOK {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
}

// An answer to a pipelined request goes out when it is ready, not with the
// next request's (slow) answer, as net/http's server does.
func TestFrontAnswersAPipelinedRequestBeforeTheNextEnds(t *testing.T) {
	release := make(chan struct{})
	a := newBackend(t, "A", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			select {
			case <-release:
			case <-time.After(5 * time.Second):
			}
		}
		io.WriteString(w, r.URL.Path)
	})
	defer close(release)
	h := startSwitcher(t, "", []string{a.addr}, []string{a.addr})
	c, err := net.Dial("tcp", h.addrs.Proxy[0])
	must(t, err)
	defer c.Close()
	io.WriteString(c, "GET /fast HTTP/1.1\r\nHost: x\r\n\r\nGET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("first pipelined answer held behind the second one: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	if string(b) != "/fast" {
		t.Fatalf("got %q", b)
	}
}

// A held request whose body was followed by a CRLF (as some clients send)
// ends when its client leaves: the CRLF is not a sign of life.
func TestFrontNoticesAHeldClientLeavingAfterACRLF(t *testing.T) {
	a := newBackend(t, "A", nil)
	a.stop()
	b := newBackend(t, "B", nil)
	h := startSwitcher(t, fastChecks+`hold_timeout = "15s"`, []string{a.addr}, []string{b.addr})
	c, err := net.Dial("tcp", h.addrs.Proxy[0])
	must(t, err)
	_, err = io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx\r\n")
	must(t, err)
	waitFor(t, "the request to be held", func() bool { return h.sw.Held() == 1 })
	c.Close()
	waitFor(t, "the held request to end with its client", func() bool { return h.sw.Held() == 0 })
}

// After a CRLF split across two reads following a body, the connection is
// idle: it has the idle timeout, not the header timeout, to send its next
// request (net/http waits for a request's first bytes under the idle timeout).
func TestFrontKeepsTheIdleTimeoutAfterASplitCRLF(t *testing.T) {
	a := newBackend(t, "A", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, r.URL.Path)
	})
	h := startSwitcher(t, "[proxy]\nclient_header_timeout = \"200ms\"\nclient_idle_timeout = \"10s\"\n", []string{a.addr}, []string{a.addr})
	c, br := testsock.Send(t, h.addrs.Proxy[0], "")
	io.WriteString(c, "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx\r")
	resp, err := http.ReadResponse(br, nil)
	must(t, err)
	io.ReadAll(resp.Body)
	io.WriteString(c, "\n")
	// The scenario, not a synchronisation: the connection idles three
	// header timeouts, well within its idle timeout.
	time.Sleep(600 * time.Millisecond)
	io.WriteString(c, "GET /b HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err = http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("an idle connection was closed after the header timeout: %v", err)
	}
	io.ReadAll(resp.Body)
}

// Pipelined requests (blank lines, bodies, HTTP/1.0 keep-alive, HEAD, a
// close) split at every byte boundary across two writes all get their
// answers, in order.
func TestFrontServesPipelinedRequestsSplitAnywhere(t *testing.T) {
	a := newBackend(t, "A", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		io.WriteString(w, r.Method+" "+r.URL.Path+" "+string(b))
	})
	h := startSwitcher(t, "", []string{a.addr}, []string{a.addr})
	raw := "GET /1 HTTP/1.1\r\nHost: x\r\n\r\n\r\nPOST /2 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\r\nGET /3 HTTP/1.0\r\nConnection: keep-alive\r\n\r\nHEAD /4 HTTP/1.1\r\nHost: x\r\n\r\nPOST /5 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhiGET /6 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
	want := []string{"GET /1 ", "POST /2 hello", "GET /3 ", "", "POST /5 hi", "GET /6 "}
	methods := []string{"GET", "POST", "GET", "HEAD", "POST", "GET"}
	for split := 1; split < len(raw); split++ {
		c, err := net.Dial("tcp", h.addrs.Proxy[0])
		must(t, err)
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, raw[:split])
		time.Sleep(time.Millisecond) // the scenario, not a synchronisation: two segments, most likely two reads
		io.WriteString(c, raw[split:])
		br := bufio.NewReader(c)
		for i := range want {
			resp, err := http.ReadResponse(br, &http.Request{Method: methods[i]})
			if err != nil {
				t.Fatalf("split %d: answer %d: %v", split, i+1, err)
			}
			b, _ := io.ReadAll(resp.Body)
			if string(b) != want[i] {
				t.Fatalf("split %d: answer %d = %q, want %q", split, i+1, b, want[i])
			}
		}
		if _, err := br.ReadByte(); err != io.EOF {
			t.Fatalf("split %d: after Connection: close: %v", split, err)
		}
		c.Close()
	}
}

// Heads around the front's buffer size (4 KiB), after blank lines and
// pipelined behind others: the front serves or hands off each, in order.
func TestFrontServesHeadsAroundItsBufferSize(t *testing.T) {
	a := newBackend(t, "A", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		io.WriteString(w, r.Method+" "+r.URL.Path+" "+string(b)+" "+r.Header.Get("X-Pad")[:3])
	})
	h := startSwitcher(t, "", []string{a.addr}, []string{a.addr})
	mk := func(path string, size int, body string) string {
		head := "POST " + path + " HTTP/1.1\r\nHost: x\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\nX-Pad: "
		pad := size - len(head) - 4
		return head + strings.Repeat("p", pad) + "\r\n\r\n" + body
	}
	for size := 4080; size <= 4110; size++ {
		for _, prefix := range []string{"", "\r\n", "\r\n\r\n\r\n"} {
			raw := mk("/a", 2000, "12345") + prefix + mk("/b", size, "xy") + "\r\n" + mk("/c", size, "") + mk("/d", 100, "z")
			c, err := net.Dial("tcp", h.addrs.Proxy[0])
			must(t, err)
			c.SetDeadline(time.Now().Add(5 * time.Second))
			go io.WriteString(c, raw)
			br := bufio.NewReader(c)
			for i, want := range []string{"POST /a 12345 ppp", "POST /b xy ppp", "POST /c  ppp", "POST /d z ppp"} {
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatalf("size %d prefix %q: answer %d: %v", size, prefix, i+1, err)
				}
				b, _ := io.ReadAll(resp.Body)
				if string(b) != want {
					t.Fatalf("size %d prefix %q: answer %d = %q, want %q", size, prefix, i+1, b, want)
				}
			}
			c.Close()
		}
	}
}

// A held POST whose body is followed by a lone CR: after its answer the
// connection still waits under the idle timeout (the hold lifted every
// deadline), not forever.
func TestFrontKeepsTimeoutsAfterALoneCR(t *testing.T) {
	a := newBackend(t, "A", nil)
	a.stop()
	h := startSwitcher(t, fastChecks+"hold_timeout = \"15s\"\nclient_header_timeout = \"200ms\"\nclient_idle_timeout = \"300ms\"\n", []string{a.addr}, []string{a.addr})
	c, err := net.Dial("tcp", h.addrs.Proxy[0])
	must(t, err)
	defer c.Close()
	io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx\r")
	waitFor(t, "the request to be held", func() bool { return h.sw.Held() == 1 })
	a.start()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	must(t, err)
	io.ReadAll(resp.Body)
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("connection still open 3s after its answer (idle 300ms, header 200ms): %v", err)
	}
}

// A pipelined request that comes while the one before it is with the
// upstream is answered at once after it: its bytes arrive while the front
// is not reading, and must still wake the wait that follows the answer
// (see readable).
func TestFrontServesARequestThatCameWhileTheLastWasServed(t *testing.T) {
	arrived, release := make(chan struct{}), make(chan struct{})
	a := newBackend(t, "A", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(arrived)
			select {
			case <-release:
			case <-time.After(5 * time.Second):
			}
		}
		io.WriteString(w, r.URL.Path)
	})
	h := startSwitcher(t, "", []string{a.addr}, []string{a.addr})
	c, err := net.Dial("tcp", h.addrs.Proxy[0])
	must(t, err)
	defer c.Close()
	io.WriteString(c, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
	<-arrived
	io.WriteString(c, "GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
	// The scenario: the poller takes the second request's bytes while
	// the front waits for the upstream.
	testsock.AwaitPoll(t)
	close(release)
	readAnswers(t, c, "/slow", "/next")
}

// readAnswers reads from c one answer per path in paths, each with its
// path as body (as the tests' backends answer), within a few seconds.
func readAnswers(t *testing.T, c net.Conn, paths ...string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	for _, want := range paths {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("answer to %s: %v", want, err)
		}
		if b := testsock.Body(resp); b != want {
			t.Fatalf("got %q, want %q", b, want)
		}
	}
}

// A shutdown whose drain time runs out ends a held request (and so the
// switcher's Serve) at once, not at the end of hold_timeout: its client's
// connection is closed, and the hold's watch of it too.
func TestShutdownEndsAHeldRequest(t *testing.T) {
	a := newBackend(t, "A", nil)
	a.stop()
	b := newBackend(t, "B", nil)
	h := startSwitcher(t, strings.Replace(fastChecks, `drain_timeout = "10s"`, `drain_timeout = "100ms"`, 1)+`hold_timeout = "60s"`, []string{a.addr}, []string{b.addr})
	c, err := net.Dial("tcp", h.addrs.Proxy[0])
	must(t, err)
	defer c.Close()
	_, err = io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	must(t, err)
	waitFor(t, "the request to be held", func() bool { return h.sw.Held() == 1 })
	stopped := make(chan struct{})
	go func() { h.stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("shutdown waited for the held request's hold_timeout")
	}
}

// A request pipelined behind a body that is served outside readable (too
// large to be buffered whole), and followed by the client's half-close, is
// answered before the connection closes.
func TestFrontAnswersARequestThatCameBeforeTheClientsEnd(t *testing.T) {
	release := make(chan struct{})
	a := newBackend(t, "A", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if r.URL.Path == "/a" {
			<-release // the client's end is there before the front reads again
		}
		io.WriteString(w, r.URL.Path)
	})
	h := startSwitcher(t, "", []string{a.addr}, []string{a.addr})
	c, err := net.Dial("tcp", h.addrs.Proxy[0])
	must(t, err)
	defer c.Close()
	body := strings.Repeat("b", 6000)
	fmt.Fprintf(c, "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%sGET /b HTTP/1.1\r\nHost: x\r\n\r\n", len(body), body)
	c.(*net.TCPConn).CloseWrite()
	close(release)
	readAnswers(t, c, "/a", "/b")
}

// A request served outside readable whose answer outlasts the deadline set
// for its body keeps its connection: the wait for the next request has the
// idle timeout again.
func TestFrontKeepsAConnectionAfterASlowLargeRequest(t *testing.T) {
	a := newBackend(t, "A", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if r.URL.Path == "/slow" {
			time.Sleep(600 * time.Millisecond) // the scenario: past client_idle_timeout
		}
		io.WriteString(w, r.URL.Path)
	})
	h := startSwitcher(t, "[proxy]\nclient_idle_timeout = \"300ms\"\n", []string{a.addr}, []string{a.addr})
	c, _ := testsock.Send(t, h.addrs.Proxy[0], "")
	body := strings.Repeat("b", 6000) // more than the front's buffer: served outside
	fmt.Fprintf(c, "POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	must(t, err)
	if b := testsock.Body(resp); b != "/slow" {
		t.Fatalf("got %q", b)
	}
	io.WriteString(c, "GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err = http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("the next request on the kept-alive connection: %v", err)
	}
	if b := testsock.Body(resp); b != "/next" {
		t.Fatalf("got %q", b)
	}
}

// A shutdown whose drain time runs out closes the connection of a request
// still with the upstream at once, without an answer, not when the
// upstream answers: on the lean front, and on a TLS listener, whose server
// must have closed its clients before the upstream request is cut, or the
// cut turns into a 504.
func TestShutdownClosesAConnectionWhoseRequestIsInFlight(t *testing.T) {
	certFile, keyFile, roots := selfSigned(t)
	for _, listener := range []string{"lean", "TLS"} {
		t.Run(listener, func(t *testing.T) {
			arrived, release := make(chan struct{}), make(chan struct{})
			a := newBackend(t, "A", func(w http.ResponseWriter, r *http.Request) {
				close(arrived)
				<-release
				io.WriteString(w, "late")
			})
			defer close(release)
			h := startSwitcher(t, `tls_listen = ["127.0.0.1:0"]
tls_cert = "`+certFile+`"
tls_key = "`+keyFile+`"
`+strings.Replace(fastChecks, `drain_timeout = "10s"`, `drain_timeout = "100ms"`, 1), []string{a.addr}, []string{a.addr})
			var c net.Conn
			var err error
			if listener == "TLS" {
				c, err = tls.Dial("tcp", h.addrs.TLS[0], &tls.Config{RootCAs: roots, NextProtos: []string{"http/1.1"}})
			} else {
				c, err = net.Dial("tcp", h.addrs.Proxy[0])
			}
			must(t, err)
			defer c.Close()
			io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			<-arrived
			go h.stop()
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if b, err := io.ReadAll(c); deadline.IsTimeout(err) || len(b) > 0 {
				t.Fatalf("the client saw %q, %v; want its connection closed while the upstream still works", b, err)
			}
		})
	}
}

// A graceful shutdown ends a busy keep-alive connection after its request
// in flight, as net/http does, even when the client pipelines: it does not
// keep serving it until drain_timeout runs out.
func TestShutdownEndsAPipeliningConnection(t *testing.T) {
	a := newBackend(t, "A", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.URL.Path) })
	h := startSwitcher(t, strings.Replace(fastChecks, `drain_timeout = "10s"`, `drain_timeout = "30s"`, 1), []string{a.addr}, []string{a.addr})
	c, err := net.Dial("tcp", h.addrs.Proxy[0])
	must(t, err)
	defer c.Close()
	go func() {
		// Large writes keep the socket full even when the test's other
		// goroutines take the cores: a read that drains it would let the
		// connection see the shutdown when it goes idle.
		batch := strings.Repeat("GET /p HTTP/1.1\r\nHost: x\r\n\r\n", 5000)
		for {
			if _, err := io.WriteString(c, batch); err != nil {
				return
			}
		}
	}()
	var answers atomic.Int64
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		br := bufio.NewReader(c)
		for {
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				return
			}
			io.Copy(io.Discard, resp.Body)
			answers.Add(1)
		}
	}()
	waitFor(t, "some answers", func() bool { return answers.Load() > 100 })
	go h.stop()
	// Well before drain_timeout, which would close it anyway.
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatalf("a graceful shutdown kept a pipelining connection open (%d answers)", answers.Load())
	}
}

// Running out of file descriptors (each held request now takes two: its
// socket and the watch's duplicate) must not end the proxy listener.
func TestFrontKeepsItsListenerWhenDescriptorsRunOut(t *testing.T) {
	a := newBackend(t, "A", nil)
	a.stop()
	b := newBackend(t, "B", nil)
	h := startSwitcher(t, fastChecks+`hold_timeout = "3s"`, []string{a.addr}, []string{b.addr})
	var old syscall.Rlimit
	must(t, syscall.Getrlimit(syscall.RLIMIT_NOFILE, &old))
	es, _ := os.ReadDir("/proc/self/fd")
	lim := old
	lim.Cur = uint64(len(es) + 40)
	must(t, syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim))
	defer syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old)
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range 30 {
		c, err := net.Dial("tcp", h.addrs.Proxy[0])
		if err != nil {
			break // the test's own side ran out
		}
		conns = append(conns, c)
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		time.Sleep(20 * time.Millisecond) // the scenario: each request is held before the next connects
	}
	for _, c := range conns {
		c.Close()
	}
	conns = nil
	syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old)
	waitFor(t, "holds to end", func() bool { return h.sw.Held() == 0 })
	// The accept loop may still be in its backoff (at most 1 s): the
	// connection waits in the listen backlog meanwhile.
	c, err := net.DialTimeout("tcp", h.addrs.Proxy[0], time.Second)
	if err != nil {
		t.Fatalf("the proxy listener is gone after fds ran out: %v", err)
	}
	defer c.Close()
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(6 * time.Second))
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	if !strings.HasPrefix(string(buf[:n]), "HTTP/1.1") {
		t.Fatalf("no answer after fds ran out: %q %v", buf[:n], err)
	}
}
