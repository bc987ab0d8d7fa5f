package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/turnout/turnout/internal/testsock"
)

// TestTimeouts: an upstream that never answers gets the 504 page after
// upstream_timeout; a client that sends its headers too slowly is
// disconnected after client_header_timeout.
func TestTimeouts(t *testing.T) {
	t.Parallel()
	a1 := newBackend(t, "a1", "tcp")
	tn := startTurnout(t, settings{A: []string{a1.Spec()}, Proxy: "upstream_timeout = \"500ms\"\nclient_header_timeout = \"1s\""})

	t.Run("hung upstream", func(t *testing.T) {
		resp, body := get(t, tn.URL+"/hang", nil)
		checkPage(t, resp, body, http.StatusGatewayTimeout, "text/html")
	})
	t.Run("slowloris", func(t *testing.T) {
		conn, err := net.Dial("tcp", tn.Addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		// 25 header bytes a second for 200 bytes: 8 s if turnout waited.
		header := "GET / HTTP/1.1\r\nHost: slow.test\r\nX-Slow: " + strings.Repeat("z", 150) + "\r\n\r\n"
		closed := make(chan string, 1)
		go func() {
			// turnout closes the connection (EOF, reset), maybe after a
			// 4xx (Go's http.Server answers 400 on a header read timeout).
			br := bufio.NewReader(conn)
			line, err := br.ReadString('\n')
			if err == nil {
				_, err = io.Copy(io.Discard, br)
			}
			closed <- fmt.Sprintf("%q then %v", line, err)
		}()
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for i := range len(header) {
			select {
			case how := <-closed:
				if strings.HasPrefix(how, `"HTTP/1.1 `) && !strings.HasPrefix(how, `"HTTP/1.1 408`) && !strings.HasPrefix(how, `"HTTP/1.1 400`) {
					t.Errorf("turnout answered a half-sent request with %s; want the connection closed, maybe after a 408 or 400", how)
				}
				t.Logf("disconnected after %d of %d header bytes: read %s", i, len(header), how)
				return
			case <-tick.C:
			}
			if _, err := conn.Write([]byte{header[i]}); err != nil {
				t.Logf("disconnected after %d of %d header bytes: write: %v", i, len(header), err)
				return
			}
		}
		t.Errorf("turnout read the whole header sent one byte every 200ms, past client_header_timeout (1s)")
	})
}

// TestSigtermWithStalledTraffic: SIGTERM ends turnout within drain_timeout
// (plus the time to close) however stalled the traffic in flight is:
// upstreams that stall before their response or mid-body, on the lean path
// and on net/http's,
// request bodies that stop coming on both, while every other timeout is an
// hour. A response cut short by its upstream is logged with why.
func TestSigtermWithStalledTraffic(t *testing.T) {
	t.Parallel()
	var started sync.WaitGroup
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	mux.HandleFunc("/stall", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "5000")
		w.Write([]byte(strings.Repeat("x", 100)))
		w.(http.Flusher).Flush()
		started.Done()
		select {
		case <-r.Context().Done():
		case <-time.After(time.Minute):
		}
	})
	mux.HandleFunc("/hang", func(w http.ResponseWriter, r *http.Request) {
		started.Done()
		select {
		case <-r.Context().Done():
		case <-time.After(time.Minute):
		}
	})
	mux.HandleFunc("/closes", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "5000")
		w.Write([]byte(strings.Repeat("x", 100)))
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler) // the connection closes after 100 of 5000 bytes
	})
	mux.HandleFunc("/upload", func(w http.ResponseWriter, r *http.Request) {
		started.Done()
		io.Copy(io.Discard, r.Body)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	app := &http.Server{Handler: mux}
	go app.Serve(ln)
	t.Cleanup(func() { app.Close() })

	c := newCfgSpec(t, []string{ln.Addr().String()}, []string{freeTCPAddr(t)})
	c.Top = "initial = \"A\"\naccess_log = true"
	c.Drain = "1s"
	c.Proxy = "upstream_timeout = \"1h\"\nupstream_read_timeout = \"1h\"\nclient_body_timeout = \"1h\""
	d := serveDaemon(t, writeCfg(t, c), c)

	send := func(req string) (net.Conn, *bufio.Reader) { return testsock.Send(t, c.Listen, req) }
	head100 := func(br *bufio.Reader) {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(resp.Body, make([]byte, 100)); err != nil {
			t.Fatalf("the first 100 bytes: %v", err)
		}
	}

	// An upstream that closes mid-body: the client sees the response
	// broken, and the access log says why.
	_, br := send("GET /closes HTTP/1.1\r\nHost: x\r\n\r\n")
	head100(br)
	if n, err := io.Copy(io.Discard, br); n != 0 || err != nil {
		t.Fatalf("after the upstream closed: %d more bytes, %v; want the connection closed", n, err)
	}
	pollUntil(t, "the access log line of the cut response", func() (bool, string) {
		return strings.Contains(d.output.String(), `error="upstream closed after 100 of 5000 bytes"`), d.output.String()
	})

	// Stalled responses: three on the lean path, one on net/http's (a
	// chunked request), and one that has not begun.
	started.Add(5 + 2)
	send("GET /hang HTTP/1.1\r\nHost: x\r\n\r\n")
	for range 3 {
		_, br := send("GET /stall HTTP/1.1\r\nHost: x\r\n\r\n")
		head100(br)
	}
	_, br = send("POST /stall HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
	head100(br)
	// Stalled request bodies: two that net/http reads, on their way
	// upstream, and one the front reads.
	send("POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
	send("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + strings.Repeat("y", 1000))
	send("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n0123456789")
	all := make(chan struct{})
	go func() { started.Wait(); close(all) }()
	select {
	case <-all:
	case <-time.After(eventTimeout):
		t.Fatal("the stalled requests did not all reach the app")
	}

	// The promise is drain_timeout + 1 s; the bound here leaves a slow
	// machine room, and without the cuts turnout would wait an hour.
	begin := time.Now()
	if err := d.stop(t, syscall.SIGTERM, 6*time.Second); err != nil {
		t.Fatalf("turnout exited with %v after SIGTERM", err)
	}
	t.Logf("SIGTERM to exit with drain_timeout = 1s and stalled traffic: %v", time.Since(begin).Round(time.Millisecond))
}
