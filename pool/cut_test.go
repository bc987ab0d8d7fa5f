package pool

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/turnout/turnout/config"
	"github.com/turnout/turnout/healthcheck"
)

// A body that stops coming fails after ReadTimeout, counted from the last
// read, as a timeout; and CutInFlight cuts a request still waiting for its
// head at once, as a timeout too, so that it is not sent again.
func TestLeanPathReadTimeoutAndCut(t *testing.T) {
	release := make(chan struct{})
	arrived := make(chan struct{}, 1)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/head" {
			arrived <- struct{}{}
		}
		if r.URL.Path == "/body" {
			w.Header().Set("Content-Length", "5000")
			w.Write(make([]byte, 100))
			w.(http.Flusher).Flush()
		}
		<-release
	}))
	defer backend.Close()
	defer close(release)
	p := New(Options{Name: "A", Transport: TransportOptions{DialTimeout: time.Second, ResponseHeaderTimeout: time.Hour, ReadTimeout: 100 * time.Millisecond, MaxIdle: 4}})
	p.SetServers([]config.Server{spec(backend.Listener.Addr().String(), 1)}, tcpHealth(), healthcheck.Up, time.Hour)
	defer p.Close()

	req, _ := http.NewRequest("GET", "http://upstream/body", nil)
	resp, _, err := exchange(p.Pick(nil), req, []byte("GET /body HTTP/1.1\r\nHost: test\r\n\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	var ne net.Error
	if n != 100 || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("a stalled body: read %d bytes, %v; want 100 and a timeout", n, err)
	}

	s := p.Pick(nil)
	failed := make(chan error, 1)
	go func() {
		req, _ := http.NewRequest("GET", "http://upstream/head", nil)
		_, _, err := exchange(s, req, []byte("GET /head HTTP/1.1\r\nHost: test\r\n\r\n"))
		failed <- err
	}()
	select {
	case <-arrived: // the request waits for its head
	case <-time.After(10 * time.Second):
		t.Fatal("the request never went out")
	}
	p.CutInFlight()
	select {
	case err := <-failed:
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("a cut request: %v, want a timeout", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("CutInFlight did not end a request waiting for its head")
	}
	if s.InFlight() != 0 {
		t.Fatalf("in flight %d after the cut", s.InFlight())
	}
}
