package switcher

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/turnout/turnout/internal/testlog"
	"github.com/turnout/turnout/internal/testsock"
)

// stallingBackend answers every request with a head announcing 5000 bytes
// and the first 100 of them, then stalls until its connection ends, which
// it counts in released.
func stallingBackend(t *testing.T) (*backend, *atomic.Int64) {
	var released atomic.Int64
	b := newBackend(t, "A", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "5000")
		w.WriteHeader(http.StatusOK)
		w.Write([]byte(strings.Repeat("x", 100)))
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
			released.Add(1)
		case <-time.After(time.Minute):
		}
	})
	return b, &released
}

// The requests that reach the stalling backend: one the front serves on
// the lean path, one net/http and ReverseProxy serve (a chunked body).
var (
	leanStall    = "GET /stall HTTP/1.1\r\nHost: x\r\n\r\n"
	netHTTPStall = "POST /stall HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
)

// getHead sends req on a new connection and reads the response head and
// the first n bytes of its body.
func getHead(t *testing.T, addr, req string, n int) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, br := testsock.Send(t, addr, req)
	resp, err := http.ReadResponse(br, nil)
	must(t, err)
	if resp.StatusCode != http.StatusOK || resp.ContentLength != 5000 {
		t.Fatalf("status %d, length %d; want 200 and 5000", resp.StatusCode, resp.ContentLength)
	}
	if _, err := io.ReadFull(br, make([]byte, n)); err != nil {
		t.Fatalf("the first %d bytes of the body did not come while the upstream stalls: %v", n, err)
	}
	return c, br
}

// An upstream that sends its head and 100 bytes, then stalls: after
// upstream_read_timeout both connections close, the client's on a response
// cut short, on the lean path and on net/http's. (That the 100 bytes come
// at once, TestClientsThatLeaveReleaseBothConnections shows.)
func TestStalledUpstreamIsCut(t *testing.T) {
	a, released := stallingBackend(t)
	var logs testlog.Buffer
	h := startSwitcher(t, "access_log = true\n[proxy]\nupstream_read_timeout = \"300ms\"\n", []string{a.addr}, []string{a.addr}, &logs)
	for i, req := range []string{leanStall, netHTTPStall} {
		c, br := getHead(t, h.addrs.Proxy[0], req, 100)
		defer c.Close()
		if n, err := io.Copy(io.Discard, br); err == nil && n > 0 {
			t.Fatalf("%q after the stall: read %d more bytes; want the connection closed", req[:10], n)
		}
		waitFor(t, "the upstream connection closed", func() bool { return released.Load() == int64(i+1) })
	}
	waitFor(t, "the access log lines", func() bool {
		return len(accessLines(&logs, `bytes=100`, `error="upstream sent nothing for 300ms (upstream_read_timeout) after 100 of 5000 bytes"`)) == 2
	})
}

