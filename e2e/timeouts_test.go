package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
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
