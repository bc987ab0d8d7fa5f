package switcher

import (
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/turnout/turnout/internal/testlog"
	"github.com/turnout/turnout/internal/testsock"
)

// stdlibEngine is the config line that serves listen with net/http alone.
const stdlibEngine = "[proxy]\nengine = \"stdlib\"\n"

// rawProto sends an HTTP/1.0 request on a new connection and returns the
// version of the answer's status line: net/http answers an HTTP/1.0
// request in kind, the lean front always with HTTP/1.1.
func rawProto(t *testing.T, addr string) (proto string, status int) {
	t.Helper()
	_, br := testsock.Send(t, addr, "GET / HTTP/1.0\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	must(t, err)
	resp.Body.Close()
	return resp.Proto, resp.StatusCode
}

// With engine = "stdlib" net/http serves the requests the lean front
// would serve itself, and holds them to the same request rules from a
// connection's first byte: a refused head is answered 400, and nothing on
// its connection reaches the app.
func TestStdlibEngineServesThroughNetHTTP(t *testing.T) {
	a := newBackend(t, "A", nil)
	for _, tc := range []struct{ base, proto string }{
		{"", "HTTP/1.1"},
		{"[proxy]\nengine = \"turnout\"\n", "HTTP/1.1"},
		{stdlibEngine, "HTTP/1.0"},
	} {
		h := startSwitcher(t, tc.base, []string{a.addr}, []string{a.addr})
		if proto, status := rawProto(t, h.addrs.Proxy[0]); proto != tc.proto || status != 200 {
			t.Errorf("%q: an HTTP/1.0 GET got %s %d, want %s 200", tc.base, proto, status, tc.proto)
		}
		h.stop()
	}

	h := startSwitcher(t, stdlibEngine, []string{a.addr}, []string{a.addr})
	const (
		ok       = "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
		clAndTE  = "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
		chunked  = "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
		smuggled = "POST / HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\nGET /smuggled HTTP/1.0\r\nHost: x\r\n\r\n"
		next     = "GET /next HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
	)
	for _, tc := range []struct {
		name string
		raw  string
		want []int
		hits int64 // requests the backend saw
	}{
		{"plain, kept alive", ok + next, []int{200, 200}, 2},
		{"CL and TE first", clAndTE + next, []int{400}, 0},
		{"CL and TE after a chunked body", chunked + clAndTE + next, []int{200, 400}, 1},
		{"chunked HTTP/1.0 smuggling a request", smuggled + next, []int{400}, 0},
		{"obs-fold", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n" + next, []int{400}, 0},
		{"absolute-form, other Host", "GET http://y/p HTTP/1.1\r\nHost: x\r\n\r\n" + next, []int{400}, 0},
		{"fragment", "GET /a#f HTTP/1.1\r\nHost: x\r\n\r\n" + next, []int{400}, 0},
		{"CONNECT", "CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n" + next, []int{405}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := a.hits.Load()
			statuses, closed := sendRaw(t, h.addrs.Proxy[0], tc.raw)
			if !equalInts(statuses, tc.want) || !closed {
				t.Errorf("got %v, closed %v; want %v, then the end", statuses, closed, tc.want)
			}
			if got := a.hits.Load() - before; got != tc.hits {
				t.Errorf("the backend saw %d requests, want %d", got, tc.hits)
			}
		})
	}
}

// With engine = "stdlib": HTTP/2 prior knowledge (h2c) is served, and the
// client timeouts hold: a head that stops coming ends its connection after
// client_header_timeout, a body that stops coming gets 408 after
// client_body_timeout.
func TestStdlibEngineH2CAndClientTimeouts(t *testing.T) {
	a := newBackend(t, "A", nil)
	h := startSwitcher(t, "h2c = true\n"+stdlibEngine+"client_header_timeout = \"200ms\"\nclient_body_timeout = \"200ms\"\n",
		[]string{a.addr}, []string{a.addr})

	var h2c http.Protocols
	h2c.SetUnencryptedHTTP2(true)
	h2cClient := &http.Client{Transport: &http.Transport{Protocols: &h2c}, Timeout: 10 * time.Second}
	resp, err := h2cClient.Get(h.proxy + "/")
	must(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.ProtoMajor != 2 || resp.StatusCode != 200 || string(body) != "A GET" {
		t.Fatalf("h2c: %s %d %q, want HTTP/2 200 from A", resp.Proto, resp.StatusCode, body)
	}

	c, _ := testsock.Send(t, h.addrs.Proxy[0], "GET / HTTP/1.1\r\nHost: x\r\n")
	if n, err := io.Copy(io.Discard, c); err != nil || n != 0 {
		t.Fatalf("a head left unfinished: read %d bytes (%v); want the connection closed without an answer", n, err)
	}

	_, br := testsock.Send(t, h.addrs.Proxy[0], "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"+strings.Repeat("y", 1000))
	resp, err = http.ReadResponse(br, nil)
	must(t, err)
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusRequestTimeout || !resp.Close {
		t.Fatalf("a stalled body: status %d, close %v; want 408 and the connection closed", resp.StatusCode, resp.Close)
	}
	if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the 408: %v, want the connection closed", err)
	}
}

// With engine = "stdlib", a shutdown lets the request in flight finish and
// stops accepting.
func TestStdlibEngineShutdownDrains(t *testing.T) {
	arrived, release := make(chan struct{}), make(chan struct{})
	a := newBackend(t, "A", func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		<-release
		io.WriteString(w, "late")
	})
	h := startSwitcher(t, stdlibEngine, []string{a.addr}, []string{a.addr})
	got := make(chan string, 1)
	go func() {
		resp, err := client.Get(h.proxy + "/")
		if err != nil {
			got <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got <- resp.Status + " " + string(b)
	}()
	<-arrived
	stopped := make(chan struct{})
	go func() { h.stop(); close(stopped) }()
	waitFor(t, "the listener closed", func() bool {
		c, err := net.Dial("tcp", h.addrs.Proxy[0])
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	select {
	case <-stopped:
		t.Fatal("Serve returned with a request in flight")
	default:
	}
	close(release)
	if g := <-got; g != "200 OK late" {
		t.Errorf("the request in flight got %q, want 200 OK late", g)
	}
	<-stopped
}

// A change of engine is applied at the next start only: a reload warns
// and keeps the running one.
func TestEngineChangeNeedsARestart(t *testing.T) {
	a := newBackend(t, "A", nil)
	var logs testlog.Buffer
	h := startSwitcher(t, "", []string{a.addr}, []string{a.addr}, &logs)
	text, err := os.ReadFile(h.path)
	must(t, err)
	must(t, os.WriteFile(h.path, append(text, stdlibEngine...), 0o600))
	must(t, h.sw.Reload("test"))
	if got := logs.Lines("needs a restart"); len(got) != 1 || !strings.Contains(got[0], "key=proxy.engine") {
		t.Errorf("restart warnings: %q, want one for proxy.engine", got)
	}
	if e := h.sw.Config().Proxy.Engine; e != "turnout" {
		t.Errorf("running engine after the reload: %q, want turnout kept", e)
	}
	if proto, _ := rawProto(t, h.addrs.Proxy[0]); proto != "HTTP/1.1" {
		t.Errorf("after the reload the lean front answered %s, want it still serving (HTTP/1.1)", proto)
	}
}
