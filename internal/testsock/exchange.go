package testsock

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Exchange writes raw to the TCP address addr and returns the responses it
// reads, their bodies read whole, until n came or the connection closed. A
// raw that starts with HEAD reads bodiless answers.
func Exchange(t testing.TB, addr, raw string, n int) []*http.Response {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err = io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	method := "GET"
	if strings.HasPrefix(raw, "HEAD") {
		method = "HEAD"
	}
	br := bufio.NewReader(c)
	var out []*http.Response
	for range n {
		resp, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			break
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body = io.NopCloser(strings.NewReader(string(body)))
		out = append(out, resp)
	}
	return out
}

// Body returns what is left of r's body.
func Body(r *http.Response) string {
	b, _ := io.ReadAll(r.Body)
	return string(b)
}

// FreeAddr returns a loopback TCP address that was free a moment ago, for
// a listener a test wants a process to open.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// Send dials the TCP address addr, writes raw and returns the connection,
// with a 30-second deadline (far past any timeout a test waits for: a
// bound on a hung test, not a timing), and a reader over it. The connection is closed when the test ends, if not before.
func Send(t testing.TB, addr, raw string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	return c, bufio.NewReader(c)
}
