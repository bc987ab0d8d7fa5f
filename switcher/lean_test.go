package switcher

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// rawBackend answers every request 200 "ok" and hands each request head
// it read, as sent, to heads.
func rawBackend(t *testing.T) (addr string, heads <-chan textproto.MIMEHeader) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	t.Cleanup(func() { ln.Close() })
	ch := make(chan textproto.MIMEHeader, 100)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
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
			}()
		}
	}()
	return ln.Addr().String(), ch
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
	dead := reservedAddr(t)
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
