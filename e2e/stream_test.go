package e2e

import (
	"bufio"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestUpgrades: a websocket and a raw "echo" upgrade work through turnout.
func TestUpgrades(t *testing.T) {
	t.Parallel()
	a1 := newBackend(t, "a1", "tcp")
	tn := startTurnout(t, settings{A: []string{a1.Spec()}})

	for _, proto := range []string{"websocket", "echo"} {
		t.Run(proto, func(t *testing.T) {
			conn, err := net.Dial("tcp", tn.Addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(eventTimeout))
			var key [16]byte
			rand.Read(key[:])
			wsKey := base64.StdEncoding.EncodeToString(key[:])
			fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: app.test\r\nConnection: Upgrade\r\nUpgrade: %s\r\n"+
				"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: %s\r\n\r\n", proto, wsKey)
			br := bufio.NewReader(conn)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("read the upgrade response: %v", err)
			}
			if resp.StatusCode != http.StatusSwitchingProtocols || !strings.EqualFold(resp.Header.Get("Upgrade"), proto) {
				t.Fatalf("upgrade answered %s, Upgrade %q", resp.Status, resp.Header.Get("Upgrade"))
			}
			for _, msg := range []string{"hello", "through turnout"} {
				if proto == "echo" {
					io.WriteString(conn, msg)
					got := make([]byte, len(msg))
					if _, err := io.ReadFull(br, got); err != nil || string(got) != msg {
						t.Fatalf("echo of %q: got %q, %v", msg, got, err)
					}
					continue
				}
				if got, want := resp.Header.Get("Sec-WebSocket-Accept"), wsAccept(wsKey); got != want {
					t.Fatalf("Sec-WebSocket-Accept %q, want %q", got, want)
				}
				conn.Write(frame(1, []byte(msg), []byte{1, 2, 3, 4}))
				op, got, err := readFrame(br)
				if err != nil || op != 1 || string(got) != msg {
					t.Fatalf("websocket echo of %q: opcode %d, %q, %v", msg, op, got, err)
				}
			}
		})
	}
}

// TestServerSentEvents: an event stream is passed on as it comes. The
// backend sends its second event only after the client asked for it with
// /sse-next, which the client does only once it has the first event: a
// proxy that buffered the stream would deadlock here.
func TestServerSentEvents(t *testing.T) {
	t.Parallel()
	a1 := newBackend(t, "a1", "tcp")
	tn := startTurnout(t, settings{A: []string{a1.Spec()}})

	client := &http.Client{Timeout: eventTimeout}
	resp, err := client.Get(tn.URL + "/sse?wait=1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusOK || ct != "text/event-stream" {
		t.Fatalf("GET /sse: %s, Content-Type %q", resp.Status, ct)
	}
	events := bufio.NewScanner(resp.Body)
	readEvent := func() string {
		for events.Scan() {
			if line := events.Text(); strings.HasPrefix(line, "data: ") {
				return line
			}
		}
		t.Fatalf("stream ended before the next event: %v", events.Err())
		return ""
	}
	if got := readEvent(); got != "data: event 1 from a1" {
		t.Fatalf("first event %q", got)
	}
	next, err := client.Get(tn.URL + "/sse-next")
	if err != nil {
		t.Fatal(err)
	}
	next.Body.Close()
	for _, want := range []string{"data: event 2 from a1", "data: event 3 from a1"} {
		if got := readEvent(); got != want {
			t.Fatalf("event %q, want %q", got, want)
		}
	}
}
