package switcher

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/turnout/turnout/internal/deadline"
	"github.com/turnout/turnout/internal/testsock"
)

// sendRaw writes raw on a new connection to addr and reads the answers
// until the connection ends: their statuses, and whether the proxy closed
// the connection (rather than leaving it open past the read deadline).
func sendRaw(t *testing.T, addr, raw string) (statuses []int, closed bool) {
	t.Helper()
	c, br := testsock.Send(t, addr, raw)
	c.SetDeadline(time.Now().Add(5 * time.Second)) // a connection left open answers no more within it
	for {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return statuses, !deadline.IsTimeout(err)
		}
		io.Copy(io.Discard, resp.Body)
		statuses = append(statuses, resp.StatusCode)
		if len(statuses) == 10 {
			return statuses, false
		}
	}
}

// The request rules (docs/request-rules.md), raw requests over real
// sockets: what the client gets, whether its connection ends, and how many
// requests the backend saw.
func TestRequestRules(t *testing.T) {
	back := newBackend(t, "A", nil)
	h := startSwitcher(t, "", []string{back.addr}, []string{back.addr})
	addr := h.addrs.Proxy[0]
	big := strings.Repeat("c", 5<<10) // a head larger than the front's buffer: net/http's
	const (
		ok    = "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
		chunk = "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
	)
	// Each case is followed by this request: served when the connection
	// stays open, never read when the proxy closes it.
	const next = "GET /next HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
	for _, tc := range []struct {
		name   string
		raw    string
		want   []int // statuses in order
		closed bool  // the proxy closes the connection after them
		hits   int64 // requests the backend saw, next's not counted; -1: any
	}{
		{"plain", ok, []int{200}, false, 1},
		// Framing (RFC 9112 section 6): refused, and the connection ends.
		{"CL and TE", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", []int{400}, true, 0},
		{"CL and TE, a large body", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n40000\r\n" + strings.Repeat("b", 256<<10), []int{400}, true, 0},
		{"TE and CL", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", []int{400}, true, 0},
		{"chunked HTTP/1.0 smuggling a request", "POST / HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\nGET /smuggled HTTP/1.0\r\nHost: x\r\n\r\n", []int{400}, true, 0},
		{"two equal Content-Length", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx", []int{400}, true, 0},
		{"two Content-Length", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxy", []int{400}, true, 0},
		{"bad Content-Length", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +1\r\n\r\nx", []int{400}, true, 0},
		{"chunked body then CL and TE", chunk + "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", []int{200, 400}, true, 1},
		{"chunked body, chunk extension, trailer, then a plain request", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3;e=1\r\nabc\r\n0\r\nT: v\r\n\r\n" + ok, []int{200, 200}, false, 2},
		{"chunked body ended by a bare LF, then CL and TE", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\nPOST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", []int{200, 400}, true, 1},
		{"large head then CL and TE", "GET / HTTP/1.1\r\nHost: x\r\nCookie: " + big + "\r\n\r\nPOST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", []int{200, 400}, true, 1},
		{"bare LF head with CL and TE", "POST / HTTP/1.1\nHost: x\nContent-Length: 5\nTransfer-Encoding: chunked\n\n0\n\n", []int{400}, true, 0},
		{"two codings", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", []int{501}, true, 0},
		{"Chunked, any case", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked \r\n\r\n3\r\nabc\r\n0\r\n\r\n", []int{200}, false, 1},
		{"unknown coding", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", []int{501}, true, 0},
		// Fields (RFC 9112 section 5).
		{"obs-fold", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n", []int{400}, true, 0},
		{"space before colon", "GET / HTTP/1.1\r\nHost: x\r\nX-A : a\r\n\r\n", []int{400}, true, 0},
		{"tab before colon", "GET / HTTP/1.1\r\nHost: x\r\nX-A\t: a\r\n\r\n", []int{400}, true, 0},
		{"NUL in a value", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", []int{400}, true, 0},
		{"NUL in a name", "GET / HTTP/1.1\r\nHost: x\r\nX\x00A: a\r\n\r\n", []int{400}, true, 0},
		{"no colon", "GET / HTTP/1.1\r\nHost: x\r\nX-A\r\n\r\n", []int{400}, true, 0},
		{"two Host", "GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", []int{400}, true, 0},
		{"no Host in HTTP/1.1", "GET / HTTP/1.1\r\n\r\n", []int{400}, true, 0},
		{"no Host in HTTP/1.0", "GET / HTTP/1.0\r\n\r\n", []int{200}, true, 1},
		{"bad Host", "GET / HTTP/1.1\r\nHost: x y\r\n\r\n", []int{400}, true, 0},
		{"8 KiB field", "GET / HTTP/1.1\r\nHost: x\r\nX-A: " + strings.Repeat("a", 8<<10) + "\r\n\r\n", []int{200}, false, 1},
		{"head over 1 MiB", "GET / HTTP/1.1\r\nHost: x\r\nX-A: " + strings.Repeat("a", 1<<20+8<<10) + "\r\n\r\n", []int{431}, true, 0},
		// The request line and target (RFC 9112 section 3).
		{"bad method", "G@T / HTTP/1.1\r\nHost: x\r\n\r\n", []int{400}, true, 0},
		{"CONNECT", "CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n", []int{405}, true, 0},
		{"OPTIONS *", "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", []int{200}, false, -1}, // net/http's backend answers it itself
		{"GET *", "GET * HTTP/1.1\r\nHost: x\r\n\r\n", []int{400}, true, 0},
		{"authority-form GET", "GET x:80 HTTP/1.1\r\nHost: x\r\n\r\n", []int{400}, true, 0},
		{"absolute-form", "GET http://x/p HTTP/1.1\r\nHost: x\r\n\r\n", []int{200}, false, 1},
		{"absolute-form, other Host", "GET http://y/p HTTP/1.1\r\nHost: x\r\n\r\n", []int{400}, true, 0},
		{"absolute-form with userinfo", "GET http://u@x/ HTTP/1.1\r\nHost: x\r\n\r\n", []int{400}, true, 0},
		{"fragment", "GET /a#f HTTP/1.1\r\nHost: x\r\n\r\n", []int{400}, true, 0},
		{"fragment in the query", "GET /a?q#f HTTP/1.1\r\nHost: x\r\n\r\n", []int{400}, true, 0},
		{"0xFF in the target", "GET /\xff HTTP/1.1\r\nHost: x\r\n\r\n", []int{400}, true, 0},
		{"control byte in the target", "GET /\x01 HTTP/1.1\r\nHost: x\r\n\r\n", []int{400}, true, 0},
		{"DEL in the target", "GET /\x7f HTTP/1.1\r\nHost: x\r\n\r\n", []int{400}, true, 0},
		{"HTTP/2 line", "GET / HTTP/2.0\r\nHost: x\r\n\r\n", []int{505}, true, 0},
		{"garbage", "GARBAGE\r\n\r\n", []int{400}, true, 0},
		// Last: the backend may count this one after its answer, as the
		// upstream request's head goes out before the body fails.
		{"malformed chunked body", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n", []int{400}, true, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := back.hits.Load()
			want, hits := tc.want, tc.hits
			if !tc.closed {
				want, hits = append(want, 200), hits+1
			}
			statuses, closed := sendRaw(t, addr, tc.raw+next)
			if !equalInts(statuses, want) || !closed {
				t.Errorf("got %v, closed %v; want %v, then the end", statuses, closed, want)
			}
			if got := back.hits.Load() - before; tc.hits >= 0 && got != hits {
				t.Errorf("the backend saw %d requests, want %d", got, hits)
			}
		})
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Header fields with an underscore are dropped on both paths, the lean one
// and ReverseProxy's, unless underscores_in_headers is on.
func TestUnderscoresInHeaders(t *testing.T) {
	got := make(chan http.Header, 4)
	back := newBackend(t, "A", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		got <- r.Header.Clone()
	})
	const fields = "Transfer_Encoding: chunked\r\nContent_Length: 5\r\nX_Foo: 1\r\nX-Bar: 2\r\n"
	for _, on := range []bool{false, true} {
		base := ""
		if on {
			base = "[proxy]\nunderscores_in_headers = true\n"
		}
		h := startSwitcher(t, base, []string{back.addr}, []string{back.addr})
		for _, raw := range []string{
			"GET / HTTP/1.1\r\nHost: x\r\n" + fields + "\r\n",                                         // lean
			"POST / HTTP/1.1\r\nHost: x\r\n" + fields + "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", // ReverseProxy
		} {
			if statuses, _ := sendRaw(t, h.addrs.Proxy[0], raw+"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); len(statuses) != 2 || statuses[0] != 200 {
				t.Fatalf("%q: %v", raw, statuses)
			}
			hdr := <-got
			<-got
			for _, k := range []string{"Transfer_encoding", "Content_length", "X_foo"} {
				if _, seen := hdr[k]; seen != on {
					t.Errorf("underscores_in_headers = %v, %q: %s forwarded: %v", on, raw[:4], k, seen)
				}
			}
			if hdr.Get("X-Bar") != "2" {
				t.Errorf("%q: X-Bar lost", raw[:4])
			}
		}
		h.stop()
	}
}

// scriptedBackend answers every request with resp, sent as it is, and health
// checks with 200; it closes each connection after its answer.
func scriptedBackend(t *testing.T, resp string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				var head []byte
				buf := make([]byte, 4096)
				for !bytes.Contains(head, []byte("\r\n\r\n")) {
					n, err := c.Read(buf)
					head = append(head, buf[:n]...)
					if err != nil {
						return
					}
				}
				if bytes.HasPrefix(head, []byte("GET /healthz ")) {
					io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
					return
				}
				io.WriteString(c, resp)
			}()
		}
	}()
	return ln.Addr().String()
}

// Response heads the app sends (RFC 9112 section 5): a field name with
// whitespace before its colon is refused (502) on both paths.
func TestResponseRules(t *testing.T) {
	for _, tc := range []struct {
		name string
		resp string
		want int
	}{
		{"plain", "HTTP/1.1 200 OK\r\nX-A: a\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok", 200},
		{"space before colon", "HTTP/1.1 200 OK\r\nX-A : a\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok", 502},
		{"tab before colon", "HTTP/1.1 200 OK\r\nX-A\t: a\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok", 502},
		{"no colon", "HTTP/1.1 200 OK\r\nX-A\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok", 502},
		{"NUL", "HTTP/1.1 200 OK\r\nX-A: a\x00\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok", 502},
		{"two lengths", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok", 502},
		{"obs-fold, folded into a space", "HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok", 200},
		{"CL and TE", "HTTP/1.1 200 OK\r\nContent-Length: 20\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n2\r\nok\r\n0\r\n\r\n", 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			back := scriptedBackend(t, tc.resp)
			h := startSwitcher(t, "", []string{back}, []string{back})
			for _, raw := range []string{
				"GET / HTTP/1.1\r\nHost: x\r\n\r\n",                                         // lean
				"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", // ReverseProxy
			} {
				statuses, _ := sendRaw(t, h.addrs.Proxy[0], raw+"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
				if len(statuses) == 0 || statuses[0] != tc.want {
					t.Errorf("%.4s: got %v, want %d first", raw, statuses, tc.want)
				}
			}
		})
	}
}