// Clients that go away while the upstream stalls release both connections
// at once, long before upstream_read_timeout; the 100 bytes that came
// before the stall reached them at once too.
func TestClientsThatLeaveReleaseBothConnections(t *testing.T) {
	a, released := stallingBackend(t)
	var logs testlog.Buffer
	h := startSwitcher(t, "access_log = true\n[proxy]\nupstream_read_timeout = \"1h\"\n", []string{a.addr}, []string{a.addr}, &logs)
	before := openFiles(t)
	const clients = 50
	for i := range clients {
		req := leanStall
		if i%5 == 0 {
			req = netHTTPStall
		}
		c, _ := getHead(t, h.addrs.Proxy[0], req, 100)
		c.Close()
	}
	waitFor(t, "50 upstream connections closed", func() bool { return released.Load() == clients })
	// The backend's own ends are closed too once its handlers return: the
	// process's files come back to what they were, give or take the health
	// checks' connection.
	waitFor(t, "the files released", func() bool { return openFiles(t) <= before+4 })
	deadline := time.Now().Add(10 * time.Second)
	for len(accessLines(&logs, `error="client went away after 100 of 5000 bytes"`)) != clients {
		if time.Now().After(deadline) {
			t.Fatalf("want %d access lines saying the client went away after 100 of 5000 bytes; the access log:\n%s",
				clients, strings.Join(accessLines(&logs), "\n"))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// accessLines returns the access log lines that hold every one of want.
func accessLines(logs *testlog.Buffer, want ...string) []string {
	var out []string
	for _, line := range logs.Lines("access: request:") {
		all := true
		for _, w := range want {
			all = all && strings.Contains(line, w)
		}
		if all {
			out = append(out, line)
		}
	}
	return out
}

func openFiles(t *testing.T) int {
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	return len(fds)
}

// A request body that net/http reads (chunked, or larger than the front
// takes) and that stops coming gets 408 after client_body_timeout; the
// client's connection closes, and so does the upstream one the body was
// going to.
func TestStalledRequestBodyGets408(t *testing.T) {
	var failed atomic.Int64
	a := newBackend(t, "A", func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.Copy(io.Discard, r.Body); err != nil {
			failed.Add(1)
			return
		}
		io.WriteString(w, "whole")
	})
	var logs testlog.Buffer
	h := startSwitcher(t, "access_log = true\n[proxy]\nclient_body_timeout = \"300ms\"\n", []string{a.addr}, []string{a.addr}, &logs)
	for i, req := range []string{
		"POST /chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
		"POST /large HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + strings.Repeat("y", 1000),
	} {
		_, br := testsock.Send(t, h.addrs.Proxy[0], req)
		resp, err := http.ReadResponse(br, nil)
		must(t, err)
		io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != http.StatusRequestTimeout || !resp.Close {
			t.Fatalf("%q: status %d, close %v; want 408 and the connection closed", req[:20], resp.StatusCode, resp.Close)
		}
		if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
			t.Fatalf("%q: after the 408: %v, want the connection closed", req[:20], err)
		}
		waitFor(t, "the upstream request ended", func() bool { return failed.Load() == int64(i+1) })
	}
	waitFor(t, "two access log lines", func() bool {
		return len(accessLines(&logs, "status=408", `error="the client sent no more of the request body for 300ms (client_body_timeout)"`)) == 2
	})
}

// A chunked body whose pieces come more slowly than client_body_timeout in
// all, but each within it, is read whole: the timeout is the longest gap.
func TestSlowRequestBodyWithinTheGapPasses(t *testing.T) {
	a := newBackend(t, "A", nil)
	h := startSwitcher(t, "[proxy]\nclient_body_timeout = \"1s\"\n", []string{a.addr}, []string{a.addr})
	c, _ := testsock.Send(t, h.addrs.Proxy[0], "POST /slow HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
	tick := time.NewTicker(150 * time.Millisecond) // pacing, well under the gap
	defer tick.Stop()
	for range 10 {
		<-tick.C
		_, err := io.WriteString(c, "1\r\nz\r\n")
		must(t, err)
	}
	_, err := io.WriteString(c, "0\r\n\r\n")
	must(t, err)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	must(t, err)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("a body sent for 1.5s with gaps of 150ms: status %d, want 200", resp.StatusCode)
	}
}

// Websockets still open after a switch are sent away during the drain: a
// close frame with status 1001 reaches each client and its server, each
// connection at its own moment in the drain window.
func TestWebsocketsGoAwayOverTheDrain(t *testing.T) {
	var (
		mu     sync.Mutex
		codes  []int // the close statuses the server side got
		closed = make(chan struct{}, 16)
	)
	a := newBackend(t, "A", func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		fmt.Fprint(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		brw.Flush()
		for {
			op, payload, masked, err := readWSFrame(brw.Reader)
			if err != nil {
				return
			}
			if op == 8 {
				mu.Lock()
				if masked && len(payload) >= 2 {
					codes = append(codes, int(binary.BigEndian.Uint16(payload)))
				}
				mu.Unlock()
				closed <- struct{}{}
				return
			}
			conn.Write(append([]byte{0x80 | op, byte(len(payload))}, payload...)) // echo, unmasked
		}
	})
	b := newBackend(t, "B", nil)
	h := startSwitcher(t, strings.Replace(fastChecks, `drain_timeout = "10s"`, `drain_timeout = "2s"`, 1), []string{a.addr}, []string{b.addr})
	const sockets = 6
	type result struct {
		code int
		at   time.Time
		err  error
	}
	results := make(chan result, sockets)
	ready := make(chan struct{}, sockets)
	for range sockets {
		c, _ := testsock.Send(t, h.addrs.Proxy[0], "")
		fmt.Fprint(c, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"+
			"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		must(t, err)
		if resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("upgrade: status %d", resp.StatusCode)
		}
		go func() {
			// A masked text frame goes through and comes back.
			c.Write([]byte{0x81, 0x82, 1, 2, 3, 4, 'h' ^ 1, 'i' ^ 2})
			if op, p, _, err := readWSFrame(br); err != nil || op != 1 || string(p) != "hi" {
				results <- result{err: fmt.Errorf("echo: opcode %d %q %v", op, p, err)}
				return
			}
			ready <- struct{}{}
			op, p, masked, err := readWSFrame(br)
			switch {
			case err != nil:
				results <- result{err: fmt.Errorf("want a close frame, got %w", err)}
			case op != 8 || masked || len(p) < 2:
				results <- result{err: fmt.Errorf("want an unmasked close frame, got opcode %d masked %v %q", op, masked, p)}
			default:
				at := time.Now()
				if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
					results <- result{err: fmt.Errorf("after the close frame: %v, want EOF", err)}
					return
				}
				results <- result{code: int(binary.BigEndian.Uint16(p)), at: at}
			}
		}()
	}
	for range sockets {
		<-ready
	}
	done := make(chan error, 1)
	go func() {
		_, err := h.sw.Switch(context.Background(), SwitchRequest{To: "B"}, nil)
		done <- err
	}()
	var first, last time.Time
	for range sockets {
		r := <-results
		if r.err != nil {
			t.Fatal(r.err)
		}
		if r.code != 1001 {
			t.Fatalf("close status %d, want 1001 (going away)", r.code)
		}
		if first.IsZero() || r.at.Before(first) {
			first = r.at
		}
		if r.at.After(last) {
			last = r.at
		}
	}
	for range sockets {
		select {
		case <-closed:
		case <-time.After(10 * time.Second):
			t.Fatal("a server got no close frame")
		}
	}
	mu.Lock()
	for _, code := range codes {
		if code != 1001 {
			t.Errorf("a server got close status %d, want 1001", code)
		}
	}
	if len(codes) != sockets {
		t.Errorf("%d servers got a masked close frame, want %d", len(codes), sockets)
	}
	mu.Unlock()
	// Six points drawn over 1.8 s all fall within 100 ms of each other
	// once in a few hundred thousand runs.
	if spread := last.Sub(first); spread < 100*time.Millisecond {
		t.Errorf("the websockets were closed within %v of each other: not spread over the drain", spread)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// readWSFrame reads one websocket frame (payload under 126 bytes) and
// returns its opcode, unmasked payload and whether it was masked.
func readWSFrame(r *bufio.Reader) (op byte, payload []byte, masked bool, err error) {
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, false, err
	}
	n := int(h[1] & 0x7f)
	if n >= 126 {
		return 0, nil, false, errors.New("frame too large for this test")
	}
	var key [4]byte
	masked = h[1]&0x80 != 0
	if masked {
		if _, err := io.ReadFull(r, key[:]); err != nil {
			return 0, nil, false, err
		}
	}
	payload = make([]byte, n)
	if _, err := io.ReadFull(r, payload); err != nil {
		return 0, nil, false, err
	}
	for i := range payload {
		if masked {
			payload[i] ^= key[i%4]
		}
	}
	return h[0] & 0x0f, payload, masked, nil
}

// Requests still in flight on the old pool when a switch's drain_timeout
// runs out are cut, on the lean path and on net/http's, and logged so.
func TestDrainCutsRequestsLeftInFlight(t *testing.T) {
	a, released := stallingBackend(t)
	b := newBackend(t, "B", nil)
	var logs testlog.Buffer
	base := "access_log = true\n" + strings.Replace(fastChecks, `drain_timeout = "10s"`, `drain_timeout = "1s"`, 1) + "upstream_read_timeout = \"1h\"\n"
	h := startSwitcher(t, base, []string{a.addr}, []string{b.addr}, &logs)
	var conns []*bufio.Reader
	for _, req := range []string{leanStall, netHTTPStall} {
		c, br := getHead(t, h.addrs.Proxy[0], req, 100)
		defer c.Close()
		conns = append(conns, br)
	}
	rec, err := h.sw.Switch(context.Background(), SwitchRequest{To: "B"}, nil)
	must(t, err)
	if rec.To != "B" {
		t.Fatalf("switched to %q", rec.To)
	}
	for i, br := range conns {
		if n, err := io.Copy(io.Discard, br); err == nil && n > 0 {
			t.Fatalf("request %d after the drain: read %d more bytes; want the connection closed", i, n)
		}
	}
	waitFor(t, "both upstream connections closed", func() bool { return released.Load() == 2 })
	waitFor(t, "two access log lines", func() bool {
		return len(accessLines(&logs, `error="cut at drain_timeout after 100 of 5000 bytes"`)) == 2
	})
}
